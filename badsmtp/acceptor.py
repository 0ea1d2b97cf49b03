"""The acceptor: the listening sockets (``socketserver`` servers that never
run their own loop) and one thread that accepts for all of them, handing
each connection to a handler thread of its own (:mod:`badsmtp.server`).

Hundreds of listeners cost one thread.  When ``accept()`` fails for want of
descriptors or memory, the acceptor rests instead of spinning, and logs the
episode once (:mod:`badsmtp.accepting` has the pieces).
"""

from __future__ import annotations

import logging
import select
import selectors
import socket
import socketserver
import sys
import threading
from typing import Any

from . import replies
from .accepting import (
    ACCEPT_BATCH,
    CONNECTION_ERRORS,
    Episode,
    Outcome,
    backoff,
    max_backlog,
    paused,
)
from .config import Listener
from .runtime import Runtime
from .server import Handler

__all__ = ["Acceptor", "ListenerServer"]

log = logging.getLogger("badsmtp.server")


PLATFORM = sys.platform  # whose address-reuse rules server_bind() follows


def bind_options(platform: str) -> list[str]:
    """The ``SOL_SOCKET`` options a listening socket sets before ``bind()``.
    POSIX: ``SO_REUSEADDR``, so a restart binds at once although the last
    run's connections linger in TIME_WAIT.  Windows: none, as
    ``socket.create_server`` does: there ``SO_REUSEADDR`` lets a second
    socket bind a port that is in use, so a busy port would go unnoticed."""
    return [] if platform == "win32" else ["SO_REUSEADDR"]


class ListenerServer(socketserver.ThreadingTCPServer):
    """One listening socket.  It never runs its own ``serve_forever``: the
    :class:`Acceptor` accepts for all listeners from one thread."""

    allow_reuse_address = False  # server_bind sets what the platform needs
    # socketserver's default backlog of 5 drops connection bursts,
    # and so did 1,024 for a burst of 10,000: take all the system allows.
    request_queue_size = max_backlog()
    acceptor: Acceptor | None = None  # the one accepting for this listener

    def __init__(self, listener: Listener, address: str, runtime: Runtime) -> None:
        self.listener = listener
        self.runtime = runtime
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        super().__init__((address, listener.port), Handler)
        self.bound = listener.at(self.server_address[1])

    def server_bind(self) -> None:
        for name in bind_options(PLATFORM):
            self.socket.setsockopt(socket.SOL_SOCKET, getattr(socket, name), 1)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread of its own (a reused one, when
        one is idle), for the connection's whole life."""
        name = f"badsmtp-{self.bound.port}"

        def serve() -> None:
            threading.current_thread().name = name
            self.process_request_thread(request, client_address)  # closes the socket
            acceptor = self.acceptor
            if acceptor is not None and acceptor.paused:
                acceptor.nudge()  # a descriptor came free

        self.runtime.pool.submit(serve, name)

    def shutdown_request(self, request: Any) -> None:
        """Close the accepted socket, if the handler has not.  Its ``finish``
        closes the connection (a TLS one after its close_notify), so
        socketserver's ``shutdown(SHUT_WR)`` here was a system call on a
        closed descriptor: an EBADF and one more GIL hand-off per closed
        connection, which all the handler threads woken by a mass close
        queue for.  ``close()`` of a closed socket makes no system call."""
        request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error handling a connection from %s", client_address)


def _selector() -> selectors.BaseSelector:
    """The platform's best selector.  On Linux its listening sockets are
    registered with ``EPOLLEXCLUSIVE``: with ``--workers``, every worker
    waits on the same listening sockets, and a new connection wakes one of
    them, not all (each of which but one would find nothing to accept)."""
    exclusive = getattr(select, "EPOLLEXCLUSIVE", 0)
    if not exclusive or not hasattr(selectors, "EpollSelector"):  # Linux has both
        return selectors.DefaultSelector()

    class ExclusiveEpoll(selectors.EpollSelector):
        _EVENT_READ = select.EPOLLIN | exclusive  # what register() asks epoll for

    return ExclusiveEpoll()


