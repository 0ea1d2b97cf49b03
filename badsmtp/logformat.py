"""The record shapes of badsmtp(1), LOGGING, for the ``badsmtp`` command's logging.

- JSON, one object per line:
  ``{"timestamp", "level", "message", "error"?, "fields"?}``, through
  python-json-logger's formatter and encoder (:mod:`badsmtp.logjson`, loaded
  only for JSON records: ``badsmtp.logformat.JsonFormatter`` loads it);
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


def __getattr__(name: str) -> Any:
    # The JSON formatter lives with python-json-logger in badsmtp.logjson,
    # which a text log never loads (PEP 562).
    if name == "JsonFormatter":
        from .logjson import JsonFormatter

        return JsonFormatter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
