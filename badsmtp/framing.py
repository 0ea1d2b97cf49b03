"""The receive side of a session: the only receive buffer, the reader the
state asks for (:mod:`badsmtp.readers`), and whether the session is paused
or closed.

:meth:`Framing._process` reads the buffer with the reader in force until it
needs more input, the session pauses (the rest stays buffered) or closes
(the rest is dropped).  What a line, a piece of content or a whole chunk
means is the session's (:class:`badsmtp.session.Session`): the hooks below.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from .batch import Recorder
from .readers import AuthReader, ChunkReader, DataReader, LineReader, TooLong

__all__ = ["MAX_AUTH_LINE", "MAX_LINE", "Framing"]

MAX_LINE = 4096  # RFC 5321 §4.5.3.1.4 asks for at least 512
MAX_AUTH_LINE = 12288  # RFC 4954 §4

Reader = Union[LineReader, DataReader, ChunkReader]


class Framing:
    def __init__(self, recorder: Recorder | None) -> None:
        self._lines = LineReader(MAX_LINE)
        self._reader: Reader = self._lines
        self._buf = b""
        self._paused = False
        self._closed = False
        self._recorder = recorder
        self._findings = recorder  # still told of findings once recording stops

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def mid_line(self) -> bool:
        """Part of a command (or AUTH) line is here, its end is not: the
        shell bounds the wait for the rest by what is left of the line's
        idle timeout (RFC 5321 §4.5.3.2.7 times whole commands)."""
        reader = self._reader
        return not self._paused and isinstance(reader, LineReader) and reader.mid_line(self._buf, 0)

    # -- the hooks -----------------------------------------------------------------
    def _line(self, line: bytes, following: int) -> bool:
        """A command line, ``following`` octets after it in the buffer (sent
        before its reply); False keeps it buffered (a delay before it)."""
        raise NotImplementedError

    def _auth_line(self, line: bytes) -> None:
        raise NotImplementedError

    def _too_long(self, length: int) -> None:
        raise NotImplementedError

    def _content(self, piece: bytes, size: int) -> None:
        """``piece`` of content; ``size`` octets to count (0: counted before)."""
        raise NotImplementedError

    def _end_of_data(self, following: int) -> None:
        raise NotImplementedError

    def _chunk_complete(self, last: bool) -> None:
        raise NotImplementedError

    # -- reading -------------------------------------------------------------------
    def _process(self) -> None:
        buf = self._buf
        pos = self._read_from(buf)
        if self._closed:
            if pos < len(buf) and self._recorder is not None:
                self._recorder.discarded(buf[pos:])  # pipelined after a 421
            self._buf = b""
        else:
            self._buf = buf[pos:]

    def _read_from(self, buf: bytes) -> int:
        """Read ``buf`` until the reader needs more, or a pause or the end
        of the session; where reading stopped."""
        pos = 0
        while pos < len(buf):
            reader = self._reader
            after = _READ[type(reader)](self, reader, buf, pos)
            if after is None:
                return pos
            pos = after
            if self._paused or self._closed:
                return pos
        reader = self._reader  # the buffer is read: a BDAT 0 at its end has its chunk, empty
        if type(reader) is ChunkReader and reader.left == 0:
            self._chunk_complete(reader.last)
        return pos

    def _read_line(self, reader: LineReader, buf: bytes, pos: int) -> int | None:
        """Handle one line; the position after it, or None to wait for more."""
        after, line = reader(buf, pos)
        if line is None:
            return after if after != pos else None  # an over-long line is dropped as it comes
        if type(line) is TooLong:
            self._too_long(line.length)
        elif reader is not self._lines:
            self._auth_line(line.rstrip())  # type: ignore[union-attr]
        elif not self._line(line, len(buf) - after):  # type: ignore[arg-type]
            return pos  # the line stays buffered until the session resumes
        return after

    def _read_data(self, reader: DataReader, buf: bytes, pos: int) -> int | None:
        if self._recorder is not None:
            self._recorder.content_read()
        after, piece, ended = reader(buf, pos)
        if piece:
            self._content(piece, len(piece))
            if self._closed:  # a dropafter<N> closed mid-message
                return after
        if ended:
            self._end_of_data(len(buf) - after)
        elif after == pos:
            return None  # only a possible start of the terminator is left
        return after

    def _read_chunk(self, reader: ChunkReader, buf: bytes, pos: int) -> int | None:
        after, piece = reader(buf, pos)
        if piece:
            self._content(piece, 0)  # counted when the BDAT was read
            if self._closed:
                return after
        if reader.left == 0:
            self._chunk_complete(reader.last)
        elif after == pos:
            return None
        return after


_READ: dict[type, Callable[[Framing, Any, bytes, int], "int | None"]] = {
    LineReader: Framing._read_line,
    AuthReader: Framing._read_line,
    DataReader: Framing._read_data,
    ChunkReader: Framing._read_chunk,
}
