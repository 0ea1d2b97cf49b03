"""Message stores: the maildir writer (README, Storing messages) and the
in-memory capture of the embedding API (README, Embedding in tests).  Content
streams in through a *delivery* (``begin`` → ``write``… → ``commit`` or
``abort``) and is never held whole in memory except by the capture.  Failures
are typed (README, Extending badsmtp)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from . import replies
from .replies import Reply

if TYPE_CHECKING:
    from email.message import EmailMessage

__all__ = [
    "Message",
    "Delivery",
    "MessageStore",
    "StorageError",
    "MailboxUnavailable",
    "QuotaExceeded",
    "MaildirStore",
    "MemoryStore",
    "create_flags",
    "error_reply",
    "maildir_host",
]

HEADER_LIMIT = 64 * 1024  # headers are parsed from at most this much content: bounded memory
# The Maildir convention (maildir(5), "Cleaning up"): a file in tmp/ untouched
# for 36 hours is a leftover and may be removed by anyone.
STALE_AGE = 36 * 3600
_OUR_NAME = re.compile(r"\d+\.\d+_(\d+)_\d+\.(.+)\Z")  # {sec}.{usec}_{pid}_{n}.{host}

log = logging.getLogger("badsmtp.storage")


class StorageError(Exception):
    """A store could not keep the message: ``451`` unless a subclass says otherwise."""


class MailboxUnavailable(StorageError):
    """``550`` mailbox unavailable."""


class QuotaExceeded(StorageError):
    """``452`` insufficient system storage."""


def error_reply(exc: BaseException) -> Reply:
    """The reply for a store's exception: by its type, never its text (README,
    Extending badsmtp)."""
    if isinstance(exc, MailboxUnavailable):
        return replies.STORE_UNAVAILABLE
    if isinstance(exc, QuotaExceeded):
        return replies.STORE_QUOTA
    return replies.STORE_FAILED


@dataclass(frozen=True)
class Message:
    """An accepted message with its envelope (README, Embedding in tests).
    ``content`` is the message as received (DATA unstuffed, or the BDAT
    chunks); only the in-memory capture fills it in."""

    sender: str
    recipients: tuple[str, ...]
    size: int = 0
    client_ip: str = ""
    hostname: str = ""
    helo: str = ""
    tls_used: bool = False
    user: str | None = None
    timestamp: str = ""
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    session_id: str = ""  # the session that sent it (its transcript's id)

    @property
    def email(self) -> EmailMessage:
        """The content parsed with the standard library (``email.policy.default``)."""
        from email import policy  # lazy: a plain start must not pay for email
        from email.message import EmailMessage
        from email.parser import BytesParser

        parsed = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str | None:
        return self.headers.get("Subject")


def parse_headers(content: bytes) -> dict[str, str]:
    """Header name → all its values joined with ``, ``."""
    from email import policy
    from email.parser import BytesHeaderParser

    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(content[:HEADER_LIMIT])
    out: dict[str, str] = {}
    for name in parsed.keys():
        if name not in out:
            out[name] = ", ".join(str(v) for v in parsed.get_all(name, []))
    return out


class Delivery(Protocol):
    def write(self, data: bytes) -> None: ...
    def commit(self, message: Message) -> None: ...
    def abort(self) -> None: ...


class MessageStore(Protocol):
    def begin(self, message: Message) -> Delivery: ...


# -- the in-memory capture -----------------------------------------------------
class _MemoryDelivery:
    paths: tuple[str, ...] = ()  # nothing on disk

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._chunks.append(data)

    def commit(self, message: Message) -> None:
        content = b"".join(self._chunks)
        # The server parsed the headers as the content streamed past.
        headers = message.headers or parse_headers(content)
        self._store.add(replace(message, content=content, headers=headers))

    def abort(self) -> None:
        self._chunks = []


class MemoryStore:
    """Keeps accepted messages in a list; ``wait_for`` blocks until enough arrived."""

    kind = "memory"  # the storage_type of the log records (badsmtp(1), LOGGING)

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()

    def begin(self, message: Message) -> _MemoryDelivery:
        return _MemoryDelivery(self)

    def add(self, message: Message) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[Message]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout} s, got {len(self.messages)}"
                )
            return list(self.messages)


# -- maildir (README, Storing messages; badsmtp(1), --mailbox) -----------------------
_counter = itertools.count(1)  # process-wide, next() is atomic under the GIL


def _makedirs(path: str) -> None:
    """``mkdir -p`` with mode 0750 for every directory it creates, parents
    included: ``os.makedirs`` gives the mode to the leaf only."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        _makedirs(parent)
    try:
        os.mkdir(path, 0o750)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def _folded(name: str, addresses: tuple[str, ...]) -> str:
    """``name`` and the addresses as a header folded before a line passes 78
    octets (RFC 5322 §2.1.1: 998 at most, 78 should), one address per line at
    worst: a thousand recipients must not make one 20,000-octet line."""
    lines, line = [], name
    for i, address in enumerate(addresses):
        item = f" {address}{',' if i < len(addresses) - 1 else ''}"
        if len(line) + len(item) > 78 and line != name:
            lines.append(line)
            line = ""
        line += item
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


