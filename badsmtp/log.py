"""Logging set-up for the ``badsmtp`` command (spec 19).

Library code only ever calls ``logging.getLogger("badsmtp....")`` and passes
its structured data as ``extra={"fields": {...}}`` (a field named ``error``,
or ``extra={"error": ...}``, becomes the record's top-level ``error``).  This
module turns those records into the documented shapes and sends them where
the configuration says:

- JSON, one object per line:
  ``{"timestamp", "level", "message", "error"?, "fields"?}``;
- text: ``{timestamp} [{LEVEL}] {message} error=... key=value...`` (keys sorted);
- outputs ``stdout``, ``syslog`` (tag ``badsmtp``), ``tcp`` and ``udp``.

Records are written on a :class:`~logging.handlers.QueueListener` thread
behind a bounded buffer, for every output, so a slow or dead receiver never
stalls a session: a thread that logs formats its record and appends it (no
system call, no lock held across a write).  Session records, two per
message at INFO, take a shorter way (:class:`_DirectWriter`): their parts
go on the buffer as they are and the logging thread formats them, a burst
at a time.  When the buffer is full, records are dropped (and counted);
when a send fails, the record goes to stdout instead (spec 19.1).  Standard
output is flushed when the buffer runs empty, not after every record.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from . import sessionlog

__all__ = [
    "LOG_KEYS",
    "JsonFormatter",
    "LogConfigError",
    "LogSettings",
    "LogSetup",
    "LogSetupError",
    "RemoteHandler",
    "TextFormatter",
    "configure",
    "level_name",
]

LOG_KEYS = ("log_level", "log_format", "log_output", "log_remote_addr", "syslog_facility")
LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,  # accepted as a synonym when configuring (19.1)
    "ERROR": logging.ERROR,
}
FORMATS = ("json", "text")
OUTPUTS = ("stdout", "syslog", "tcp", "udp")
FACILITIES = ("mail", "daemon", *(f"local{n}" for n in range(8)))
SYSLOG_ADDRESS = "/dev/log"
QUEUE_SIZE = 10_000  # records waiting for a slow receiver before new ones are dropped
BATCH_INTERVAL = 0.02  # seconds: how often the logging thread writes what was logged
BATCH_LINES = 4096  # lines: written at once even if the buffer never runs empty
SEND_TIMEOUT = 1.0  # seconds: connect and send to a remote receiver
RETRY_AFTER = 5.0  # seconds: after a failed send, records go to stdout this long


class LogSetupError(Exception):
    """Logging cannot be set up as configured; the message is one line."""


class LogConfigError(LogSetupError):
    """The logging settings themselves are wrong (not the world outside)."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The five logging keys of spec 20.2, normalised as spec 19.1 says:
    unknown values fall back to the defaults instead of failing."""

    log_level: str = "INFO"
    log_format: str = "json"
    log_output: str = "stdout"
    log_remote_addr: str = ""
    syslog_facility: str = "mail"

    def __post_init__(self) -> None:
        level = self.log_level.strip().upper()
        level = "WARN" if level == "WARNING" else level
        fmt, output = self.log_format.strip().lower(), self.log_output.strip().lower()
        facility = self.syslog_facility.strip().lower()
        object.__setattr__(self, "log_level", level if level in LEVELS else "INFO")
        object.__setattr__(self, "log_format", fmt if fmt in FORMATS else "json")
        object.__setattr__(self, "log_output", output if output in OUTPUTS else "stdout")
        object.__setattr__(self, "log_remote_addr", self.log_remote_addr.strip())
        object.__setattr__(self, "syslog_facility", facility if facility in FACILITIES else "mail")

    @property
    def levelno(self) -> int:
        return LEVELS[self.log_level]


def level_name(levelno: int) -> str:
    """The level as spec 19.1 spells it (WARN, not WARNING)."""
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


_cached_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text
_cached_ms: tuple[int, str] = (-1, "")  # the last millisecond formatted, and its text


def _timestamp(created: float) -> str:
    # RFC 3339, UTC, "Z", milliseconds (spec 19.2).  The text of the last
    # second and of the last millisecond are reused (each swapped as one
    # tuple, so threads never mix them up): a burst of records shares them.
    global _cached_second, _cached_ms
    ms = int(created * 1000)
    cached = _cached_ms
    if cached[0] == ms:
        return cached[1]
    second, prefix = _cached_second
    if second != ms // 1000:
        second = ms // 1000
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _cached_second = (second, prefix)
    text = f"{prefix}.{ms % 1000:03d}Z"
    _cached_ms = (ms, text)
    return text


def _lift_error(error: Any, fields: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """A field named ``error`` becomes the record's ``error``, unless it
    has one; ``fields`` must be the caller's own copy."""
    lifted = fields.pop("error", None)
    error = lifted if error is None else error
    return (None if error is None else str(error)), fields


