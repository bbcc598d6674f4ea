"""``savedhub serve``: run the hub under uvicorn and say what it serves."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from savedhub.server.app import DEFAULT_MAX_UPLOAD_BYTES, create_app
from savedhub.server.middleware import hosts_for_bind

logger = logging.getLogger("savedhub")


def startup_message(
    app: object, host: str, port: int, allowed_hosts: Sequence[str] | None = None
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
    if hub.rules.uploads_enabled:
        lines.append(f"Uploads on for {len(hub.rules.tokens)} token(s).")
    else:
        lines.append("Uploads are off: pass --tokens-file FILE or set SAVEDHUB_SERVE_TOKENS.")
    return "\n".join(lines)


def serve(
    root: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8080,
    tokens_file: str | os.PathLike[str] | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    log_level: str = "info",
    public_url: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> None:
    """Serve the models under ``root`` until interrupted.

    ``public_url`` and ``allowed_hosts`` are as in :func:`~savedhub.server.create_app`;
    without either, the hub answers to the address it binds (see
    :func:`~savedhub.server.middleware.hosts_for_bind`).

    Example:
        >>> serve("/srv/hub", port=8080, tokens_file="/etc/savedhub/tokens")  # doctest: +SKIP
    """
    import uvicorn

    # Publishing is logged through the "savedhub" logger; show it beside uvicorn's lines.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(log_level.upper())
    if "://" not in os.fspath(root):
        os.makedirs(root, exist_ok=True)
    if allowed_hosts is None and public_url is None:
        allowed_hosts = hosts_for_bind(host)
    app = create_app(
        root,
        tokens_file=tokens_file,
        max_upload_bytes=max_upload_bytes,
        public_url=public_url,
        allowed_hosts=allowed_hosts,
    )
    print(startup_message(app, host, port, allowed_hosts), file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")


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
