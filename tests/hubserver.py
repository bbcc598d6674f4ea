"""Start a real ``savedhub serve`` in a subprocess on a free loopback port, for tests."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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
    root: Path | str  # a folder, or an s3:// location
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def peak_rss_mib(self) -> float:
        """The server process's peak resident memory so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024


def serve_command(
    root: Path | str, port: int, tokens_file: Path | None, max_upload: int | None
) -> list[str]:
    command = [sys.executable, "-m", "savedhub.cli", "serve", str(root), "--port", str(port)]
    if tokens_file is not None:
        command += ["--tokens-file", str(tokens_file)]
    if max_upload is not None:
        command += ["--max-upload", str(max_upload)]
    return command


def _limits(address_space: int | None, umask: int | None) -> Callable[[], None] | None:
    if address_space is None and umask is None:
        return None

    def apply() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if umask is not None:
            os.umask(umask)

    return apply


@contextmanager
def running_hub(
    root: Path | str,
    log_dir: Path,
    tokens_file: Path | None = None,
    max_upload: int | None = None,
    extra_args: Sequence[str] = (),
    address_space: int | None = None,
    umask: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[RunningHub]:
    """``savedhub serve ROOT`` until the block ends; waits until it answers.

    ``extra_args`` are more ``serve`` flags; ``address_space`` caps the server's virtual
    memory (RLIMIT_AS, inherited by its inspector), so a runaway allocation fails there
    instead of swamping the machine; ``umask`` is the server's umask; ``env`` adds
    environment variables.
    """
    port = free_port()
    log = log_dir / f"hub-{port}.log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **(env or {}))
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*serve_command(root, port, tokens_file, max_upload), *extra_args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            preexec_fn=_limits(address_space, umask),
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
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def push(running: RunningHub, path: str, url: str, token: str) -> None:
    """``savedhub push PATH URL --token TOKEN`` in a subprocess; fail with both logs."""
    result = subprocess.run(
        [sys.executable, "-m", "savedhub.cli", "push", path, url, "--token", token],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:] + running.output()[-2000:]
