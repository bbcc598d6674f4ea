"""``savedhub serve``: run the hub under uvicorn and say what it serves."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from savedhub.server.accesslog import access_logger
from savedhub.server.app import create_app
from savedhub.server.limits import DEFAULT_MAX_UPLOAD_BYTES
from savedhub.server.middleware import hosts_for_bind

logger = logging.getLogger("savedhub")


def startup_message(
    app: object,
    host: str,
    port: int,
    allowed_hosts: Sequence[str] | None = None,
    workers: int = 1,
) -> str:
    """What the operator sees first: where the hub is, what it holds, how to publish."""
    hub = app.state.hub  # type: ignore[attr-defined]
    base = hub.public_url or f"http://{host}:{port}"
    summaries = hub.catalog.summaries()
    lines = [f"savedhub serving {hub.storage.description} at {base}/"]
    if hub.public_url:
        lines.append(f"Listening on {host}:{port}; pages and redirects use {hub.public_url}.")
    if allowed_hosts is not None and "*" not in allowed_hosts:
        lines.append(
            f"Answering requests for Host {', '.join(allowed_hosts)} "
            "(others get 400; change with --allowed-hosts or --public-url)."
        )
    if summaries:
        lines.append(f"{len(summaries)} model(s), e.g. {base}/{summaries[0].name}")
    else:
        lines.append("The hub is empty. Publish the first model with:")
        lines.append(f"  savedhub push ./my_model {base}/PUBLISHER/MODEL/1 --token TOKEN")
    if workers > 1:
        lines.append(f"{workers} worker processes share the port.")
    if hub.redirect_downloads and hasattr(hub.storage, "presign_seconds"):
        lines.append("Archive downloads are redirected to presigned URLs of the store.")
    if hub.rules.uploads_enabled:
        lines.append(f"Uploads on for {len(hub.rules.tokens)} token(s).")
    else:
        lines.append("Uploads are off: pass --tokens-file FILE or set SAVEDHUB_SERVE_TOKENS.")
    return "\n".join(lines)


_APP_OPTIONS = "SAVEDHUB_SERVE_APP_OPTIONS"  # how `serve --workers N` hands its options on


def _configure_logging(log_level: str) -> None:
    """Publishing lines (``savedhub``) and access lines (``savedhub.access``) on stderr."""
    if any(getattr(h, "_savedhub", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    handler._savedhub = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(log_level.upper())
    access = logging.StreamHandler(sys.stdout)
    access.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(access)
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


def app_from_environment() -> Any:
    """The app of one ``--workers`` process, from the options :func:`serve` put in the
    environment (uvicorn starts each worker with an import string, not an object)."""
    options = json.loads(os.environ[_APP_OPTIONS])
    _configure_logging(options.pop("log_level"))
    return create_app(options.pop("root"), **options)


def serve(
    root: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8080,
    tokens_file: str | os.PathLike[str] | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    log_level: str = "info",
    public_url: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    max_unpacked_bytes: int | None = None,
    upload_idle_timeout: float | None = None,
    upload_min_rate: int | None = None,
    inspector_idle: float | None = None,
    redirect_downloads: bool = False,
    workers: int = 1,
    access_log: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Serve the models under ``root`` until interrupted.

    ``public_url`` and ``allowed_hosts`` are as in :func:`~savedhub.server.create_app`;
    without either, the hub answers to the address it binds (see
    :func:`~savedhub.server.middleware.hosts_for_bind`). ``workers`` > 1 runs that many
    server processes on the port (uvicorn's supervisor restarts one that dies); each
    is a full hub on the same storage, as replicas on several machines are. Each
    request is logged in the Combined Log Format on stdout unless ``access_log`` is off.

    Example:
        >>> serve("/srv/hub", port=8080, tokens_file="/etc/savedhub/tokens")  # doctest: +SKIP
    """
    import uvicorn

    _configure_logging(log_level)
    if "://" not in os.fspath(root):
        os.makedirs(root, exist_ok=True)
    if allowed_hosts is None and public_url is None:
        allowed_hosts = hosts_for_bind(host)
    options: dict[str, Any] = {
        "root": os.fspath(root),
        "tokens_file": os.fspath(tokens_file) if tokens_file else None,
        "max_upload_bytes": max_upload_bytes,
        "public_url": public_url,
        "allowed_hosts": list(allowed_hosts) if allowed_hosts is not None else None,
        "max_unpacked_bytes": max_unpacked_bytes,
        "upload_idle_timeout": upload_idle_timeout,
        "upload_min_rate": upload_min_rate,
        "inspector_idle": inspector_idle,
        "redirect_downloads": redirect_downloads,
        "access_log": access_log,
        "storage_options": storage_options,
    }
    app = create_app(**options)
    print(startup_message(app, host, port, allowed_hosts, workers), file=sys.stderr, flush=True)
    if workers > 1:
        os.environ[_APP_OPTIONS] = json.dumps({**options, "log_level": log_level})
        uvicorn.run(
            "savedhub.server.run:app_from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
        )
        return
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


@contextlib.contextmanager
def serving(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run an ASGI app (e.g. ``create_app(root)``) under uvicorn in a background thread
    of this process, for notebooks, demos and tests; yields its base URL.

    Example:
        >>> with serving(create_app("/tmp/hub", tokens=["t"])) as url:  # doctest: +SKIP
        ...     push("./my_model", f"{url}/acme/mul/1", token="t")

    Raises:
        RuntimeError: the server did not start within 30 seconds.
    """
    import uvicorn

    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="savedhub-serving", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError(f"the hub did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
