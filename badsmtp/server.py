"""The IO shell: ``socketserver`` listeners, one acceptor thread for all of
them, and one blocking handler thread per connection that executes the
session's actions (send, wait, close, TLS, storage, authentication).

No SMTP rule lives here: the handler reads with raw ``recv`` into the
session, which owns the only buffer (so STARTTLS can discard what was
pipelined after it), and does what the returned actions say.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import selectors
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from . import auth, protocol, replies, sockio
from .accepting import (
    ACCEPT_BATCH,
    CONNECTION_ERRORS,
    Episode,
    Outcome,
    backoff,
    max_backlog,
    paused,
)
from .config import Listener, Role
from .session import (
    AbortDelivery,
    Accepted,
    Action,
    Begin,
    Commit,
    Delay,
    Envelope,
    ErrorSent,
    Log,
    Session,
    Verify,
    Write,
)
from .sessionlog import SessionLog
from .storage import HEADER_LIMIT, Delivery, Message, MessageStore, error_reply, parse_headers
from .workers import WorkerPool

if TYPE_CHECKING:
    from .extensions import ConnectionHooks, Extensions
    from .tls import TLSProvider
    from .transcript import Recorder, TranscriptLog

__all__ = ["Runtime", "ListenerServer", "Acceptor"]

log = logging.getLogger("badsmtp.server")
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING, "ERROR": logging.ERROR}
RECV_SIZE = 65536
WRITE_DEADLINE = 5.0  # bounded writes during shutdown (spec 21.3)
HANDSHAKE_TIMEOUT = 30.0
_CHALLENGES = itertools.count(1)  # next() is atomic under the GIL
_Socket = TypeVar("_Socket", bound=socket.socket)


class Runtime:
    """What every connection of one BadSMTP shares."""

    def __init__(
        self,
        ctx: protocol.Context,
        store: MessageStore | None,
        idle_timeout: float,
        tls: TLSProvider | None,
        authenticate: Callable[[auth.Credentials], Any],
        extensions: Extensions | None = None,
        transcripts: TranscriptLog | None = None,
    ) -> None:
        self.ctx = ctx
        # None unless an observer, rate limiter or authorizer is installed:
        # then a connection costs nothing extra (spec 18 defaults).
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
        self._pid = os.getpid()
        self.transcripts = transcripts  # None: nothing recorded, nothing paid

    def challenge(self) -> str:
        # RFC 2195 §2: a challenge must be unique; spec 13.3's
        # "<{unix_time}.{pid}@{identity}>" repeats within a second, so a
        # random part and a per-process sequence number come first.
        nonce = f"{secrets.randbelow(10**9)}{next(_CHALLENGES)}"
        return f"<{nonce}.{int(time.time())}.{self._pid}@{self.ctx.identity}>"

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
        recv returns at once and the handler sends its 421 (spec 21.3)."""
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


