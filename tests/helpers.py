"""Helpers shared by the test modules (``from helpers import ...``)."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from badsmtp import BadSMTP

ROOT = Path(__file__).resolve().parent.parent  # the checkout: README.md, man/, examples/, scripts/


def split_command(line: str) -> tuple[str, list[str]]:
    """Verb (upper-cased) and arguments (case kept) of a trimmed, non-empty
    command line, split at runs of spaces and tabs as the session splits
    them: ``str.split()`` would also split at CR, NBSP, U+2028 and the like.
    Verbs are case-insensitive (RFC 5321 §2.4)."""
    words = [word for word in line.replace("\t", " ").split(" ") if word]
    return words[0].upper(), words[1:]


def b64(text: str | bytes) -> str:
    """Base64 of ``text`` (UTF-8), as a SASL client sends it (RFC 4954 §4)."""
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


# -- servers -----------------------------------------------------------------------
@contextmanager
def serving(*args: Any, **kwargs: Any) -> Iterator[BadSMTP]:
    """``BadSMTP(*args, **kwargs)``, serving in a thread for the ``with``
    block, then stopped.  Like the ``server`` fixture, the test fails if the
    server recorded an internal error (a bug in badsmtp, answered 421)."""
    srv = BadSMTP(*args, **kwargs).serve_in_thread()
    try:
        yield srv
    finally:
        srv.stop()
    assert srv.errors == [], f"internal errors in the server: {srv.errors!r}"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` with a deadline (no sleeping: a short event wait).
    Only for what nothing can be waited on: prefer ``wait_for_sessions``,
    ``wait_for_messages``, ``Transcript.wait_closed`` or an event."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.005)


class LogRecords(logging.Handler):
    """The records a logger emits, kept as they come, so that a test can
    wait for one (:meth:`wait_for`) instead of polling ``caplog``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._added = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._added:
            self.records.append(record)
            self._added.notify_all()

    def wait_for(
        self,
        predicate: Callable[[list[logging.LogRecord]], bool],
        timeout: float = 5.0,
        what: str = "records",
    ) -> None:
        with self._added:
            if not self._added.wait_for(lambda: predicate(self.records), timeout):
                raise AssertionError(f"timed out waiting for {what}: {self.records!r}")


@contextmanager
def log_records(name: str = "badsmtp") -> Iterator[LogRecords]:
    """Every record of logger ``name`` (and its children) while the block runs."""
    handler, logger = LogRecords(), logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
