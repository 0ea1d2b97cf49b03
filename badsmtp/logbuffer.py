"""The buffer between the threads that log and the one that writes.

Records are written on a :class:`~logging.handlers.QueueListener` thread
behind a bounded buffer, for every output, so a slow or dead receiver never
stalls a session: a thread that logs formats its record and appends it (no
system call, no lock held across a write).  Session records, two per
message at INFO, take a shorter way (:class:`DirectWriter`): their parts go
on the buffer as they are and the logging thread formats them, a burst at a
time.  When the buffer is full, records are dropped (and counted).
Standard output is written a burst at a time, when the buffer runs empty,
not after every record.
"""

from __future__ import annotations

import collections
import logging
import logging.handlers
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import IO, TYPE_CHECKING, Any

from .logformat import FORMATTED, TextFormatter

if TYPE_CHECKING:
    from .logjson import JsonFormatter

__all__ = [
    "BATCH_INTERVAL",
    "BATCH_LINES",
    "QUEUE_SIZE",
    "Buffer",
    "BufferHandler",
    "BufferListener",
    "BurstStreamHandler",
    "DirectWriter",
    "Flushed",
]

QUEUE_SIZE = 10_000  # records waiting for a slow receiver before new ones are dropped
BATCH_INTERVAL = 0.02  # seconds: how often the logging thread writes what was logged
BATCH_LINES = 4096  # lines: written at once even if the buffer never runs empty


class Buffer:
    """The queue between the threads that log and the one that writes.

    A ``deque``: appending and popping are atomic, so a thread that logs
    takes no lock and never wakes the writer; the writer drains it every
    :data:`BATCH_INTERVAL` seconds.  (With a ``queue.Queue`` and a wake-up
    per record, the lock and GIL hand-offs cost a busy server a third of
    its throughput at INFO.)  Full means dropped, never waiting."""

    def __init__(self, limit: int) -> None:
        self.items: collections.deque[Any] = collections.deque()
        self.limit = limit
        self.dropped = 0

    def put_nowait(self, item: Any) -> None:
        if len(self.items) >= self.limit:
            self.dropped += 1  # never block a session on a slow receiver
            return
        self.items.append(item)

    def __len__(self) -> int:
        return len(self.items)


class DirectWriter:
    """The session records' short way to the buffer (installed with
    :func:`badsmtp.sessionlog.set_direct_writer`).

    Called once per connection with the fields all its records carry, it
    returns the connection's writer, which puts each record's parts on the
    buffer as they are: no ``LogRecord``, no walk of the logger tree, no
    formatting in the session's thread.  The logging thread makes the
    lines, a burst at a time, with the connection's own fields encoded
    once.  At INFO a busy sink logs two records per message; made the
    general way, in the session threads, they cost a fifth of its
    throughput."""

    def __init__(self, formatter: JsonFormatter | TextFormatter, buffer: Buffer) -> None:
        self._formatter = formatter
        self._buffer = buffer

    def __call__(self, base: dict[str, Any]) -> Callable[..., None]:
        make_line, buffer = self._formatter.session_lines(base), self._buffer
        items, limit = buffer.items, buffer.limit

        # A record goes on the buffer as a plain tuple, the cheapest thing to
        # make: (levelno, line maker, created, message, error, fields, base).
        def write(
            levelno: int, message: str, fields: dict[str, Any], error: str | None = None
        ) -> None:
            if len(items) < limit:  # as Buffer.put_nowait: full means dropped
                items.append((levelno, make_line, time.time(), message, error, fields, base))
            else:
                buffer.dropped += 1

        return write


def _pending_line(item: tuple[Any, ...]) -> tuple[int, str] | logging.LogRecord:
    """What the writer makes of a pending session record: its level and
    line, or, when the line maker fails, a record for the general way
    (whose formatter copes with any value, or reports the failure)."""
    levelno, make_line, created, message, error, fields, base = item
    try:
        return levelno, make_line(created, levelno, message, error, fields)
    except Exception:  # noqa: BLE001 - logging's convention: report, never raise
        return logging.makeLogRecord({"name": "badsmtp.session", "msg": message,
                                      "levelno": levelno, "created": created,
                                      "levelname": logging.getLevelName(levelno),
                                      "fields": {**base, **fields}, "error": error})  # fmt: skip


def _line_record(levelno: int, text: str) -> logging.LogRecord:
    """A record carrying a formatted line, for the outputs that take records."""
    return logging.makeLogRecord({"name": "badsmtp.session", "msg": text, "levelno": levelno,
                                  "levelname": logging.getLevelName(levelno),
                                  FORMATTED: text})  # fmt: skip