def _error_and_fields(
    record: logging.LogRecord, formatted_exc: str | None
) -> tuple[str | None, dict[str, Any]]:
    fields: dict[str, Any] = getattr(record, "fields", None) or {}
    error = getattr(record, "error", None)
    trace = formatted_exc or record.exc_text
    if "error" in fields or trace:
        error, fields = _lift_error(error, dict(fields))  # never change the caller's dict
    if trace:
        fields["traceback"] = trace
        if error is None:
            lines = trace.strip().splitlines()
            error = lines[-1] if lines else None
    return (None if error is None else str(error)), fields


# (created, levelno, message, error, fields) -> the record's line
LineMaker = Callable[[float, int, str, "str | None", "dict[str, Any]"], str]


def _merging(line: LineMaker, base: dict[str, Any]) -> LineMaker:
    """``line`` for records whose fields begin with ``base``'s."""

    def merged(
        created: float, levelno: int, message: str, error: str | None, fields: dict[str, Any]
    ) -> str:
        error, fields = _lift_error(error, {**base, **fields})
        return line(created, levelno, message, error, fields)

    return merged


_FORMATTED = "_badsmtp_text"  # a record's text, when its emitting thread formatted it


def _shape(
    log_data: dict[str, Any],
    created: float,
    levelno: int,
    message: str,
    error: str | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The JSON record of spec 19.2, in its key order."""
    log_data["timestamp"] = _timestamp(created)
    log_data["level"] = level_name(levelno)
    log_data["message"] = message
    if error is not None:
        log_data["error"] = error
    if fields:
        log_data["fields"] = fields
    return log_data


def _compact_encoder() -> Callable[[Any], str]:
    """python-json-logger's encoder with the spec's compact separators.

    ``JSONEncoder.encode`` builds a new C encoder for every call; the one
    built here is made once and reused (it keeps no state between calls:
    no ``markers``, so no circular-reference check, which records of plain
    strings, numbers and lists never need)."""
    encoder = JsonEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator in this Python
        return encoder.encode
    chunks = make(None, encoder.default, json.encoder.encode_basestring_ascii, None,
                  ":", ",", False, False, True)  # fmt: skip
    return lambda data: "".join(chunks(data, 0))


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter, reshaped to the record of spec 19.2."""

    def __init__(self) -> None:
        encode = _compact_encoder()
        super().__init__(json_serializer=lambda data, **_: encode(data))
        self._encode = encode
        self._heads: dict[tuple[int, str], str] = {}

    def line(
        self, created: float, levelno: int, message: str, error: str | None, fields: dict[str, Any]
    ) -> str:
        """One record's line from its parts: what :meth:`format` writes for
        a record with these values, without the record."""
        return self._encode(_shape({}, created, levelno, message, error, fields))

    def session_lines(self, base: dict[str, Any]) -> LineMaker:
        """:meth:`line` for the records of one session, whose fields all
        begin with ``base``'s: those are encoded once, and so is the part
        of the record each message (at each level) has in common."""
        merged = _merging(self.line, base)
        if not base:
            return merged
        encode, heads = self._encode, self._heads
        opening = encode(base)[:-1]  # '{"session_id":...,"hostname":"..."'
        unusual = frozenset(("error", *base))  # fields that need merging or lifting

        def line(
            created: float, levelno: int, message: str, error: str | None, fields: dict[str, Any]
        ) -> str:
            if error is not None or not unusual.isdisjoint(fields):
                return merged(created, levelno, message, error, fields)
            head = heads.get((levelno, message))
            if head is None:
                head = f'","level":"{level_name(levelno)}","message":{encode(message)},"fields":'
                if len(heads) < 256:  # the session log's messages are a short, fixed list
                    heads[(levelno, message)] = head
            if not fields:
                return f'{{"timestamp":"{_timestamp(created)}{head}{opening}}}}}'
            return f'{{"timestamp":"{_timestamp(created)}{head}{opening},{encode(fields)[1:]}}}'

        return line

    def format(self, record: logging.LogRecord) -> str:
        done: str | None = getattr(record, _FORMATTED, None)
        if done is not None:
            return done
        # The base class's format() with its generic steps left out (it runs
        # on the logging thread for every record): merge the message, shape
        # the record, serialize with python-json-logger's encoder.
        record.message = record.getMessage()
        exc = self.formatException(record.exc_info) if record.exc_info else None
        log_data: dict[str, Any] = {}
        self.add_fields(log_data, record, {"exc_info": exc} if exc else {})
        return self.serialize_log_record(log_data)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        exc = message_dict.get("exc_info")
        error, fields = _error_and_fields(record, exc if isinstance(exc, str) else None)
        _shape(log_data, record.created, record.levelno, record.message, error, fields)


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        if value and not any(c.isspace() or c in '"=\\' for c in value):
            return value
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """``{timestamp} [{LEVEL}] {message} error={error} key=value...``, keys
    sorted, one line per record (values with spaces are quoted)."""

    def format(self, record: logging.LogRecord) -> str:
        done: str | None = getattr(record, _FORMATTED, None)
        if done is not None:
            return done
        exc = self.formatException(record.exc_info) if record.exc_info else None
        error, fields = _error_and_fields(record, exc)
        return self.line(record.created, record.levelno, record.getMessage(), error, fields)

    def line(
        self, created: float, levelno: int, message: str, error: str | None, fields: dict[str, Any]
    ) -> str:
        """One record's line from its parts (see :meth:`JsonFormatter.line`)."""
        parts = [f"{_timestamp(created)} [{level_name(levelno)}] {message}"]
        if error is not None:
            parts.append(f"error={_text_value(error)}")
        parts.extend(f"{key}={_text_value(fields[key])}" for key in sorted(fields))
        return " ".join(parts)

    def session_lines(self, base: dict[str, Any]) -> LineMaker:
        """:meth:`line` for the records of one session (see
        :meth:`JsonFormatter.session_lines`); keys are sorted, so the fields
        are merged."""
        return _merging(self.line, base)


# -- the queue between the server's threads and slow outputs -----------------------
class _Buffer:
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


class _DirectWriter:
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

    def __init__(self, formatter: JsonFormatter | TextFormatter, buffer: _Buffer) -> None:
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
            if len(items) < limit:  # as _Buffer.put_nowait: full means dropped
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
                                  _FORMATTED: text})  # fmt: skip


