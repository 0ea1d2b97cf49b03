"""What accepting connections needs besides the acceptor's loop: the listen
backlog the system allows, the back-off after a failed ``accept()``, and
failures logged once per episode instead of once each."""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import Any, Literal

__all__ = [
    "ACCEPT_BATCH", "CONNECTION_ERRORS", "Episode", "Outcome", "backoff", "max_backlog", "paused",
]

SOMAXCONN_FILE = "/proc/sys/net/core/somaxconn"
FIRST_REST = 0.05  # seconds: the first pause after a failed accept()
LONGEST_REST = 1.0
ACCEPT_BATCH = 64  # connections taken from one listener before looking at the others
# How accepting from one listener ended: its queue emptied, a full batch
# taken (more may wait), or a failure that calls for a rest.
Outcome = Literal["empty", "more", "failed"]

# accept() errors that belong to one connection, which the call took off the
# queue: the next accept() is a new attempt, so they can be logged one by one
# and the loop goes on (Linux accept(2), "Error handling").  Any other error
# (EMFILE, ENFILE, ENOBUFS, ENOMEM above all) stays until something changes:
# the acceptor rests instead of retrying at once.
CONNECTION_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN",
        "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH",
    )
    if hasattr(errno, name)
)


def max_backlog(path: str = SOMAXCONN_FILE) -> int:
    """The largest accept queue the system grants a listening socket.

    Linux silently caps listen()'s backlog at ``net.core.somaxconn`` (listen(2)),
    which an administrator may have raised above ``socket.SOMAXCONN``, the
    value the C headers had when Python was built; elsewhere that constant is
    the best answer we have.  In a connection burst beyond the queue, clients
    complete their TCP handshake and then wait for a greeting that never
    comes (``scripts/burst`` measures it)."""
    try:
        with open(path, encoding="ascii") as file:
            value = int(file.read())
    except (OSError, ValueError):
        return socket.SOMAXCONN
    return value if value > 0 else socket.SOMAXCONN


def backoff(rests: int) -> float:
    """How long the ``rests``-th pause in a row lasts: doubling from 50 ms
    up to 1 s, the shape of Go's ``net/http`` accept loop (5 ms to 1 s).  A
    connection that closes ends a pause sooner; this only bounds the wait."""
    return min(FIRST_REST * 2.0 ** min(rests, 16), LONGEST_REST)


def paused(exc: OSError, port: int) -> tuple[str, dict[str, Any]]:
    """The record that starts an accept() failure episode: its message
    ("Accept paused: too many open files") and fields."""
    reason = (exc.strerror or str(exc)).lower()
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return f"Accept paused: {reason}", {"errno": name, "port": port}


class Episode:
    """A run of one kind of failure, logged as two WARN records: one when it
    starts, one when it ends with the count and the duration.  Never one per
    failure: at the descriptor limit that was 70,000 lines a second."""

    def __init__(self, log: logging.Logger, ended: str, counted: str) -> None:
        self._log = log
        self._ended = ended  # the message of the closing record
        self._counted = counted  # the name of its count field
        self.count = 0
        self._since = 0.0

    @property
    def active(self) -> bool:
        return self.count > 0

    def failed(self, message: str, fields: dict[str, Any], exc_info: Any = None) -> None:
        """One more failure; the first of an episode is logged."""
        if not self.count:
            self._since = time.monotonic()
            self._log.warning(message, extra={"fields": fields}, exc_info=exc_info)
        self.count += 1

    def end(self) -> None:
        """The failures stopped: log the episode's count and duration."""
        if self.count:
            seconds = round(time.monotonic() - self._since, 3)
            self._log.warning(
                self._ended, extra={"fields": {self._counted: self.count, "seconds": seconds}}
            )
            self.count = 0