class Flushed:
    """Queued by :meth:`LogSetup.flush`: set once everything before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class BufferHandler(logging.handlers.QueueHandler):
    """Enqueues the record with its message merged and any traceback as
    text.  It is the only handler of its logger and the buffer is
    thread-safe, so the record is not copied and no lock is taken."""

    def __init__(self, buffer: Buffer) -> None:
        super().__init__(buffer)  # type: ignore[arg-type]
        self.buffer = buffer

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filter(record):
            self.emit(record)
            return True
        return False

    def emit(self, record: logging.LogRecord) -> None:
        # The record stays in this process: only what may change before it
        # is formatted needs fixing now (the arguments, the traceback).
        if record.args or record.exc_info:
            record = self.prepare(record)
        # Format here, in the thread that logs, so the line shows the fields
        # as they were when logged, whatever the caller does with its dict
        # next.  (Session records, the many, take DirectWriter's way.)
        if self.formatter is not None:
            try:
                setattr(record, FORMATTED, self.formatter.format(record))
            except Exception:  # noqa: BLE001,S110 - the writer formats it again, or reports it
                pass
        self.buffer.put_nowait(record)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.message = record.getMessage()
        record.msg, record.args = record.message, None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


class BurstStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Runs on the listener's thread and writes a burst of records with one
    ``write`` and one ``flush`` once the buffer is empty: one system call
    per burst, not one per record, even when the stream is unbuffered
    (``PYTHONUNBUFFERED``)."""

    def __init__(
        self, stream: IO[str], pending: Buffer, guard: AbstractContextManager[Any] | None = None
    ) -> None:
        super().__init__(stream)
        self._pending = pending
        self._lines: list[str] = []
        # Held around each write: processes sharing the stream (``badsmtp
        # --workers``) take turns, so their lines never interleave.
        self._guard = guard if guard is not None else nullcontext()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)
            return
        self.add(text)

    def add(self, text: str) -> None:
        """Write one formatted line (with the burst it belongs to)."""
        self.add_pending(text)
        if not self._pending:
            self.flush()

    def add_pending(self, text: str) -> None:
        """Add one formatted line to the burst; the caller flushes when the
        buffer runs empty (or the burst reaches :data:`BATCH_LINES`)."""
        lines = self._lines
        lines.append(text + self.terminator)
        if len(lines) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        self.acquire()
        try:
            lines, self._lines = self._lines, []
            with self._guard:
                if self.stream is not None:
                    self.stream.write("".join(lines))
                super().flush()
        except OSError:
            pass  # stdout went away: nothing better to do with a log line
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        super().close()


class BufferListener(logging.handlers.QueueListener):
    """Writes what was logged, every :data:`BATCH_INTERVAL` seconds."""

    def __init__(self, buffer: Buffer, *handlers: logging.Handler) -> None:
        super().__init__(buffer, *handlers)  # type: ignore[arg-type]
        self.buffer = buffer
        self.wake = threading.Event()
        # Standard output alone: formatted lines go straight to its batch.
        only = handlers[0] if len(handlers) == 1 else None
        self._stream = only if type(only) is BurstStreamHandler else None

    def dequeue(self, block: bool) -> Any:
        items, stream = self.buffer.items, self._stream
        while True:
            try:
                item = items.popleft()
            except IndexError:
                self._idle(block)
                continue
            if type(item) is tuple:  # a session record's parts, from DirectWriter
                line = _pending_line(item)
                if stream is not None and type(line) is tuple:
                    if line[0] >= stream.level:
                        stream.add_pending(line[1])
                    continue
                return line
            if type(item) is Flushed:
                self._flushed(item)
                continue
            return item

    # Called only when the buffer runs empty or on a flush, never per record.
    def _idle(self, block: bool) -> None:
        """The buffer ran empty: write the burst so far, then wait for more
        (:data:`BATCH_INTERVAL` at most); ``queue.Empty`` when not blocking."""
        if not block:
            raise queue.Empty from None
        if self._stream is not None:
            self._stream.flush()
        self.wake.wait(BATCH_INTERVAL)
        self.wake.clear()

    def _flushed(self, marker: Flushed) -> None:
        """Everything before ``marker`` is written: flush every handler, then say so."""
        for handler in self.handlers:
            handler.flush()
        marker.done.set()

    def handle(self, record: logging.LogRecord | tuple[int, str]) -> None:
        if not isinstance(record, tuple):
            super().handle(record)
            return
        levelno, text = record  # a session record's line
        for handler in self.handlers:
            if levelno >= handler.level:
                if type(handler) is BurstStreamHandler:
                    handler.add(text)
                else:
                    handler.handle(_line_record(levelno, text))

    def enqueue_sentinel(self) -> None:
        self.buffer.items.append(self._sentinel)  # type: ignore[attr-defined]
        self.wake.set()