class _Flushed:
    """Queued by :meth:`LogSetup.flush`: set once everything before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


class _QueueHandler(logging.handlers.QueueHandler):
    """Enqueues the record with its message merged and any traceback as
    text.  It is the only handler of its logger and the buffer is
    thread-safe, so the record is not copied and no lock is taken."""

    def __init__(self, buffer: _Buffer) -> None:
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
        # next.  (Session records, the many, take _DirectWriter's way.)
        if self.formatter is not None:
            try:
                setattr(record, _FORMATTED, self.formatter.format(record))
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


class _StreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Runs on the listener's thread and writes a burst of records with one
    ``write`` and one ``flush`` once the buffer is empty: one system call
    per burst, not one per record, even when the stream is unbuffered
    (``PYTHONUNBUFFERED``)."""

    def __init__(self, stream: IO[str], pending: _Buffer) -> None:
        super().__init__(stream)
        self._pending = pending
        self._lines: list[str] = []

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


class _QueueListener(logging.handlers.QueueListener):
    """Writes what was logged, every :data:`BATCH_INTERVAL` seconds."""

    def __init__(self, buffer: _Buffer, *handlers: logging.Handler) -> None:
        super().__init__(buffer, *handlers)  # type: ignore[arg-type]
        self.buffer = buffer
        self.wake = threading.Event()
        # Standard output alone: formatted lines go straight to its batch.
        only = handlers[0] if len(handlers) == 1 else None
        self._stream = only if type(only) is _StreamHandler else None

    def dequeue(self, block: bool) -> Any:
        items, stream = self.buffer.items, self._stream
        while True:
            try:
                item = items.popleft()
            except IndexError:
                if not block:
                    raise queue.Empty from None
                if stream is not None:
                    stream.flush()
                self.wake.wait(BATCH_INTERVAL)
                self.wake.clear()
                continue
            if type(item) is tuple:  # a session record's parts, from _DirectWriter
                line = _pending_line(item)
                if stream is not None and type(line) is tuple:
                    if line[0] >= stream.level:
                        stream.add_pending(line[1])
                    continue
                return line
            if type(item) is _Flushed:
                for handler in self.handlers:
                    handler.flush()
                item.done.set()
                continue
            return item

    def handle(self, record: logging.LogRecord | tuple[int, str]) -> None:
        if not isinstance(record, tuple):
            super().handle(record)
            return
        levelno, text = record  # a session record's line
        for handler in self.handlers:
            if levelno >= handler.level:
                if type(handler) is _StreamHandler:
                    handler.add(text)
                else:
                    handler.handle(_line_record(levelno, text))

    def enqueue_sentinel(self) -> None:
        self.buffer.items.append(self._sentinel)  # type: ignore[attr-defined]
        self.wake.set()