class Handler(socketserver.BaseRequestHandler):
    server: ListenerServer

    def setup(self) -> None:
        self.rt = self.server.runtime
        self.listener = self.server.listener
        self.sock: socket.socket = self.request
        self.session: Session | None = None
        self.delivery: Delivery | None = None
        # Why the open delivery failed (begin or write raised), answered at
        # its Commit: the session may have read far ahead in a pipeline by
        # the time the shell runs the failing write (18.2).
        self._delivery_failed: replies.Reply | None = None
        self.client_ip = self.client_address[0] if self.client_address else ""
        self.started = time.monotonic()
        self.hooks: ConnectionHooks | None = None
        self._head = b""  # the start of the content, for Message.headers (18.1)
        self._accepted: Message | None = None
        self.recorder: Recorder | None = None
        self.slog = SessionLog(self.client_ip, self.rt.ctx.identity)  # spec 19.3
        self._held = bytearray()  # what the client sent during a server-side wait

    def handle(self) -> None:
        if not self.rt.register(self, self.sock):
            self._send_quietly(replies.SHUTTING_DOWN.render(False))
            return
        self.slog.established(self.server.bound.port, self.listener.role is Role.TLS)
        ext = self.rt.extensions
        if ext is not None:
            self.hooks = ext.hooks(self.client_ip, self.rt.ctx.identity, self.slog.session_id)
        try:
            if self.hooks is None or self._admitted(self.hooks):
                self._serve()
        except (OSError, ssl.SSLError):
            # the client went away or the network failed: nothing to answer
            if self.recorder is not None:
                self.recorder.finish("client")
        except Exception as exc:  # a bug in badsmtp: log, 421, keep the listener
            log.exception("internal error while serving %s", self.client_ip)
            self.rt.record_error(exc)
            self._send_quietly(replies.INTERNAL_ERROR.render(False))
            if self.recorder is not None:
                self.recorder.sent(replies.INTERNAL_ERROR)
        finally:
            if self.recorder is not None:
                self.recorder.finish()
            self._abort()
            if self.hooks is not None:
                self.hooks.closed()
            self.slog.closed(self.started)
            self.rt.unregister(self)

    def _admitted(self, hooks: ConnectionHooks) -> bool:
        """The rate limiter's word on accept, before anything else (2.1, 18.4)."""
        refusal = hooks.admit()
        if refusal is not None:
            self._send_quietly(refusal.render(False))
            return False
        hooks.connected()
        return True

    def finish(self) -> None:
        if isinstance(self.sock, ssl.SSLSocket):
            # RFC 8446 §6.1: send close_notify before closing, or OpenSSL 3
            # clients report "unexpected eof" after a clean QUIT.  Non-blocking:
            # never wait for the client's own close_notify.
            try:
                self.sock.setblocking(False)
                self.sock.unwrap()
            except (OSError, ValueError):
                pass
        try:
            self.sock.close()
        except OSError:
            pass

    # -- the connection ------------------------------------------------------------
    def _serve(self) -> None:
        role, delay = self.listener.role, self.listener.delay
        if self.rt.transcripts is not None:
            self._start_transcript()
        self.slog.behaviour(self.server.bound)
        if role is Role.DROP or role is Role.IMMEDIATE_DROP:
            # Send nothing, answer nothing; close after the delay (spec 2.1).
            if delay:
                self._connection_delay(delay)
            return
        if role is Role.GREETING_DELAY and delay and not self._connection_delay(delay):
            return
        if role is Role.TLS and not self._handshake():
            return
        hooks, trace = self.hooks, self.slog.hook(self.recorder)  # a tracer around the recorder
        session = self.session = Session(
            self.rt.ctx if hooks is None else replace(self.rt.ctx, policy=hooks.policy()),
            tls=role is Role.TLS,
            command_delay=delay if role is Role.COMMAND_DELAY else 0.0,
            stream=self.rt.store is not None,
            challenge=self.rt.challenge,
            notify=hooks is not None and hooks.ext.notifies,
            recorder=trace,
        )
        if trace is not self.recorder:
            trace.attach(session)
        if hooks is not None:
            hooks.session = session
        sockio.set_timeouts(self.sock, self.rt.idle_timeout)
        self._run(session.greeting())
        self._converse(session)

    def _converse(self, session: Session) -> None:
        """Read and answer until the session ends.  The idle timeout bounds
        each whole command line, not each ``recv`` (0.20): while only part
        of a line is here, the next read gets what is left of the line's
        time, so a client trickling octets cannot hold the session."""
        timeout, line_began = self.rt.idle_timeout, None
        while not session.closed:
            began = time.monotonic()
            if self._held:
                data, self._held = bytes(self._held), bytearray()
            else:
                try:
                    data = self.sock.recv(RECV_SIZE)  # not cached: STARTTLS replaces the socket
                except (TimeoutError, BlockingIOError, ssl.SSLWantReadError):
                    self._timed_out(session)
                    return
                except ConnectionError:
                    data = b""
                if self.rt.stopping.is_set():
                    self._stop(session)
                    return
            self._run(self._received(data))
            if not timeout:
                continue
            if session.mid_line:
                line_began = began if line_began is None else line_began
                sockio.read_timeout(self.sock, line_began + timeout - time.monotonic())
            elif line_began is not None:
                line_began = None
                sockio.read_timeout(self.sock, timeout)

    def _received(self, data: bytes) -> list[Action]:
        if self.recorder is not None:
            self.recorder.received(data)
        assert self.session is not None
        return self.session.receive_data(data)

    def _connection_delay(self, seconds: float) -> bool:
        """A delay before any session (a greeting delay, a drop): True when
        it ran its course, False when the server stopped (a 421 is sent) or
        the client left."""
        waited = self._wait(seconds)
        if waited is sockio.Waited.STOPPING:
            self._send_quietly(replies.SHUTTING_DOWN.render(False))
        elif waited is sockio.Waited.CLOSED and self.recorder is not None:
            self.recorder.finish("client")
        return waited is sockio.Waited.ELAPSED

    def _wait(self, seconds: float) -> sockio.Waited:
        """A server-side wait (a delay), which ends early when the server
        stops or the client closes (0.20): a session that asked for long
        delays must not outlive its client."""
        return sockio.wait(self.sock, seconds, self.rt.stopping, self._held)

    def _start_transcript(self) -> None:
        from .transcript import Recorder

        assert self.rt.transcripts is not None
        address = self.client_address
        transcript = self.rt.transcripts.new(
            self.client_ip,
            address[1] if isinstance(address, tuple) and len(address) > 1 else 0,
            self.server.bound.port,
            self.listener.role.value,
            self.listener.role is Role.TLS,
        )
        self.recorder = Recorder(transcript, self.started)

    def _stop(self, session: Session) -> None:
        self.sock.settimeout(WRITE_DEADLINE)
        self._run(session.shutdown())

    def _timed_out(self, session: Session) -> None:
        self.sock.settimeout(WRITE_DEADLINE)  # the 421 is best effort (2.4)
        self._run(session.timeout())

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.settimeout(WRITE_DEADLINE)
            self.sock.sendall(data)
        except OSError:
            pass
        if self.hooks is not None and data[:1] in (b"4", b"5"):
            self.hooks.error(data.decode("utf-8", "replace").rstrip("\r\n"), "")

    def _run(self, actions: list[Action] | None) -> None:
        """Execute actions in order; a pausing action's answer yields the next batch."""
        session = self.session
        while actions:
            following: list[Action] | None = None
            for action in actions:
                if type(action) is bytes:
                    sockio.send(self.sock, action, self.rt.idle_timeout)
                elif isinstance(action, Write):
                    self._write(action.data)
                elif isinstance(action, (Delay, protocol.Wait)):
                    assert session is not None
                    waited = self._wait(action.seconds)
                    if waited is sockio.Waited.STOPPING:
                        self.sock.settimeout(WRITE_DEADLINE)
                        following = session.shutdown()
                        break
                    if waited is sockio.Waited.CLOSED:
                        self._held.clear()  # nobody is left to answer
                        following = self._received(b"")
                        break
                    if isinstance(action, Delay):  # a command waits for its delay
                        following = session.delay_done()
                        break
                elif isinstance(action, Begin):
                    self._begin(action.envelope)
                elif isinstance(action, Commit):
                    assert session is not None
                    following = session.commit_done(self._commit(action.envelope))
                    break
                elif isinstance(action, AbortDelivery):
                    self._abort()
                elif isinstance(action, protocol.StartTLS):
                    assert session is not None
                    self._held.clear()  # sent before the 220: discarded (CVE-2011-0411)
                    if not self._handshake():
                        following = None
                        session.receive_data(b"")
                        break
                    following = session.tls_started()
                    break
                elif isinstance(action, Verify):
                    assert session is not None
                    following = self._verify(session, action.credentials)
                    break
                elif isinstance(action, Log):
                    self._log(action)
                elif isinstance(action, ErrorSent):
                    if self.hooks is not None:
                        self.hooks.error(action.text, action.command)
                elif isinstance(action, Accepted):
                    if self.hooks is not None and self._accepted is not None:
                        self.hooks.accepted(self._accepted)
                elif isinstance(action, protocol.Close):
                    return
            actions = following

    # -- TLS (RFC 3207, RFC 8314) ------------------------------------------------------
    def _handshake(self) -> bool:
        if self.rt.tls is None:
            return False
        raw = self.sock
        raw.settimeout(min(self.rt.idle_timeout or HANDSHAKE_TIMEOUT, HANDSHAKE_TIMEOUT))
        context = self.rt.tls.server_context()
        try:
            wrapped = self.rt.replace_socket(
                self, lambda: context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            )
        except (OSError, ValueError):
            return False
        self.sock = wrapped
        if self.rt.stopping.is_set():  # a stop may have shut only the raw socket
            return False
        try:
            wrapped.do_handshake()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.slog.tls_failed(exc, own_fault=self.rt.tls.own_fault(exc))
            return False
        wrapped.settimeout(self.rt.idle_timeout)
        self.slog.tls_ok(wrapped)
        return True

    # -- storage --------------------------------------------------------------------
    def _message(self, env: Envelope) -> Message:
        return Message(
            sender=env.sender,
            recipients=env.recipients,
            size=env.size,
            client_ip=self.client_ip,
            hostname=self.rt.ctx.identity,
            helo=env.helo,
            tls_used=env.tls,
            user=env.user,
            timestamp=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            headers=parse_headers(self._head) if self._head else {},
        )

    def _begin(self, env: Envelope) -> None:
        assert self.rt.store is not None
        self._abort()  # the session ends each delivery before the next: never two open
        self._head = b""
        self.slog.message_started(env)
        try:
            self.delivery = self.rt.store.begin(self._message(env))
        except Exception as exc:
            self._store_failed(exc)

    def _write(self, data: bytes) -> None:
        if self.delivery is None:
            return
        if len(self._head) < HEADER_LIMIT:
            self._head += data[: HEADER_LIMIT - len(self._head)]
        try:
            self.delivery.write(data)
        except Exception as exc:
            self._abort()
            self._store_failed(exc)

    def _store_failed(self, exc: Exception) -> None:
        """Pass nothing more to the store; the delivery's Commit answers
        with this failure (18.2)."""
        self.slog.message_failed(self.rt.store, exc)
        self._delivery_failed = error_reply(exc)

    def _commit(self, env: Envelope) -> replies.Reply | None:
        delivery, self.delivery = self.delivery, None
        failed, self._delivery_failed = self._delivery_failed, None
        if failed is not None:  # logged when it happened
            return failed
        if delivery is None:  # storage off: counted and discarded
            if self.hooks is not None:
                self._accepted = self._message(env)
            self.slog.message_stored(env, None, None)
            return None
        message = self._accepted = self._message(env)
        try:
            delivery.commit(message)
        except Exception as exc:
            self.slog.message_failed(self.rt.store, exc, env)
            return error_reply(exc)
        self.slog.message_stored(env, self.rt.store, delivery)
        return None

    def _abort(self) -> None:
        delivery, self.delivery = self.delivery, None
        self._delivery_failed = None
        if delivery is not None:
            try:
                delivery.abort()
            except Exception:
                log.exception("message store failed to abort a delivery")

    def _verify(self, session: Session, credentials: auth.Credentials) -> list[Action]:
        try:
            user = self.rt.authenticate(credentials)
        except Exception:
            log.exception("authenticator raised")
            user = None
        inactive = user is not None and not getattr(user, "active", True)
        self.slog.auth(credentials, user is not None and not inactive)
        actions = session.auth_done(user, inactive)
        if self.hooks is not None and user is not None and not inactive:
            self.hooks.authenticated(user)
        return actions

    def _log(self, action: Log) -> None:
        self.slog.event(_LEVELS.get(action.level, logging.INFO), action.message, action.fields)


class ListenerServer(socketserver.ThreadingTCPServer):
    """One listening socket.  It never runs its own ``serve_forever``: the
    :class:`Acceptor` accepts for all listeners from one thread."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops connection bursts (STYLE.md),
    # and so did 1,024 for a burst of 10,000: take all the system allows.
    request_queue_size = max_backlog()
    acceptor: Acceptor | None = None  # the one accepting for this listener

    def __init__(self, listener: Listener, address: str, runtime: Runtime) -> None:
        self.listener = listener
        self.runtime = runtime
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        super().__init__((address, listener.port), Handler)
        self.bound = Listener(self.server_address[1], listener.role, listener.delay)

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error handling a connection from %s", client_address)


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
        self._selector = selectors.DefaultSelector()
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
            self._refuse_backlog(server)
            server.server_close()

    @staticmethod
    def _refuse_backlog(server: ListenerServer) -> None:
        """Connections the kernel completed but nobody accepted yet are live
        sessions to their clients: tell them too (spec 21.3), not just RST."""
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