# Characters a Windows file name may not hold; the backslash of the Maildir
# convention's escapes below would be a path separator there.
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
PLATFORM = sys.platform  # whose file-name rules the maildir follows


def maildir_host(name: str, platform: str) -> str:
    """The host part of a maildir file name.  The Maildir convention
    (maildir(5)) writes ``/`` as ``\\057`` and ``:`` as ``\\072``; on Windows,
    which forbids ``:`` and takes ``\\`` as a separator, each forbidden
    character becomes ``_``.  Either way the name has no ``:``: badsmtp
    leaves messages in ``new/`` without the ``:2,`` info suffix."""
    name = name or "badsmtp.test"
    if platform == "win32":
        return _WINDOWS_FORBIDDEN.sub("_", name)
    return name.replace("/", r"\057").replace(":", r"\072")


def create_flags(module: Any) -> int:
    """``os.open`` flags for a new message file under ``module`` (``os``):
    exclusive, and binary where there is such a flag.  On Windows os.open
    writes in text mode unless told otherwise: every LF of a message would
    become CRLF (and each CRLF, CR CR LF)."""
    flags: int = module.O_WRONLY | module.O_CREAT | module.O_EXCL | getattr(module, "O_BINARY", 0)
    return flags


_CREATE = create_flags(os)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists; True where that cannot be asked safely
    (on Windows, signal 0 is CTRL_C_EVENT)."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, as another user
    return True


class _MaildirDelivery:
    paths: tuple[str, ...] = ()  # where the message was stored, once committed
    offset = 0  # where the content starts in the file, after the prefix lines

    def __init__(self, store: MaildirStore, message: Message) -> None:
        self._store = store
        now = time.time()
        self._name = f"{int(now)}.{int(now * 1_000_000)}_{os.getpid()}_{next(_counter)}.{store.host}"
        self._tmp = os.path.join(store.path, "tmp", self._name)
        try:
            fd = os.open(self._tmp, _CREATE, 0o600)
        except FileNotFoundError:  # the maildir went away: re-create it
            store.ensure_dirs()
            fd = os.open(self._tmp, _CREATE, 0o600)
        self._file = os.fdopen(fd, "wb")
        prefix = [f"From: {message.sender or '<>'}\r\n"]
        if message.recipients:
            prefix.append(_folded("To:", message.recipients))
        from email.utils import formatdate

        prefix.append(f"Received: by {message.hostname}; {formatdate(now, localtime=True)}\r\n\r\n")
        self.offset = self._file.write("".join(prefix).encode("utf-8"))

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self, message: Message) -> None:
        try:
            self._file.close()
            final = os.path.join(self._store.path, "new", self._name)
            try:
                os.rename(self._tmp, final)  # atomic on one filesystem: never a partial file in new/
            except FileNotFoundError:  # new/ went away meanwhile
                self._store.ensure_dirs()
                os.rename(self._tmp, final)
            self.paths = (final,)
        except BaseException:
            self.abort()
            raise

    @property
    def stored(self) -> tuple[tuple[str, int], ...]:
        """Each file the message was stored in, with its content's offset."""
        return tuple((path, self.offset) for path in self.paths)

    def abort(self) -> None:
        try:
            self._file.close()  # may flush, and fail: a full disk (ENOSPC)
        except OSError:
            pass  # the descriptor is closed all the same
        finally:
            try:
                os.unlink(self._tmp)  # a failed message never keeps its disk space
            except FileNotFoundError:
                pass