def _split_address(addr: str, output: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise LogConfigError(
            f"invalid remote address for {output} logging: {addr} (want host:port)"
        )
    return host, int(port)


class RemoteHandler(logging.Handler):
    """Sends each formatted record, newline-terminated, to ``host:port`` over
    TCP (one persistent connection, re-opened when it breaks) or UDP (one
    datagram per record).  A record that cannot be sent goes to ``fallback``;
    after a failure, records go straight to ``fallback`` for
    :data:`RETRY_AFTER` seconds so a dead receiver costs no timeouts.

    Runs on the queue listener's thread, never on a session's."""

    def __init__(self, output: str, addr: str, fallback: logging.Handler) -> None:
        super().__init__()
        self.output = output
        self.addr = addr
        self.fallback = fallback
        host, port = _split_address(addr, output)
        kind = socket.SOCK_STREAM if output == "tcp" else socket.SOCK_DGRAM
        try:
            info = socket.getaddrinfo(host, port, type=kind)
        except OSError as exc:
            raise LogSetupError(f"cannot resolve {output} log address {addr}: {exc}") from None
        family, kind, proto, _, sockaddr = info[0]
        self._family: socket.AddressFamily = family
        self._type: socket.SocketKind = kind
        self._proto: int = proto
        self._sockaddr: Any = sockaddr
        self._sock: socket.socket | None = None
        self._retry_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)
            return
        if time.monotonic() >= self._retry_at:
            try:
                self._send(data)
                return
            except OSError:
                self._drop_socket()
                self._retry_at = time.monotonic() + RETRY_AFTER
        self.fallback.handle(record)

    def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            sock = socket.socket(self._family, self._type, self._proto)
            sock.settimeout(SEND_TIMEOUT)
            try:
                if self._type == socket.SOCK_STREAM:
                    sock.connect(self._sockaddr)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        if self._type == socket.SOCK_STREAM:
            sock.sendall(data)
        else:
            sock.sendto(data, self._sockaddr)

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.acquire()
        try:
            self._drop_socket()
        finally:
            self.release()
        super().close()


# -- putting it together ------------------------------------------------------------
# What a record costs to make: no caller lookup (a stack walk per record), no
# thread/process names; the records of spec 19.2 use none of them.  These are
# the switches of the logging HOWTO's "Optimization" section.
_SWITCHES = {"_srcfile": None, "logThreads": False, "logProcesses": False,
             "logMultiprocessing": False}  # fmt: skip


