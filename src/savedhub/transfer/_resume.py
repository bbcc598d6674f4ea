"""Whether an answer continues the bytes already held: resume, restart or complete.

One pure decision, made the same way for the first request of a download
(adopting a partial file of an earlier run) and for a reconnect after a cut
connection. It reads only what the answer says (status, ``Content-Range``,
ETag/Last-Modified), so it is tested as a table, with no server.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import httpx

from savedhub.transfer._headers import content_range_start, content_range_total


class Verdict(enum.Enum):
    RESUME = "resume"  # the body continues the held bytes
    RESTART = "restart"  # the held bytes are of no use: the body starts at byte 0
    COMPLETE = "complete"  # the held bytes are the whole body (416)


@dataclass(frozen=True)
class Answer:
    """What an HTTP answer says about where its body sits in the whole."""

    status: int
    range_start: int | None = None
    range_total: int | None = None
    validator: str | None = None  # its ETag, else its Last-Modified

    @classmethod
    def of(cls, response: httpx.Response) -> Answer:
        headers = response.headers
        return cls(
            status=response.status_code,
            range_start=content_range_start(response),
            range_total=content_range_total(response),
            validator=headers.get("etag") or headers.get("last-modified"),
        )

    @property
    def is_range_answer(self) -> bool:
        """A 206 or 416: a body that is not the whole one from byte 0 (or none at all)."""
        return self.status in (206, 416)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    skip: int = 0  # leading bytes of this body that are already held (Range was ignored)


def decide(held: int | None, validator: str | None, size: int | None, answer: Answer) -> Decision:
    """What ``answer`` means for the ``held`` bytes of a download.

    Args:
        held: the bytes held, which the request asked to continue after with
            ``Range: bytes=<held>-``; None when it asked for the whole body.
        validator: the ``If-Range`` sent (the held bytes' ETag, else Last-Modified).
        size: the whole body's length as recorded for the held bytes, if known.
        answer: what the server answered.

    Example:
        >>> decide(100, '"e1"', 300, Answer(206, range_start=100, range_total=300))
        Decision(verdict=<Verdict.RESUME: 'resume'>, skip=0)
    """
    if held is None:
        return Decision(Verdict.RESTART)
    if answer.status == 206 and answer.range_start == held:
        return Decision(Verdict.RESUME)
    total = answer.range_total if answer.range_total is not None else size
    if answer.status == 416 and held > 0 and total == held:
        return Decision(Verdict.COMPLETE)
    if answer.status == 200 and validator and answer.validator == validator:
        # The server ignored Range but serves the same version: drop what is held.
        return Decision(Verdict.RESUME, skip=held)
    return Decision(Verdict.RESTART)
