"""Turning an uploaded archive into a published version.

The upload is checked the way a client would use it: extracted safely into
a staging folder (the archive module refuses escaping paths, links, devices
and archive bombs), required to hold a SavedModel at its root, linted
(errors refuse the upload and are returned to the publisher), and described
(signatures, variables, sizes) into ``metadata.json`` -- those two read the
untrusted protos in the inspector's worker process, never in the server
(:mod:`savedhub.server.inspector`). The finished staging folder is then
handed to :meth:`Storage.publish`, which makes it visible in one step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from savedhub._savedmodel.folder import refusal
from savedhub._wire import ArchiveRecord, RecordedFinding, VersionRecord
from savedhub.errors import InspectionFailed
from savedhub.errors import UploadRejected as UploadRejected  # re-exported
from savedhub.server import storage as layout
from savedhub.server.inspector import Inspector
from savedhub.server.readme import read_head, readme_warnings

logger = logging.getLogger("savedhub")


@dataclass(frozen=True)
class ReceivedArchive:
    """An uploaded archive on local disk, hashed while it arrived."""

    path: Path
    sha256: str
    size: int


def readme_summary(markdown: str) -> str:
    """The first line of prose in a README, shown on the model's card."""
    for line in markdown.splitlines():
        text = line.strip()
        if text and not text.startswith(("#", "```", "|", "<", "!", "-", "*", ">", "[")):
            return text[:200]
    return ""


def _require_saved_model_at_root(folder: Path, name: str) -> None:
    """Refuse an archive without ``saved_model.pb`` at its root, saying what it holds
    (names inside the archive only: the server's own paths stay private)."""
    why = refusal(folder)
    if why is not None:
        raise UploadRejected(
            f"The archive for {name} {why} "
            "(savedhub pack DIR OUT.tar.gz, or savedhub push DIR URL)."
        )


def _folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def build_version(
    received: ReceivedArchive,
    staging: Path,
    publisher: str,
    model: str,
    version: str,
    inspector: Inspector,
) -> VersionRecord:
    """Fill ``staging`` with the layout of one version and return its record.

    Raises:
        UploadRejected: the archive is unsafe, holds no SavedModel, does not parse,
            or has lint errors.
    """
    from savedhub import archive
    from savedhub.errors import NotAnArchiveError, UnsafeArchiveError

    folder = staging / layout.FOLDER
    name = f"{publisher}/{model}/{version}"
    try:
        with open(received.path, "rb") as f:
            archive.extract(f, folder, source=f"the upload for {name}")
    except (UnsafeArchiveError, NotAnArchiveError) as exc:
        raise UploadRejected(f"The archive for {name} was refused: {exc}") from exc
    _require_saved_model_at_root(folder, name)
    try:
        inspected = inspector.inspect(str(folder), name)
    except InspectionFailed as exc:
        raise UploadRejected(f"{name} was refused: {exc}") from exc
    findings = inspected["findings"]
    errors = [f for f in findings if f.get("severity") == "error"]
    if errors:
        raise UploadRejected(
            f"{name} was refused: lint found {len(errors)} error(s). "
            f"Fix them and check with `savedhub lint DIR` before pushing again.",
            findings,
        )
    described = inspected["info"]

    shutil.move(received.path, staging / layout.ARCHIVE)
    (staging / layout.DIGEST).write_text(f"{received.sha256}  {layout.ARCHIVE}\n")
    readme = folder / layout.README
    shown = read_head(readme) if readme.is_file() else None
    if shown is not None:
        shutil.copyfile(readme, staging / layout.README)
        findings = [*findings, *readme_warnings(shown)]
    file_count, extracted_bytes = _folder_size(folder)
    record = VersionRecord.described(
        described,
        publisher=publisher,
        model=model,
        version=version,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        archive=ArchiveRecord(layout.ARCHIVE, received.sha256, received.size),
        files=file_count,
        extracted_size=extracted_bytes,
        readme=shown is not None,
        summary=readme_summary(shown.head.decode("utf-8", "replace")) if shown else "",
        warnings=tuple(RecordedFinding(f["severity"], f["code"], f["message"]) for f in findings),
    )
    (staging / layout.METADATA).write_text(json.dumps(record.to_json(), indent=2, sort_keys=True))
    logger.info("prepared %s (%d bytes, sha256 %s)", name, received.size, received.sha256)
    return record


def discard(path: Path) -> None:
    """Remove a staging folder or file left by a failed upload."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
