"""The record shapes of badsmtp(1), LOGGING, for the ``badsmtp`` command's logging.

- JSON, one object per line:
  ``{"timestamp", "level", "message", "error"?, "fields"?}``, through
  python-json-logger's formatter and encoder;
- text: ``{timestamp} [{LEVEL}] {message} error=... key=value...`` (keys sorted).

Records carry their data as ``extra={"fields": {...}}``; a field named
``error``, or ``extra={"error": ...}``, becomes the record's top-level
``error``.  Each formatter also makes a line straight from a record's parts
(:meth:`JsonFormatter.line`, :meth:`JsonFormatter.session_lines`), for the
session records that never become ``LogRecord`` objects
(:class:`badsmtp.logbuffer.DirectWriter`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

__all__ = ["FORMATTED", "JsonFormatter", "LineMaker", "TextFormatter", "level_name"]


def level_name(levelno: int) -> str:
    """The level as the records spell it: WARN, not WARNING (badsmtp(1), --log-level)."""
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
    # RFC 3339, UTC, "Z", milliseconds.  The text of the last
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


FORMATTED = "_badsmtp_text"  # a record's text, when its emitting thread formatted it


def _shape(
    log_data: dict[str, Any],
    created: float,
    levelno: int,
    message: str,
    error: str | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """The JSON record (badsmtp(1), LOGGING), in its key order."""
    log_data["timestamp"] = _timestamp(created)
    log_data["level"] = level_name(levelno)
    log_data["message"] = message
    if error is not None:
        log_data["error"] = error
    if fields:
        log_data["fields"] = fields
    return log_data


def _compact_encoder() -> Callable[[Any], str]:
    """python-json-logger's encoder with compact separators (no spaces, as in
    badsmtp(1), LOGGING).

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
    """python-json-logger's formatter, reshaped to badsmtp's record (badsmtp(1),
    LOGGING)."""

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
        done: str | None = getattr(record, FORMATTED, None)
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
        done: str | None = getattr(record, FORMATTED, None)
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
