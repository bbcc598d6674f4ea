"""The upload inspector: a reused worker process that lints and describes models,
survives its worker's death, and keeps the server's paths out of its messages."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from savedhub.server.inspector import InspectionFailed, Inspector


@pytest.fixture
def inspector() -> Iterator[Inspector]:
    worker = Inspector()
    yield worker
    worker.close()


def test_describes_a_model_and_reuses_its_worker(inspector: Inspector, my_mul_path: str) -> None:
    first = inspector.inspect(my_mul_path, "acme/mul/1")
    assert first["info"]["variables"] == 1 and first["info"]["format_name"] == "TF2 SavedModel"
    assert "path" not in first["info"]
    assert all(f["severity"] in ("error", "warning") for f in first["findings"])
    pid = inspector.worker_pid
    assert pid is not None
    inspector.inspect(my_mul_path, "acme/mul/2")
    assert inspector.worker_pid == pid


def test_a_dead_worker_is_replaced(inspector: Inspector, my_mul_path: str) -> None:
    inspector.inspect(my_mul_path, "acme/mul/1")
    dead = inspector.worker_pid
    assert dead is not None
    os.kill(dead, signal.SIGKILL)
    while inspector.worker_pid == dead:  # until the kill lands
        time.sleep(0.01)
    assert inspector.inspect(my_mul_path, "acme/mul/1")["info"]["variables"] == 1
    assert inspector.worker_pid not in (None, dead)


def test_unreadable_models_fail_without_naming_server_paths(
    inspector: Inspector, tmp_path: Path
) -> None:
    folder = tmp_path / "staging" / "saved_model"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(InspectionFailed) as failed:
        inspector.inspect(str(folder), "acme/bad/1")
    assert "acme/bad/1" in str(failed.value) and str(tmp_path) not in str(failed.value)


def test_a_hung_worker_is_stopped_and_the_upload_refused(my_mul_path: str) -> None:
    inspector = Inspector(timeout=0.05)  # far less than the worker needs to import TensorFlow
    try:
        with pytest.raises(InspectionFailed, match="took too long"):
            inspector.inspect(my_mul_path, "acme/slow/1")
        assert inspector.worker_pid is None
    finally:
        inspector.close()
