"""The public surface: ``savedhub.__all__`` and every name the README shows.

A change here is a change for users: add a name on purpose, and never drop or
rename one without a deprecation.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import savedhub
from savedhub import errors

README = Path(__file__).resolve().parents[1] / "README.md"

PUBLIC = [
    "CacheFullError",
    "CacheLockTimeout",
    "CacheWarning",
    "ConfigError",
    "IntegrityError",
    "InvalidHandleError",
    "KerasLayer",
    "KerasLayerError",
    "MissingOpError",
    "MissingPackageError",
    "ModelNotFoundError",
    "NotASavedModelError",
    "NotAnArchiveError",
    "NotCachedError",
    "SavedhubError",
    "TransferError",
    "UnsafeArchiveError",
    "__version__",
    "info",
    "lint",
    "load",
    "pack",
    "resolve",
    "set_mirrors",
]


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert sorted(savedhub.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(savedhub, name) is not None, name
    assert set(PUBLIC) <= set(dir(savedhub))
    exported_errors = {n for n in PUBLIC if n[0].isupper() and n != "KerasLayer"}
    assert all(getattr(savedhub, n) is getattr(errors, n) for n in exported_errors)


def test_the_readme_names_exist() -> None:
    text = README.read_text()
    for name in set(re.findall(r"\bhub\.(\w+)\(", text)):
        assert name in savedhub.__all__, f"README shows hub.{name} but savedhub does not export it"
    from savedhub.keras_layer import Keras3Layer, TFKerasLayer

    assert "from savedhub.keras_layer import Keras3Layer, TFKerasLayer" in text
    assert savedhub.KerasLayer in (Keras3Layer, TFKerasLayer)


def test_the_readme_signatures() -> None:
    def parameters(function: object) -> list[str]:
        return [p for p in inspect.signature(function).parameters if not p.startswith("_")]  # type: ignore[arg-type]

    assert parameters(savedhub.load) == ["handle", "tags", "options", "cache_dir"]
    assert parameters(savedhub.resolve) == ["handle", "cache_dir"]
    assert parameters(savedhub.KerasLayer.__init__) == [
        "self",
        "handle",
        "trainable",
        "arguments",
        "tags",
        "signature",
        "signature_outputs_as_dict",
        "output_key",
        "output_shape",
        "load_options",
        "kwargs",
    ]


def test_the_readme_commands_exist() -> None:
    text = README.read_text()
    listed = re.search(r"`savedhub (download/[\w/]+)`", text)
    assert listed is not None
    commands = listed.group(1).split("/")
    assert {"download", "info", "lint", "pack", "convert", "cache", "serve", "push", "demo"} == set(
        commands
    )
    done = subprocess.run(
        [sys.executable, "-m", "savedhub.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    for command in commands:
        assert f"    {command} " in done.stdout, command