class Acceptor:
    """One thread waiting on every listening socket (``selectors``), so
    hundreds of listeners cost one thread; ``stop`` wakes it at once.

    When ``accept()`` fails for want of descriptors or memory, it fails again
    at once for as long as the want lasts, and the listener stays readable:
    the acceptor then pauses (:attr:`paused`), waiting on its wake socket
    instead of the listeners until a connection closes (its thread nudges the
    wake socket) or a back-off passes, and logs the episode once."""

    def __init__(self, servers: list[ListenerServer]) -> None:
        self.servers = servers
        self._selector = _selector()
        # A byte on the wake socket means "look again": stop() sets _stopped
        # first, a closing connection only nudges a paused acceptor.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        for server in servers:
            server.socket.setblocking(False)
            self._selector.register(server.socket, selectors.EVENT_READ, server)
            server.acceptor = self
        self._thread = threading.Thread(target=self._loop, name="badsmtp-acceptor", daemon=True)
        self._stopped = False
        self.paused = False  # read by closing connections, without a lock
        self._rests = 0
        self._failures = Episode(log, "Accept resumed", "failed")
        self._refusals = Episode(log, "Handler threads start again", "refused")

    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        """A connection closed: a paused acceptor tries again now."""
        try:
            self._wake_w.send(b"r")
        except OSError:  # full, so a nudge is pending anyway; or closed by stop()
            pass

    def _loop(self) -> None:
        while not self._stopped:
            # Paused, the listeners are polled without blocking after each
            # rest; the episode ends with a round that empties every ready
            # queue (or finds none ready) without a failure.
            ready = self._selector.select(0 if self.paused else None)
            outcomes: set[Outcome] = set()
            for key, _ in ready:
                if key.data is None:
                    self._drain()
                    if self._stopped:
                        return
                    continue
                outcomes.add(self._accept_all(key.data))
                if "failed" in outcomes:
                    break
            if "failed" in outcomes:
                self._rest()
            elif self.paused and "more" not in outcomes:
                self.paused, self._rests = False, 0
                self._failures.end()

    def _accept_all(self, server: ListenerServer) -> Outcome:
        """Accept what the listener's queue holds, up to a batch so that one
        busy listener cannot starve the others: "empty" when the queue was
        emptied, "more" after a full batch, "failed" when accept() failed in
        a way that retrying at once would repeat."""
        for _ in range(ACCEPT_BATCH):
            try:
                request, address = server.socket.accept()
            except (BlockingIOError, InterruptedError):
                return "empty"
            except OSError as exc:
                if exc.errno in CONNECTION_ERRORS:  # that connection is gone, not the next
                    log.warning("accept failed on port %s: %s", server.bound.port, exc)
                    continue
                self.paused = True  # before the rest: a close from now on nudges
                self._failures.failed(*paused(exc, server.bound.port))
                return "failed"
            self._hand_over(server, request, address)
        return "more"

    def _hand_over(self, server: ListenerServer, request: socket.socket, address: Any) -> None:
        try:
            request.setblocking(True)
            # Replies are small and each one is awaited: never let Nagle hold one back.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # reset already (macOS then says EINVAL): nobody to serve
            request.close()
            return
        try:
            server.process_request(request, address)
        except Exception as exc:  # noqa: BLE001 - logged, once per episode
            # RuntimeError "can't start new thread": a server closes a
            # connection only after a 421 (RFC 5321 §3.8), which also tells
            # the client to try again later.
            self._refusals.failed(
                "Cannot start a handler thread; refusing connections with 421",
                {"error": f"{type(exc).__name__}: {exc}", "port": server.bound.port},
                exc_info=not isinstance(exc, RuntimeError),  # anything else is a bug
            )
            _goodbye(request, replies.CONNECTION_REFUSED.render(False))
        else:
            if self._refusals.active:
                self._refusals.end()

    def _rest(self) -> None:
        """Wait on the wake socket alone until a nudge, stop() or the back-off."""
        self._wake_r.settimeout(backoff(self._rests))
        self._rests += 1
        try:
            self._wake_r.recv(4096)
        except OSError:  # TimeoutError: the back-off passed
            pass
        finally:
            self._wake_r.setblocking(False)

    def _drain(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:  # BlockingIOError: drained
            pass

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._wake_w.send(b"x")
        except OSError:  # full: the acceptor wakes all the same
            pass
        if self._thread.is_alive():
            self._thread.join()
        self.paused = False
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        for server in self.servers:
            self.refuse_backlog(server)
            server.server_close()

    @staticmethod
    def refuse_backlog(server: ListenerServer) -> None:
        """Connections the kernel completed but nobody accepted yet are live
        sessions to their clients: tell them too (a 421, RFC 5321 §3.8), not just RST."""
        goodbye = replies.SHUTTING_DOWN.render(False)
        while True:
            try:
                request, _ = server.socket.accept()
            except OSError:  # BlockingIOError: the backlog is empty
                return
            _goodbye(request, goodbye)


def _goodbye(request: socket.socket, reply: bytes) -> None:
    """Send one reply without waiting for the client, then close."""
    try:
        request.setblocking(False)
        request.send(reply)
    except OSError:
        pass
    finally:
        request.close()
