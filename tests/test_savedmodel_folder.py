"""What a SavedModel folder is, and the three answers to one found a folder down."""

from __future__ import annotations

from pathlib import Path

from savedhub._savedmodel import folder


def _model(path: Path, shards: tuple[str, ...] = ("00000-of-00001",)) -> Path:
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"graph")
    (path / "variables" / "variables.index").write_bytes(b"index")
    for shard in shards:
        (path / "variables" / f"variables.data-{shard}").write_bytes(b"data")
    return path


def test_a_model_at_the_root_is_used_by_every_policy(tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    assert folder.has_graph(model)
    assert folder.step_down(model) == model
    assert folder.refusal(model) is None


def test_a_model_one_folder_down(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = _model(outer / "my_model")
    assert not folder.has_graph(outer)
    # The user named the folder: refuse, saying where the model is.
    assert folder.nested_hint(outer) == f"A SavedModel is one level down: pass {str(inner)!r}."
    # A cache entry: step down silently.
    assert folder.step_down(outer) == inner
    # An upload: refuse, naming only what is inside the archive.
    why = folder.refusal(outer)
    assert why is not None and "'my_model'" in why and str(tmp_path) not in why
    assert "it holds: my_model/" in why


def test_step_down_only_into_an_only_folder(tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    _model(outer / "a")
    (outer / "b").mkdir()
    assert folder.step_down(outer) == outer  # two folders: which one is meant is unclear
    assert "'a'" in (folder.refusal(outer) or "")


def test_no_model_anywhere(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert folder.nested_hint(empty).startswith("Save one with tf.saved_model.save")
    assert folder.refusal(empty) == (
        "has no saved_model.pb at its root (it holds: nothing). Pack a SavedModel folder"
    )
    for i in range(14):
        (empty / f"f{i:02d}.txt").write_text("x")
    assert folder.describe_contents(empty).endswith("f11.txt and 2 more")


def test_missing_shards_by_the_count_their_names_announce(tmp_path: Path) -> None:
    whole = _model(tmp_path / "whole", ("00000-of-00002", "00001-of-00002"))
    assert folder.missing_shards(whole / "variables") == []
    cut = _model(tmp_path / "cut", ("00001-of-00003",))
    assert folder.data_shards(cut / "variables") == [(1, 3)]
    assert folder.missing_shards(cut / "variables") == [(0, 3), (2, 3)]
    assert folder.missing_shards(tmp_path / "nowhere") == []
