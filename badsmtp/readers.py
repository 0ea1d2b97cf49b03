"""Readers by state (the shape of h11's ``READERS``): each one frames one
kind of input from the session's receive buffer and owns its own state.

``reader(buf, pos)`` looks at ``buf`` from ``pos`` and returns where it
stopped and what it found; it never copies the buffer and never looks at
more than it needs.  ``read_eof()`` says whether the end of the stream
leaves it with nothing half-read.  No reader knows SMTP commands: the
session decides what a line or a piece of content means.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from .replies import Reply

if TYPE_CHECKING:
    from .auth import Credentials

__all__ = ["AuthReader", "ChunkReader", "DataReader", "LineReader", "TooLong"]

_END = b"\r\n.\r\n"  # only CRLF . CRLF ends DATA content (no SMTP smuggling)


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line over the limit ended here: its ``length`` in octets, before the LF."""

    length: int


Line = Union[bytes, TooLong, None]


class LineReader:
    """Command lines, ended by LF (a CR before it is the caller's to strip;
    RFC 5321 §2.3.8).  A line over ``limit`` octets is never buffered whole:
    it is dropped as it arrives and reported once, at its LF, as TooLong."""

    __slots__ = ("discarding", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.discarding = False  # inside an over-long line
        self.dropped = 0  # octets of it dropped so far

    def __call__(self, buf: bytes, pos: int) -> tuple[int, Line]:
        """``(after, line)``; ``line`` None: no complete line yet (``after``
        is then ``pos``, or the buffer's end while an over-long line is dropped)."""
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if self.discarding or len(buf) - pos > self.limit + 1:  # +1: a CR still to come
                self.discarding = True
                self.dropped += len(buf) - pos
                return len(buf), None
            return pos, None
        if self.discarding or nl - pos > self.limit + 1:
            length, self.discarding, self.dropped = self.dropped + nl - pos, False, 0
            return nl + 1, TooLong(length)
        return nl + 1, buf[pos:nl]

    def mid_line(self, buf: bytes, pos: int) -> bool:
        """Part of a line is here and its end is not."""
        return self.discarding or pos < len(buf)

    def read_eof(self) -> bool:
        return not self.discarding


class AuthReader(LineReader):
    """The lines of a SASL exchange (RFC 4954 §4: up to 12,288 octets each),
    fed to ``exchange``, the mechanism's generator (:mod:`badsmtp.auth`)."""

    __slots__ = ("exchange", "mechanism")

    def __init__(
        self, limit: int, mechanism: str, exchange: Generator[Reply, bytes, Credentials | None]
    ) -> None:
        super().__init__(limit)
        self.mechanism = mechanism
        self.exchange = exchange

    def step(self, line: bytes | None) -> Reply | Credentials | None:
        """The exchange's next challenge (a Reply) for ``line`` (None: the
        first), or its end: the credentials to verify, or None.  A failure
        raises :class:`~badsmtp.replies.ReplyError` with its reply."""
        try:
            return next(self.exchange) if line is None else self.exchange.send(line)
        except StopIteration as done:
            ended: Credentials | None = done.value
            return ended


class DataReader:
    """DATA content up to CRLF.CRLF, dot-unstuffed (RFC 5321 §4.5.2).

    Up to four octets that might start the terminator are left in the
    buffer; ``tail`` holds the last two octets passed on, so a terminator
    split across reads is still seen and a dot at the start of a piece is
    still known to start a line."""

    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b"\r\n"

    def __call__(self, buf: bytes, pos: int) -> tuple[int, bytes, bool]:
        """``(after, content, ended)``: the content taken (unstuffed), and
        whether CRLF.CRLF ended it."""
        tail = self.tail
        window = tail + buf[pos:] if pos else tail + buf
        end = window.find(_END)
        if end >= 0:
            return pos + end + len(_END) - len(tail), self._take(window, end + 2), True
        keep = max(len(tail), len(window) - 4)
        return pos + keep - len(tail), self._take(window, keep), False

    def _take(self, window: bytes, stop: int) -> bytes:
        start = len(self.tail)
        if stop <= start:
            return b""
        # One octet of context, so that a dot starting this piece is seen.
        piece = window[start - 1 : stop].replace(b"\n.", b"\n")[1:]
        self.tail = window[stop - 2 : stop]
        return piece

    def read_eof(self) -> bool:
        return False  # the end of the stream before CRLF.CRLF cuts the message short


class ChunkReader:
    """Exactly ``left`` octets of a BDAT chunk (RFC 3030 §2), raw."""

    __slots__ = ("last", "left")

    def __init__(self, size: int, last: bool) -> None:
        self.left = size
        self.last = last

    def __call__(self, buf: bytes, pos: int) -> tuple[int, bytes]:
        """``(after, octets)``; the chunk is complete when ``left`` is 0."""
        take = min(self.left, len(buf) - pos)
        self.left -= take
        return pos + take, buf[pos : pos + take]

    def read_eof(self) -> bool:
        return self.left == 0
