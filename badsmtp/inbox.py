"""The messages the inspection API shows (badsmtp(1), INSPECTION API): the
newest N accepted messages with their envelope, and where each body is.

Bounded memory: at most ``keep`` entries; a body is the maildir file the
message was stored in (read only when asked, and only inside the mailbox),
or, with storage off, the content in memory, up to ``memory`` octets in all,
the oldest bodies dropped first (their ``/raw`` is then gone).

The accept path pays one ``time.time()``, one small object and one lock;
ids (``os.urandom``), headers, the subject and the time's text are made
when the API asks.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .storage import HEADER_LIMIT  # headers are parsed from at most this much of a body

if TYPE_CHECKING:
    from .actions import Envelope

__all__ = ["Entry", "Inbox", "new_message_id"]



_ID_OCTETS = 12
_POOL = 4096 // _ID_OCTETS * _ID_OCTETS  # random octets drawn at once: one system call per 341 ids
_random = threading.local()


def new_message_id() -> str:
    """``msg_`` and 24 hex digits from ``os.urandom``: unguessable, never
    reused.  Drawn in blocks (a per-thread pool): one system call per
    message would be a cost on the accept path."""
    pool: bytes = getattr(_random, "pool", b"")
    if not pool:
        pool = os.urandom(_POOL)
    _random.pool = pool[_ID_OCTETS:]
    return "msg_" + pool[:_ID_OCTETS].hex()


class Entry:
    """One accepted message as the inspection API knows it: its envelope,
    and its body or where the body is.  Its id is drawn when the API first
    shows it (:meth:`Inbox.id_of`): nothing random on the accept path."""

    __slots__ = ("_headers", "_id", "body", "client_ip", "created", "env", "offset", "path",
                 "session_id")  # fmt: skip

    def __init__(self, env: Envelope, session_id: str, client_ip: str, body: bytes | None) -> None:
        self.env = env
        self.session_id = session_id
        self.client_ip = client_ip
        self.created = time.time()
        self.body = body  # in memory (storage off)
        self.path: str | None = None  # the maildir file (storage on)
        self.offset = 0  # where the content starts in it, after badsmtp's prefix lines
        self._id: str | None = None  # None: not shown yet; "": forgotten before it was shown
        self._headers: dict[str, list[str]] | None = None

    @property
    def id(self) -> str:
        assert self._id, "ids are drawn by Inbox.id_of"
        return self._id

    @property
    def stored(self) -> str:
        """``maildir``, ``memory`` or ``none`` (the body is no longer kept)."""
        return "maildir" if self.path else "memory" if self.body is not None else "none"


class Inbox:
    """The newest ``keep`` messages, thread-safe; waiters wake on each new one."""

    def __init__(self, keep: int, memory: int, mailbox_dir: str | None) -> None:
        self.keep = keep
        self.memory = memory  # octets of bodies kept in memory, at most
        self.mailbox = os.path.realpath(mailbox_dir) if mailbox_dir else None
        self._entries: deque[Entry] = deque()  # oldest first
        self._by_id: dict[str, Entry] = {}  # the kept entries whose id was shown
        self._in_memory = 0
        self._lock = threading.Lock()  # a C-level `with` on the accept path
        self._cond = threading.Condition(self._lock)
        self._waiting = 0  # requests waiting (?wait=): only then is there anyone to notify

    @property
    def in_memory(self) -> bool:
        """Whether bodies are kept in memory (storage is off)."""
        return self.mailbox is None

    # The entry's class, for the accept path (the server imports nothing of this module).
    entry = Entry

    def add(self, entry: Entry) -> None:
        with self._lock:
            entries = self._entries
            if len(entries) >= self.keep:
                old = entries.popleft()  # _forget(), inlined: this runs for every message
                if old.body is not None:
                    self._in_memory -= len(old.body)
                    old.body = None
                if old._id:
                    del self._by_id[old._id]
                else:
                    old._id = ""
            entries.append(entry)
            body = entry.body
            if body is not None:
                self._in_memory += len(body)
                if self._in_memory > self.memory:
                    self._trim_bodies()
            if self._waiting:
                self._cond.notify_all()

    def _forget(self, entry: Entry) -> None:
        self._forget_body(entry)
        if entry._id:
            del self._by_id[entry._id]
        else:
            entry._id = ""  # never findable by an id

    def _forget_body(self, entry: Entry) -> None:
        if entry.body is not None:
            self._in_memory -= len(entry.body)
            entry.body = None

    def _trim_bodies(self) -> None:
        """Drop the oldest bodies until the rest fit in ``memory``."""
        for entry in self._entries:
            if self._in_memory <= self.memory:
                return
            self._forget_body(entry)

    def _id_of(self, entry: Entry) -> str:
        if entry._id is None:  # kept, first shown: findable from now on
            entry._id = new_message_id()
            self._by_id[entry._id] = entry
        elif not entry._id:  # forgotten before it was shown: an id nobody can look up
            entry._id = new_message_id()
        return entry._id

    def get(self, message_id: str) -> Entry | None:
        with self._lock:
            return self._by_id.get(message_id)

    def newest(self, limit: int | None = None) -> tuple[int, list[Entry]]:
        """How many are kept, and the newest ``limit`` of them, newest first
        (each with its id)."""
        with self._lock:
            total = len(self._entries)
            shown = list(reversed(self._entries))[:limit]
            for entry in shown:
                self._id_of(entry)
        return total, shown

    def session_ids(self, session_id: str) -> list[str]:
        """The ids of the kept messages of one session, oldest first."""
        with self._lock:
            return [self._id_of(e) for e in self._entries if e.session_id == session_id]

    def clear(self) -> int:
        with self._cond:
            count = len(self._entries)
            while self._entries:
                self._forget(self._entries.popleft())
            self._cond.notify_all()
            return count

    def wait(self, count: int, timeout: float, stopping: Callable[[], bool]) -> bool:
        """Block until ``count`` messages are kept (True), ``timeout`` passes
        or ``stopping()`` is true (False)."""
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: len(self._entries) >= count or stopping(), timeout)
            finally:
                self._waiting -= 1
            return len(self._entries) >= count and not stopping()

    def wake(self) -> None:
        """Wake every waiter (the server stops)."""
        with self._cond:
            self._cond.notify_all()

    # -- what the API asks, lazily -----------------------------------------------------
    def raw(self, entry: Entry) -> bytes | None:
        """The content as received; None when it is no longer kept."""
        return entry.body if entry.body is not None else self._read(entry, -1)

    def _read(self, entry: Entry, size: int) -> bytes | None:
        """Up to ``size`` octets (-1: all) of the content in its maildir
        file; None without a file inside the mailbox."""
        path = self._inside(entry.path)
        if path is None:
            return None
        try:
            with open(path, "rb") as file:
                file.seek(entry.offset)
                return file.read(size)
        except OSError:  # moved or removed since (a reader took it from new/)
            return None

    def _inside(self, path: str | None) -> str | None:
        """``path`` if it resolves inside the mailbox; never any other file."""
        if path is None or self.mailbox is None:
            return None
        real = os.path.realpath(path)
        return real if real.startswith(self.mailbox + os.sep) else None

    def headers(self, entry: Entry) -> dict[str, list[str]]:
        """Header name -> its values, parsed from the body's start once."""
        if entry._headers is None:
            head = self._head(entry)
            entry._headers = _parse(head) if head else {}
        return entry._headers

    def _head(self, entry: Entry) -> bytes:
        if entry.body is not None:
            return entry.body[:HEADER_LIMIT]
        return self._read(entry, HEADER_LIMIT) or b""

    def subject(self, entry: Entry) -> str:
        values = self.headers(entry).get("Subject")
        return _decoded(values[0]) if values else ""


def _parse(head: bytes) -> dict[str, list[str]]:
    from email import policy
    from email.parser import BytesHeaderParser

    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    out: dict[str, list[str]] = {}
    for name, value in parsed.items():  # unfolded (RFC 5322 §2.2.3)
        out.setdefault(name, []).append(str(value).replace("\r\n", "").replace("\n", ""))
    return out


def _decoded(value: str) -> str:
    """An RFC 2047 encoded subject as text; as it is when it cannot be."""
    from email.header import decode_header, make_header

    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value
