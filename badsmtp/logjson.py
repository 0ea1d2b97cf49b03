"""The JSON record of badsmtp(1), LOGGING, through python-json-logger's
formatter and encoder: a module of its own so that a text log never loads
python-json-logger (:mod:`badsmtp.logformat` has the shapes both share).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from .logformat import (
    FORMATTED,
    LineMaker,
    _error_and_fields,
    _merging,
    _shape,
    _timestamp,
    level_name,
)

__all__ = ["JsonFormatter"]


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
