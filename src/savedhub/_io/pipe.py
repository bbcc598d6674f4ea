"""A bounded byte pipe from one producer thread to one reader; either side can cancel it.

The download (network thread) and the inflating stage of extraction each hand
bytes to the next stage through one of these, so the stages overlap while
memory stays bounded by ``chunks`` pieces.

Example:
    >>> pipe = BytePipe(chunks=4, on_cancel=lambda: OSError("closed"))
    >>> pipe.send(b"abc") and pipe.end()
    True
    >>> pipe.read(2), pipe.read(), pipe.read()
    (b'ab', b'c', b'')
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

_POLL_SECONDS = 0.1


class BytePipe:
    """Bytes (or an exception, raised at the reader) from a producer to a reader.

    Args:
        chunks: how many pieces may wait in the pipe before ``send`` blocks.
        on_cancel: the exception a reader waiting on a cancelled pipe raises.
    """

    def __init__(self, chunks: int, on_cancel: Callable[[], BaseException]) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(chunks)
        self._on_cancel = on_cancel
        self.cancelled = threading.Event()
        self._buffer = memoryview(b"")
        self.done = False

    # -- producer side --------------------------------------------------

    def send(self, item: bytes | BaseException) -> bool:
        """Queue ``item`` (``b""`` is the end); False when the pipe was cancelled."""
        while not self.cancelled.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def end(self) -> bool:
        return self.send(b"")

    def cancel(self) -> None:
        """Make the producer's ``send`` and a waiting reader give up."""
        self.cancelled.set()

    # -- reader side -------------------------------------------------------

    def _fill(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if self.cancelled.is_set():
                    raise self._on_cancel() from None
        if isinstance(item, BaseException):
            self.done = True
            raise item
        if not item:
            self.done = True
        self._buffer = memoryview(item)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left when negative); ``b""`` at the end."""
        if size < 0:
            parts = []
            while part := self.read(1 << 20):
                parts.append(part)
            return b"".join(parts)
        while not self._buffer and not self.done:
            self._fill()
        data = bytes(self._buffer[:size])
        self._buffer = self._buffer[len(data) :]
        return data

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end) without consuming them."""
        held = bytes(self._buffer)
        while len(held) < size and not self.done:
            self._buffer = memoryview(b"")
            self._fill()
            held += bytes(self._buffer)
        self._buffer = memoryview(held)
        return held[:size]
