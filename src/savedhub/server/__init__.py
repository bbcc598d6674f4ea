"""The savedhub hub server: ``savedhub serve ROOT`` (needs the ``[server]`` extra).

It speaks the TF Hub hosting protocol to clients (``savedhub`` and
``tensorflow_hub``), shows each model's page to browsers, lists models as
JSON, and takes authenticated uploads. Storage is pluggable: a local folder
by default, an S3 bucket shared by any number of replicas through
``savedhub.server.s3.S3Storage`` (the ``[s3]`` extra), any other fsspec
filesystem (GCS) through ``FsspecStorage``.

Example:
    >>> from savedhub.server import create_app
    >>> app = create_app("/srv/hub", tokens=["s3cr3t"])   # an ASGI app for uvicorn
"""

from __future__ import annotations

from savedhub.server.app import create_app
from savedhub.server.run import serve, serving
from savedhub.server.storage import FsspecStorage, LocalStorage, Storage, open_storage

__all__ = [
    "FsspecStorage",
    "LocalStorage",
    "Storage",
    "create_app",
    "open_storage",
    "serve",
    "serving",
]
