"""What every connection of one server shares: the core's context, the
message store, the TLS provider, the extensions and the transcripts; the
live sockets, so that a stop can wake every handler at once; the stop
event; and the internal errors a test can look at."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from . import auth
from .state import Context
from .storage import MessageStore
from .workers import WorkerPool

if TYPE_CHECKING:
    from .hooks import Extensions
    from .inbox import Inbox
    from .server import Handler
    from .tls import TLSProvider
    from .transcriptlog import TranscriptLog

__all__ = ["Runtime", "TriggerUses"]

_CHALLENGES = itertools.count(1)  # next() is atomic under the GIL
_Socket = TypeVar("_Socket", bound=socket.socket)


class TriggerUses:
    """How many times each counted trigger (``x<N>``) has fired on one
    server, across all its connections: clients retry on a new connection
    (README "Asking for errors").  Keys are whole addresses or names, tags
    included, so parallel tests on one server never share a count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired: dict[str, int] = {}

    def take(self, key: str, times: int) -> bool:
        """One use of ``key``'s count of ``times``; False once it is used up."""
        with self._lock:
            fired = self._fired.get(key, 0)
            if fired >= times:
                return False
            self._fired[key] = fired + 1
            return True

    def clear(self) -> None:
        with self._lock:
            self._fired.clear()


class Runtime:
    """What every connection of one BadSMTP shares."""

    def __init__(
        self,
        ctx: Context,
        store: MessageStore | None,
        idle_timeout: float,
        tls: TLSProvider | None,
        authenticate: Callable[[auth.Credentials], Any],
        extensions: Extensions | None = None,
        transcripts: TranscriptLog | None = None,
        inbox: Inbox | None = None,
    ) -> None:
        self.ctx = ctx
        # None unless an observer, rate limiter or authorizer is installed:
        # then a connection costs nothing extra.
        self.extensions = extensions if extensions is not None and extensions.active else None
        self.store = store
        self.idle_timeout = idle_timeout or None
        self.tls = tls
        self.authenticate = authenticate
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.connections: dict[Handler, socket.socket] = {}
        self.pool = WorkerPool()
        self.transcripts = transcripts  # None: nothing recorded, nothing paid
        self.inbox = inbox  # the inspection API's messages; None: it is off
        self.stamp()

    def stamp(self) -> None:
        """Draw the challenges' random part and take this process's id and
        the time; a worker process (``badsmtp --workers``) draws its own."""
        self._nonce = int.from_bytes(os.urandom(8), "big") % 10**9  # random (os.urandom)
        self._stamp = f"{int(time.time())}.{os.getpid()}"

    def challenge(self) -> str:
        """A connection's CRAM challenge.  RFC 2195 §2: it must be unique;
        the classic "<{unix_time}.{pid}@{identity}>" repeats within a second,
        so a random part and a per-process sequence number come first.  This
        runs for every connection: the random part and the time are the
        server's, drawn once; the sequence number keeps each unique."""
        return f"<{self._nonce}{next(_CHALLENGES)}.{self._stamp}@{self.ctx.identity}>"

    def record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def register(self, handler: Handler, sock: socket.socket) -> bool:
        with self._lock:
            if self.stopping.is_set():
                return False
            self.connections[handler] = sock
            return True

    def replace_socket(self, handler: Handler, wrap: Callable[[], _Socket]) -> _Socket:
        """``wrap()`` (the TLS socket that takes over the raw one's
        descriptor) in place of the handler's socket, as one step for
        :meth:`interrupt_all`: never a moment where only a detached socket
        is there to be shut."""
        with self._lock:
            wrapped = wrap()
            if handler in self.connections:
                self.connections[handler] = wrapped
            return wrapped

    def unregister(self, handler: Handler) -> None:
        with self._lock:
            self.connections.pop(handler, None)

    def interrupt_all(self) -> int:
        """Wake every handler blocked in ``recv``: the read side is shut, so
        recv returns at once and the handler sends its 421 (RFC 5321 §3.8)."""
        return self._shutdown_all(socket.SHUT_RD)

    def force_close_all(self) -> None:
        self._shutdown_all(socket.SHUT_RDWR)

    def _shutdown_all(self, how: int) -> int:
        with self._lock:
            socks = list(self.connections.values())
        for sock in socks:
            try:
                # The plain socket's shutdown: an SSLSocket's own would drop
                # the TLS state we still need to send the 421.
                socket.socket.shutdown(sock, how)
            except OSError:
                pass
        return len(socks)
