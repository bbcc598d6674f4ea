"""What one upload may cost the hub, and the ``savedhub serve`` flag that raises each limit.

An upload is bounded on the wire (``--max-upload``), once unpacked
(``--max-unpacked``, on by default at :data:`UNPACKED_PER_UPLOAD` times the
upload limit, so a small archive cannot fill the disk), in members
(``SAVEDHUB_MAX_EXTRACT_MEMBERS``), in time without a byte
(``--upload-idle-timeout``, so a stalled client cannot hold a version's
claim) and in pace (``--upload-min-rate``: over every span of the idle
timeout at least that many bytes a second, so a client trickling a byte now
and then cannot hold it either). Names and tar headers have fixed limits
(:mod:`savedhub._io.tarlimits`).
"""

from __future__ import annotations

from dataclasses import dataclass

from savedhub import config
from savedhub._io.tarlimits import ExtractLimits

DEFAULT_MAX_UPLOAD_BYTES = 4 * 2**30
UNPACKED_PER_UPLOAD = 4
DEFAULT_UPLOAD_IDLE_SECONDS = 60.0
# 4 KiB/s (32 kbit/s) is below any working link, yet makes holding a version's claim
# cost a client a steady stream rather than a byte a minute.
DEFAULT_UPLOAD_MIN_RATE = 4 * 2**10
# Uploads unpacked and checked at once; more wait their turn. Each holds up to ~20 MB of
# decompression buffers, and the inspector reads one model at a time anyway.
CONCURRENT_UNPACKS = 2


@dataclass(frozen=True)
class UploadLimits:
    """The limits one upload is held to.

    Example:
        >>> UploadLimits(max_upload_bytes=2**20).max_unpacked_bytes
        4194304
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    unpacked_bytes: int | None = None  # None: UNPACKED_PER_UPLOAD x max_upload_bytes
    idle_seconds: float = DEFAULT_UPLOAD_IDLE_SECONDS
    min_rate: int = DEFAULT_UPLOAD_MIN_RATE  # bytes/s over each idle_seconds span; 0: off

    @property
    def max_unpacked_bytes(self) -> int:
        """The most an upload's archive may expand to."""
        if self.unpacked_bytes is not None:
            return self.unpacked_bytes
        return UNPACKED_PER_UPLOAD * self.max_upload_bytes

    def extract_limits(self) -> ExtractLimits:
        """The limits :func:`savedhub.archive.extract` enforces on an upload, with messages
        that tell the publisher what the hub's operator can raise."""
        return ExtractLimits(
            max_bytes=self.max_unpacked_bytes,
            max_members=config.max_extract_members(),
            bytes_setting="the hub's --max-unpacked (ask its operator)",
            members_setting="SAVEDHUB_MAX_EXTRACT_MEMBERS on the hub (ask its operator)",
        )
