"""Start a real ``savedhub serve`` in a subprocess on a free loopback port, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningHub:
    url: str
    root: Path
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def serve_command(
    root: Path, port: int, tokens_file: Path | None, max_upload: int | None
) -> list[str]:
    command = [sys.executable, "-m", "savedhub.cli", "serve", str(root), "--port", str(port)]
    if tokens_file is not None:
        command += ["--tokens-file", str(tokens_file)]
    if max_upload is not None:
        command += ["--max-upload", str(max_upload)]
    return command


@contextmanager
def running_hub(
    root: Path,
    log_dir: Path,
    tokens_file: Path | None = None,
    max_upload: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RunningHub]:
    """``savedhub serve ROOT [extra_args]`` until the block ends; waits until it answers."""
    port = free_port()
    log = log_dir / f"hub-{port}.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*serve_command(root, port, tokens_file, max_upload), *extra_args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
    hub = RunningHub(f"http://127.0.0.1:{port}", root, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"savedhub serve exited with {process.returncode}:\n{hub.output()}"
                )
            try:
                # Any answer means it is up (a hub with --allowed-hosts may answer 400 here).
                if httpx.get(f"{hub.url}/api/models", timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"savedhub serve did not answer within 60 s:\n{hub.output()}")
            time.sleep(0.1)
        yield hub
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
