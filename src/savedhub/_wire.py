"""The hub's wire format: what one published version's ``metadata.json`` holds.

The server writes it when a version is published (into storage, and into the
201 answer of the upload), reads it back for pages and the JSON API, and
``savedhub push`` reads it from the upload's answer. :class:`VersionRecord` is
that record, typed; :meth:`VersionRecord.from_json` is its one reader and
:meth:`VersionRecord.to_json` its one writer, so the JSON keys live here only::

    {"publisher": "acme", "model": "mul", "version": "1",
     "created": "2026-11-26T00:38:18+00:00",
     "archive": {"file": "model.tar.gz", "sha256": "<hex>", "size": 1234},
     "files": 4, "extracted_size": 5678,
     "readme": true, "summary": "first line of prose of the README",
     "warnings": [{"severity": "warning", "code": "...", "message": "..."}],
     "format_name": "TF2 SavedModel",
     "info": {...what `savedhub info` reports: signatures, variables, sizes...}}

Versions are positive integers (:func:`is_valid_version`), on both sides.
It imports neither the server's web framework nor TensorFlow: ``push`` runs
without the ``[server]`` extra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from savedhub.errors import MalformedRecordError as MalformedRecordError  # re-exported

# The hosting protocol's versions: 1, 2, 3, ... (no sign, no leading zero, at most 18 digits).
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")


def is_valid_version(version: str) -> bool:
    """True when ``version`` is a positive integer written plainly (``1``, ``10``)."""
    return VERSION_PATTERN.fullmatch(version) is not None


def version_error(version: str) -> str:
    """Why ``version`` is refused, and what to use instead."""
    return (
        f"version {version!r} is not allowed: versions are positive integers (1, 2, 3, ...), "
        "as in the TF Hub hosting protocol."
    )


@dataclass(frozen=True)
class ArchiveRecord:
    """The archive clients download: its file name in storage, SHA-256 (hex) and size."""

    file: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RecordedFinding:
    """A lint warning kept with the version (errors refuse the upload instead)."""

    severity: str
    code: str
    message: str


@dataclass(frozen=True)
class VersionRecord:
    """One published version, as stored in ``metadata.json`` and sent as JSON.

    ``info`` is the description :mod:`savedhub.publish.info` makes of the
    SavedModel (signatures, variable counts and sizes), kept as it was reported;
    ``format_name`` is taken out of it into its own field.
    """

    publisher: str
    model: str
    version: str
    archive: ArchiveRecord
    created: str = ""
    files: int = 0
    extracted_size: int = 0
    readme: bool = False
    summary: str = ""
    warnings: tuple[RecordedFinding, ...] = ()
    format_name: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``publisher/model/version``."""
        return f"{self.publisher}/{self.model}/{self.version}"

    @property
    def sha256(self) -> str:
        return self.archive.sha256

    @property
    def archive_size(self) -> int:
        return self.archive.size

    @classmethod
    def described(cls, description: Mapping[str, Any], **fields: Any) -> VersionRecord:
        """A record whose ``info`` is ``description`` without its ``format_name``, which
        becomes the field of that name (``description`` itself is left unchanged)."""
        info = {k: v for k, v in description.items() if k != "format_name"}
        return cls(format_name=str(description.get("format_name", "")), info=info, **fields)

    @classmethod
    def from_json(cls, data: Any) -> VersionRecord:
        """The record in parsed JSON (a stored ``metadata.json`` or an API answer).

        Optional fields missing from older records take their defaults.

        Raises:
            MalformedRecordError: a required field is missing or has the wrong type.
        """
        try:
            archive = data["archive"]
            return cls(
                publisher=_text(data["publisher"]),
                model=_text(data["model"]),
                version=_text(data["version"]),
                archive=ArchiveRecord(
                    _text(archive.get("file", "model.tar.gz")),
                    _text(archive["sha256"]),
                    _count(archive["size"]),
                ),
                created=_text(data.get("created", "")),
                files=_count(data.get("files", 0)),
                extracted_size=_count(data.get("extracted_size", 0)),
                readme=bool(data.get("readme", False)),
                summary=_text(data.get("summary", "")),
                warnings=tuple(
                    RecordedFinding(_text(w["severity"]), _text(w["code"]), _text(w["message"]))
                    for w in data.get("warnings", [])
                ),
                format_name=_text(data.get("format_name", "")),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedRecordError(
                f"not a savedhub version record ({type(exc).__name__}: {exc}); "
                "expected publisher, model, version and archive.sha256/size"
            ) from exc

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (what ``metadata.json`` holds)."""
        return {
            "publisher": self.publisher,
            "model": self.model,
            "version": self.version,
            "created": self.created,
            "archive": {
                "file": self.archive.file,
                "sha256": self.archive.sha256,
                "size": self.archive.size,
            },
            "files": self.files,
            "extracted_size": self.extracted_size,
            "readme": self.readme,
            "summary": self.summary,
            "warnings": [
                {"severity": w.severity, "code": w.code, "message": w.message}
                for w in self.warnings
            ],
            "format_name": self.format_name,
            "info": dict(self.info),
        }


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a count (an integer >= 0), got {value!r}")
    return value
