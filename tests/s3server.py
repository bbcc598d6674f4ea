"""An S3 endpoint on 127.0.0.1 for tests and benchmarks: moto's server in a subprocess.

moto (the test double of boto3) honours what the hub relies on: conditional
writes (``If-None-Match: *``, ``If-Match``), multipart uploads, ranged GETs and
presigned URLs. It runs in its own process so that its request handling does
not compete with the test process's threads.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from hubserver import free_port, stop


@dataclass
class S3Endpoint:
    url: str
    env: dict[str, str]  # what an S3 tool needs to reach it: AWS_ENDPOINT_URL, keys, region

    @functools.cached_property
    def _client(self):  # noqa: ANN202 - boto3 ships no types
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=self.env["AWS_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def client(self):  # noqa: ANN201
        """A boto3 S3 client of the endpoint (one, shared: making one costs ~0.5 s)."""
        return self._client


@contextmanager
def moto_endpoint(log_dir: Path) -> Iterator[S3Endpoint]:
    """``moto_server`` on a free loopback port until the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = log_dir / f"moto-{port}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited:\n{log.read_text()}")
            try:
                httpx.get(f"{url}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not answer within 60 s") from None
                time.sleep(0.1)
        env = {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }
        yield S3Endpoint(url, env)
    finally:
        stop(process)


def environment_for(endpoint: S3Endpoint) -> dict[str, str]:
    """The process environment with ``endpoint``'s settings and no other AWS profile."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**clean, **endpoint.env}
