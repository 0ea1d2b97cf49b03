"""Blocking socket helpers for the handler: per-socket timeouts, a reply
write bounded as a whole, and a wait that ends when the client leaves.

A plain socket's idle timeout is the kernel's (``SO_RCVTIMEO``/``SO_SNDTIMEO``):
a Python-level timeout would cost a ``poll()`` before every ``recv`` and
``send`` on the hot path.  A TLS socket keeps Python's own timeout, which
``ssl`` needs to see.  Nothing here knows SMTP.

``ssl`` is not imported here: loading it costs every start milliseconds,
and a plain connection never needs it.  Until something has loaded it (the
first TLS handshake, :mod:`badsmtp.tls`) no socket can be an ``SSLSocket``
and no ``ssl`` error can be raised, so :func:`is_tls` and
:func:`ssl_errors` look it up in ``sys.modules``.
"""

from __future__ import annotations

import math
import select
import socket
import struct
import sys
import threading
import time
from enum import Enum
from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:
    import ssl

__all__ = [
    "HOLD_LIMIT",
    "Waited",
    "is_tls",
    "read_timeout",
    "send",
    "set_timeouts",
    "ssl_errors",
    "timeout_bytes",
    "wait",
]

# What a client may send during a server-side wait before the wait stops
# reading (it then ends only by time or stop): a pipelined burst, not a flood.
HOLD_LIMIT = 64 * 1024
_RECV = 65536


class Waited(Enum):
    ELAPSED = "elapsed"
    STOPPING = "stopping"
    CLOSED = "closed"  # the client closed (or reset) the connection


_DWORD_MAX = 0xFFFF_FFFF


def is_tls(sock: socket.socket) -> TypeGuard[ssl.SSLSocket]:
    """Whether ``sock`` is an ``ssl.SSLSocket`` (without loading ``ssl``)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def ssl_errors(*names: str) -> tuple[type[OSError], ...]:
    """The ``ssl`` exception classes named, none while ``ssl`` is not loaded.
    For except clauses, which evaluate them only when an exception arrives:
    ``except (BlockingIOError,) + ssl_errors("SSLWantReadError"):``."""
    ssl = sys.modules.get("ssl")
    return tuple(getattr(ssl, name) for name in names) if ssl is not None else ()


def timeout_bytes(seconds: float, platform: str) -> bytes:
    """``SO_RCVTIMEO``/``SO_SNDTIMEO`` for ``seconds`` (> 0) as ``platform``
    (a ``sys.platform`` value) reads it.  Zero means "never" everywhere, so
    a positive timeout never packs as zero.

    - Windows: a DWORD of milliseconds (little-endian on every Windows).
    - macOS: ``struct timeval`` is ``{time_t tv_sec; int tv_usec}``, padded
      to the alignment of ``time_t``.
    - Linux and the other POSIX systems: ``{time_t tv_sec; long tv_usec}``,
      in the host's own sizes and byte order."""
    if platform == "win32":
        millis = min(max(math.ceil(seconds * 1000), 1), _DWORD_MAX)
        return struct.pack("<I", millis)
    whole = int(seconds)
    micros = max(int((seconds - whole) * 1_000_000), 0 if whole else 1000)
    if platform == "darwin":
        return struct.pack("@li", whole, micros).ljust(struct.calcsize("@ll"), b"\0")
    return struct.pack("@ll", whole, micros)


# Which layout this process writes; tests pack for the other platforms directly.
PLATFORM = sys.platform


def _kernel_timeout(sock: socket.socket, option: int, seconds: float) -> None:
    sock.setsockopt(socket.SOL_SOCKET, option, timeout_bytes(seconds, PLATFORM))


def set_timeouts(sock: socket.socket, seconds: float | None) -> None:
    """Bound each ``recv`` and ``send`` on ``sock`` by ``seconds`` (None: never)."""
    if is_tls(sock) or not seconds:
        sock.settimeout(seconds)
        return
    sock.settimeout(None)
    _kernel_timeout(sock, socket.SO_RCVTIMEO, seconds)
    _kernel_timeout(sock, socket.SO_SNDTIMEO, seconds)


def read_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound the next ``recv`` by ``seconds``: what is left of a deadline."""
    seconds = max(seconds, 0.001)
    if is_tls(sock):
        sock.settimeout(seconds)
    else:
        _kernel_timeout(sock, socket.SO_RCVTIMEO, seconds)


def send(sock: socket.socket, data: bytes, timeout: float | None) -> None:
    """Send all of ``data`` within one timeout as a whole: ``timeout``, or
    the socket's own Python-level timeout where one is set (TLS, the
    best-effort 421 at shutdown).  One ``send`` is the common case and costs
    nothing extra; only a client that reads slowly makes the rest run
    against the deadline, so a trickle of progress cannot stretch one batch
    of replies over many timeouts."""
    sent = sock.send(data)
    if sent == len(data):
        return
    rest = memoryview(data)[sent:]
    own = sock.gettimeout()  # None: the kernel's SO_SNDTIMEO is in force
    limit = own if own is not None else timeout
    if limit is None:
        sock.sendall(rest)
        return
    deadline = time.monotonic() + limit
    try:
        while rest:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not read the replies in time")
            if own is not None:
                sock.settimeout(remaining)
            else:
                _kernel_timeout(sock, socket.SO_SNDTIMEO, remaining)
            rest = rest[sock.send(rest) :]
    finally:
        if own is not None:
            sock.settimeout(own)
        else:
            _kernel_timeout(sock, socket.SO_SNDTIMEO, limit)


def wait(sock: socket.socket, seconds: float, stopping: threading.Event, held: bytearray) -> Waited:
    """Wait ``seconds``, ending early when ``stopping`` is set or the client
    closes.  What the client sends meanwhile is appended to ``held`` (up to
    :data:`HOLD_LIMIT`; past it, only time and ``stopping`` end the wait).

    ``stopping`` alone cannot wake a thread blocked here, but the server's
    stop shuts every live socket's read side, which makes it readable."""
    deadline = time.monotonic() + seconds
    while not stopping.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Waited.ELAPSED
        if len(held) >= HOLD_LIMIT:
            return Waited.STOPPING if stopping.wait(remaining) else Waited.ELAPSED
        if not _readable(sock, remaining) or stopping.is_set():
            continue
        data = _recv_now(sock)
        if data == b"":
            return Waited.CLOSED
        held += data or b""
    return Waited.STOPPING


def _readable(sock: socket.socket, timeout: float) -> bool:
    if is_tls(sock) and sock.pending():
        return True
    if hasattr(select, "poll"):  # select() cannot watch descriptors past FD_SETSIZE
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    return bool(select.select([sock], [], [], timeout)[0])


def _recv_now(sock: socket.socket) -> bytes | None:
    """What is there to read, without blocking: ``b""`` at the end of the
    stream, None when nothing whole arrived (a TLS record in pieces)."""
    previous = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(_RECV)
    except (BlockingIOError,) + ssl_errors("SSLWantReadError", "SSLWantWriteError"):
        return None
    except (ConnectionError,) + ssl_errors("SSLError"):
        return b""
    finally:
        sock.settimeout(previous)
