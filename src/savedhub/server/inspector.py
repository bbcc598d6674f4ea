"""Checking an uploaded model in a worker process: its lint findings and description.

An upload is untrusted input, and reading it means parsing its protos with
TensorFlow. That happens in a separate worker process, so a model that
crashes or hangs the parser costs its own upload (refused), never the
server, and a hub that only serves downloads never loads TensorFlow (about
60 MiB instead of 600). The worker is started by the first upload, reused by
the next ones (TensorFlow is imported once), and stopped after a minute
without uploads (``--inspector-idle``), so an idle hub holds no TensorFlow.

The worker speaks JSON lines on stdin/stdout: ``{"folder": ..., "name": ...}``
in, ``{"findings": [...], "info": {...}}`` or ``{"error": "..."}`` out.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import subprocess
import sys
import threading
import time
from typing import IO, Any

from savedhub.errors import InspectionFailed as InspectionFailed  # re-exported

logger = logging.getLogger("savedhub")

INSPECT_TIMEOUT = 300.0
# The longest description the server reads from the worker (it is kept in metadata.json).
MAX_ANSWER_CHARS = 16 * 2**20
# TensorFlow makes the worker about 570 MB: it is not kept for long once uploads stop
# (the next upload pays the start again, a few seconds). `savedhub serve --inspector-idle`.
IDLE_SECONDS = 60.0
WORKER_COMMAND = "from savedhub.server.inspector import serve_requests; serve_requests()"


class Inspector:
    """A reusable worker process that lints and describes SavedModel folders."""

    def __init__(self, timeout: float = INSPECT_TIMEOUT, idle: float = IDLE_SECONDS) -> None:
        self.timeout = timeout
        self.idle = idle
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._last_used = 0.0

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while it runs (for logs and health checks)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def inspect(self, folder: str, name: str) -> dict[str, Any]:
        """``{"findings": [...], "info": {...}}`` for the SavedModel folder ``folder``.

        Raises:
            InspectionFailed: the model does not parse, or it crashed or hung the worker.
        """
        with self._lock:
            process = self._worker()
            try:
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(json.dumps({"folder": folder, "name": name}) + "\n")
                process.stdin.flush()
                line = _read_line(process.stdout, self.timeout)
            except (OSError, TimeoutError) as exc:
                self._stop()
                why = "took too long" if isinstance(exc, TimeoutError) else "crashed"
                raise InspectionFailed(
                    f"Reading {name} {why}; the model may be damaged or hostile."
                ) from exc
            finally:
                self._last_used = time.monotonic()
            if not line.endswith("\n"):
                self._stop()  # the rest of its answer is still in the pipe
                raise InspectionFailed(
                    f"The description of {name} is larger than {MAX_ANSWER_CHARS} characters "
                    "(a fixed limit); the model has far more signatures or functions than a "
                    "published model needs."
                )
        self._schedule_idle_stop()
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise InspectionFailed(str(answer["error"]))
        return answer

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _worker(self) -> subprocess.Popen[str]:
        if self._process is None or self._process.poll() is not None:
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
            self._process = subprocess.Popen(
                # Not `-m savedhub.server.inspector`: the package imports this
                # module first, and runpy then warns about running it twice.
                [sys.executable, "-c", WORKER_COMMAND],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            logger.info("started the upload inspector (pid %d)", self._process.pid)
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def _schedule_idle_stop(self) -> None:
        timer = threading.Timer(self.idle + 1, self._stop_if_idle)
        timer.daemon = True
        timer.start()

    def _stop_if_idle(self) -> None:
        with self._lock:
            if time.monotonic() - self._last_used >= self.idle:
                self._stop()


def _read_line(stream: IO[str], timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError
    line = stream.readline(MAX_ANSWER_CHARS + 1)
    if not line:
        raise OSError("the inspector exited")
    return line


def _inspect(folder: str, name: str) -> dict[str, Any]:
    from savedhub.errors import SavedhubError
    from savedhub.publish.info import FORMAT_NAMES, inspect_dir
    from savedhub.publish.lint import lint

    try:
        findings = [f.to_dict() for f in lint(folder)]
        info = inspect_dir(folder, name).to_dict()
    except SavedhubError as exc:  # e.g. a saved_model.pb that does not parse
        return {"error": str(exc).replace(folder, name)}  # keep the server's paths private
    del info["path"]
    info["format_name"] = FORMAT_NAMES.get(info["format"], info["format"])
    return {"findings": findings, "info": info}


def serve_requests() -> None:
    """The worker's loop: answer JSON-line requests on stdin until it closes."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3":
        # The hub runs quiet (`savedhub serve` without --verbose): so does its worker,
        # whose TensorFlow would otherwise print its start-up lines into the hub's log.
        from savedhub._quiet_tensorflow import quiet_tensorflow

        quiet_tensorflow()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # whatever else prints must not corrupt the answers
    for line in sys.stdin:
        request = json.loads(line)
        answers.write(json.dumps(_inspect(request["folder"], request["name"])) + "\n")
        answers.flush()
