"""`savedhub demo`, run as a user runs it."""

from __future__ import annotations

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


def test_small_demo_publishes_serves_loads_and_trains(tmp_path) -> None:
    work = tmp_path / "work"
    result = run_demo(
        "--workdir", str(work), "--small-only", "--epochs", "8", cache=str(tmp_path / "c")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "savedhub/text-embedding-demo/1: pushed" in out
    assert "fine-tuning https://hub.savedhub.example/savedhub/text-embedding-demo/1" in out
    accuracy = int(re.search(r"held-out accuracy on 40 sentences: (\d+)%", out).group(1))
    assert accuracy >= 80
    # The model was published into the hub folder and fetched into the cache.
    assert any(p.name == "metadata.json" for p in (work / "hub").rglob("*"))
    assert any((tmp_path / "c").iterdir())
    again = run_demo(
        "--workdir", str(work), "--small-only", "--epochs", "1", cache=str(tmp_path / "c")
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already on the hub" in again.stdout


def test_demo_with_the_real_model_reproduces_the_published_table(tmp_path, minilm_source) -> None:
    result = run_demo(
        "--workdir", str(tmp_path / "work"), "--epochs", "2", cache=str(tmp_path / "c")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"  (\d\.\d{4}) +(\d\.\d{4})\n", result.stdout)
    assert len(rows) == 3
    for ours, published in rows:
        assert ours == published


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