class MaildirStore:
    kind = "local"

    """Streams each message into ``tmp/`` and renames it into ``new/`` on commit."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.host = maildir_host(socket.gethostname(), PLATFORM)
        try:
            self.ensure_dirs()
        except OSError as exc:
            raise StorageError(f"failed to create mailbox: {exc}") from exc
        removed = self.remove_stale()
        if removed:
            log.info("Removed stale temporary files", extra={"fields": {"count": removed, "dir": self.path}})

    def remove_stale(self, now: float | None = None) -> int:
        """Remove what no delivery will ever finish from ``tmp/``: files this
        host's badsmtp wrote in a process that is gone (a ``kill -9`` in the
        middle of a message), and any file older than 36 hours (the Maildir
        convention).  A live process's files are left alone: another server
        may share the mailbox.  Returns how many were removed."""
        now = time.time() if now is None else now
        removed = 0
        with os.scandir(os.path.join(self.path, "tmp")) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False) and (
                        self._orphaned(entry.name)
                        or now - entry.stat(follow_symlinks=False).st_mtime > STALE_AGE
                    ):
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    continue  # gone meanwhile, or not ours to remove
        return removed

    def _orphaned(self, name: str) -> bool:
        match = _OUR_NAME.match(name)
        if match is None or match.group(2) != self.host:
            return False
        return not _alive(int(match.group(1)))

    def ensure_dirs(self) -> None:
        # At start-up, and again whenever a delivery finds them gone:
        # not on every message, which would cost three stat() calls each.
        for sub in ("tmp", "new", "cur"):
            _makedirs(os.path.join(self.path, sub))

    def begin(self, message: Message) -> _MaildirDelivery:
        return _MaildirDelivery(self, message)


class _TeeDelivery:
    def __init__(self, deliveries: list[Delivery]) -> None:
        self._deliveries = deliveries

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for d in self._deliveries for p in getattr(d, "paths", ()))

    @property
    def stored(self) -> tuple[tuple[str, int], ...]:
        return tuple(s for d in self._deliveries for s in getattr(d, "stored", ()))

    def write(self, data: bytes) -> None:
        for d in self._deliveries:
            d.write(data)

    def commit(self, message: Message) -> None:
        for d in self._deliveries:
            d.commit(message)

    def abort(self) -> None:
        for d in self._deliveries:
            d.abort()


class TeeStore:
    """Several stores at once (maildir and capture): every one gets every message."""

    def __init__(self, stores: list[MessageStore]) -> None:
        self.stores = stores
        kinds = [getattr(store, "kind", "custom") for store in stores]
        self.kind = "local" if "local" in kinds else "memory" if set(kinds) == {"memory"} else "custom"

    def begin(self, message: Message) -> Delivery:
        deliveries: list[Delivery] = []
        try:
            for store in self.stores:
                deliveries.append(store.begin(message))
        except BaseException:
            for d in deliveries:
                d.abort()
            raise
        return _TeeDelivery(deliveries)