class LogSetup:
    """The handlers :func:`configure` installed; :meth:`close` flushes the
    queue and removes them (so tests can configure again)."""

    def __init__(
        self,
        logger: logging.Logger,
        handler: _QueueHandler,
        listener: _QueueListener,
        owned: list[logging.Handler],
    ) -> None:
        self.logger = logger
        self.handler = handler
        self._listener = listener
        self._owned = owned
        self._saved = (logger.level, logger.propagate)
        self._switches = {name: getattr(logging, name) for name in _SWITCHES}
        self._closed = False
        self._direct = False  # whether session records take the short way

    @property
    def dropped(self) -> int:
        """Records dropped because the buffer to a slow output was full."""
        return self.handler.buffer.dropped

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record logged so far has been written."""
        marker = _Flushed()
        self.handler.buffer.items.append(marker)
        self._listener.wake.set()
        return marker.done.wait(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._direct:
            sessionlog.set_direct_writer(None)
        self.logger.removeHandler(self.handler)
        self._listener.stop()
        for handler in self._owned:
            handler.close()
        self.handler.close()
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]
        for name, value in self._switches.items():
            setattr(logging, name, value)


class _SyslogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler whose failed sends go to ``fallback`` (stdout) instead
    of a traceback on stderr, like the tcp/udp outputs (spec 19.1)."""

    def __init__(self, address: str, facility: int, fallback: logging.Handler) -> None:
        super().__init__(address=address, facility=facility)
        self.fallback = fallback

    def handleError(self, record: logging.LogRecord) -> None:
        self.fallback.handle(record)


def _probe_syslog(address: str) -> None:
    """Fail at start-up when syslog cannot be reached: SysLogHandler itself
    ignores that (as openlog(3) does), spec 19.1 does not."""
    failure: OSError | None = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.connect(address)
            return
        except OSError as exc:
            failure = failure or exc
        finally:
            sock.close()
    assert failure is not None
    raise LogSetupError(f"failed to connect to syslog: {failure.strerror or failure}")


def _syslog_handler(
    settings: LogSettings, address: str, fallback: logging.Handler
) -> logging.Handler:
    _probe_syslog(address)
    facility = logging.handlers.SysLogHandler.facility_names[settings.syslog_facility]
    handler = _SyslogHandler(address, facility, fallback)
    handler.ident = f"badsmtp[{os.getpid()}]: "  # the tag is "badsmtp" (spec 19.1)
    return handler


def configure(
    settings: LogSettings,
    *,
    stream: IO[str] | None = None,
    syslog_address: str | None = None,
    logger_name: str = "badsmtp",
) -> LogSetup:
    """Install handlers on the ``badsmtp`` logger as ``settings`` say.

    ``stream`` is where stdout output (and the fallback of the other
    outputs) goes, ``sys.stdout`` by default; ``syslog_address`` is the
    local syslog socket, :data:`SYSLOG_ADDRESS` by default.  Raises :class:`LogSetupError` with the
    spec's one-line texts."""
    if settings.log_output in ("tcp", "udp") and not settings.log_remote_addr:
        raise LogConfigError(f"remote address required for {settings.log_output} logging")
    formatter: JsonFormatter | TextFormatter = (
        TextFormatter() if settings.log_format == "text" else JsonFormatter()
    )
    pending = _Buffer(QUEUE_SIZE)
    out = _StreamHandler(stream if stream is not None else sys.stdout, pending)
    out.setFormatter(formatter)
    target: logging.Handler
    if settings.log_output == "stdout":
        target = out
    elif settings.log_output == "syslog":
        target = _syslog_handler(settings, syslog_address or SYSLOG_ADDRESS, out)
    else:
        target = RemoteHandler(settings.log_output, settings.log_remote_addr, out)
    target.setFormatter(formatter)

    logger = logging.getLogger(logger_name)
    handler = _QueueHandler(pending)
    handler.setFormatter(formatter)
    listener = _QueueListener(pending, target)
    listener.start()
    setup = LogSetup(logger, handler, listener, [target] if target is out else [target, out])
    for name, value in _SWITCHES.items():
        setattr(logging, name, value)
    logger.addHandler(handler)
    logger.setLevel(settings.levelno)
    logger.propagate = False  # the CLI owns the process: no duplicates via the root
    if logger_name == "badsmtp":
        sessionlog.set_direct_writer(_DirectWriter(formatter, pending))
        setup._direct = True
    return setup
