"""The IO shell: one blocking handler per connection that reads with raw
``recv`` into the session and executes the actions it returns
(:mod:`badsmtp.actions`) from one type-to-method table: send, wait, close,
TLS, storage, authentication, and what the edges hear (the session log,
extension hooks).  The acceptor is :mod:`badsmtp.acceptor`.

No SMTP rule lives here: the session owns the only buffer (so STARTTLS can
discard what was pipelined after it) and decides everything; the handler
only does what the actions say and answers the pauses.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from . import actions, replies, sockio
from .actions import Action
from .config import Role
from .deliveries import Deliveries
from .session import Session
from .sessionlog import LEVELS, SessionLog

if TYPE_CHECKING:
    from .acceptor import ListenerServer
    from .hooks import ConnectionHooks
    from .transcript import Recorder

__all__ = ["Handler"]

log = logging.getLogger("badsmtp.server")
RECV_SIZE = 65536
WRITE_DEADLINE = 5.0  # bounded writes of a last 421 at shutdown or timeout
HANDSHAKE_TIMEOUT = 30.0



class Handler(socketserver.BaseRequestHandler):
    server: ListenerServer

    def setup(self) -> None:
        self.rt = self.server.runtime
        self.listener = self.server.listener
        self.sock: socket.socket = self.request
        self.session: Session | None = None
        self.client_ip = self.client_address[0] if self.client_address else ""
        self.started = time.monotonic()
        self.hooks: ConnectionHooks | None = None
        self.recorder: Recorder | None = None
        self.slog = SessionLog(self.client_ip, self.rt.ctx.identity)
        self.deliveries = Deliveries(
            self.rt.store, self.slog, self.client_ip, self.rt.ctx.identity, keep=False,
            inbox=self.rt.inbox,
        )  # fmt: skip
        self._held = bytearray()  # what the client sent during a server-side wait

    def handle(self) -> None:
        if not self.rt.register(self, self.sock):
            self._send_quietly(replies.SHUTTING_DOWN.render(False))
            return
        self.slog.established(self.server.bound.port, self.listener.role is Role.TLS)
        ext = self.rt.extensions
        if ext is not None:
            self.hooks = ext.hooks(self.client_ip, self.rt.ctx.identity, self.slog.session_id)
            self.deliveries.keep = True  # observers get the accepted Message
        try:
            if self.hooks is None or self._admitted(self.hooks):
                self._serve()
        except OSError:  # ssl.SSLError included
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
            self._close_edges()

    def _close_edges(self) -> None:
        if self.recorder is not None:
            self.recorder.finish()
        self.deliveries.abort()
        if self.hooks is not None:
            self.hooks.closed()
        self.slog.closed(self.started)
        self.rt.unregister(self)

    def _admitted(self, hooks: ConnectionHooks) -> bool:
        """The rate limiter's word on accept, before anything else."""
        refusal = hooks.admit()
        if refusal is not None:
            self._send_quietly(refusal.render(False))
            return False
        hooks.connected()
        return True

    def finish(self) -> None:
        if sockio.is_tls(self.sock):
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
        if self.rt.transcripts is not None:
            self._start_transcript()
        self.slog.behaviour(self.server.bound, self.rt.ctx.time_scale)
        session = self.session = self._new_session()
        sockio.set_timeouts(self.sock, self.rt.idle_timeout)
        self._run(session.greeting())  # the listener's behaviour: drops, delays, TLS first
        self._converse(session)

    def _new_session(self) -> Session:
        hooks, trace = self.hooks, self.slog.hook(self.recorder)  # a tracer around the recorder
        listener = self.listener
        session = Session(
            self.rt.ctx if hooks is None else replace(self.rt.ctx, policy=hooks.policy()),
            command_delay=listener.command_delay,
            greeting_delay=listener.greeting_delay,
            drop_after=listener.drop_after,
            handshake_first=listener.tls,
            tls_fault=listener.tls_fault,
            stream=self.rt.store is not None or self.rt.inbox is not None,
            begin=self.rt.store is not None,
            challenge=self.rt.challenge(),
            notify=hooks is not None and hooks.ext.notifies,
            recorder=trace,
        )
        if trace is not self.recorder:
            trace.attach(session)
        if hooks is not None:
            hooks.session = session
        return session

    def _converse(self, session: Session) -> None:
        """Read and answer until the session ends.  The idle timeout bounds
        each whole command line, not each ``recv`` (RFC 5321 §4.5.3.2.7):
        while only part of a line is here, the next read gets what is left
        of the line's time, so a client trickling octets cannot hold on."""
        timeout, line_began = self.rt.idle_timeout, None
        while not session.closed:
            began = time.monotonic()
            data = self._next_input(session)
            if data is None:
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

    def _next_input(self, session: Session) -> bytes | None:
        """What the client sent next (``b""``: it closed); None when the
        session was ended here (idle timeout, stop)."""
        if self._held:
            data, self._held = bytes(self._held), bytearray()
            return data
        try:
            data = self.sock.recv(RECV_SIZE)  # not cached: STARTTLS replaces the socket
        except (TimeoutError, BlockingIOError) + sockio.ssl_errors("SSLWantReadError"):
            self._end_with(session.timeout)
            return None
        except ConnectionError:
            data = b""
        if self.rt.stopping.is_set():
            self._end_with(session.shutdown)
            return None
        return data

    def _received(self, data: bytes) -> list[Action]:
        recorder = self.recorder
        if recorder is not None:
            if data and recorder.batch & 63:  # the common case, without a call
                recorder.batch += 1
            else:  # the close, and every 64th receive (the event limit)
                recorder.received(data)
                if recorder.full and self.session is not None:
                    self.session.stop_recording(recorder)  # findings alone from here on
        assert self.session is not None
        return self.session.receive_data(data)

    def _end_with(self, last: Callable[[], list[Action]]) -> None:
        """The session's last words (a 421), written within a short deadline."""
        self.sock.settimeout(WRITE_DEADLINE)
        self._run(last())

    def _wait(self, seconds: float) -> sockio.Waited:
        """A server-side wait, which ends early when the server stops or the
        client closes: a session that asked for long delays must not
        outlive its client."""
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
            self.slog.session_id,
        )
        self.recorder = Recorder(transcript, self.started)

    def _send_quietly(self, data: bytes) -> None:
        try:
            self.sock.settimeout(WRITE_DEADLINE)
            self.sock.sendall(data)
        except OSError:
            pass
        if self.hooks is not None and data[:1] in (b"4", b"5"):
            self.hooks.error(data.decode("utf-8", "replace").rstrip("\r\n"), "")

    # -- the actions ---------------------------------------------------------------------
    def _run(self, batch: list[Action] | None) -> None:
        """Execute a batch of actions in order.  A pause's method returns the
        session's next batch, which replaces the rest of this one (a pause is
        always the last of its batch); Close returns an empty one."""
        do = _DO
        while batch:
            following = None
            for action in batch:
                following = do[type(action)](self, action)
                if following is not None:
                    break
            batch = following

    def _send(self, action: actions.Send) -> None:
        sockio.send(self.sock, action.data, self.rt.idle_timeout)

    def _send_split(self, action: actions.SplitSend) -> None:
        """A reply-framing fault: one write per piece (TCP_NODELAY is on, so
        each leaves as it is written)."""
        for piece in action.writes:
            sockio.send(self.sock, piece, self.rt.idle_timeout)

    def _waited(self, action: actions.Wait) -> list[Action]:
        assert self.session is not None
        waited = self._wait(action.seconds)
        if waited is sockio.Waited.STOPPING:
            self.sock.settimeout(WRITE_DEADLINE)
            return self.session.shutdown()
        if waited is sockio.Waited.CLOSED:
            self._held.clear()  # nobody is left to answer
            return self._received(b"")
        return self.session.waited()

    def _close(self, action: actions.Close) -> list[Action]:
        return []

    def _start_tls(self, action: actions.StartTLS) -> list[Action]:
        assert self.session is not None
        self._held.clear()  # sent before the 220: discarded (CVE-2011-0411)
        if action.fault == "tlsabort":  # implicit TLS: the ClientHello, then nothing
            self._read_client_hello()
            self.session.receive_data(b"")
            return []
        if not self._handshake(action.fault):
            self.session.receive_data(b"")
            return []
        return self.session.tls_started()

    def _begin(self, action: actions.Begin) -> None:
        self.deliveries.begin(action.envelope)

    def _write(self, action: actions.Write) -> None:
        self.deliveries.write(action.data)

    def _commit(self, action: actions.Commit) -> list[Action]:
        assert self.session is not None
        failed = self.deliveries.commit(action.envelope)
        if failed is None and self.recorder is not None:
            self.recorder.transcript.accepted += 1
        return self.session.commit_done(failed)

    def _abort(self, action: actions.Abort) -> None:
        self.deliveries.abort()

    def _verify(self, action: actions.Verify) -> list[Action]:
        assert self.session is not None
        credentials = action.credentials
        try:
            user = self.rt.authenticate(credentials)
        except Exception:
            log.exception("authenticator raised")
            user = None
        inactive = user is not None and not getattr(user, "active", True)
        self.slog.auth(credentials, user is not None and not inactive)
        following = self.session.auth_done(user, inactive)
        if self.hooks is not None and user is not None and not inactive:
            self.hooks.authenticated(user)
        return following

    def _log(self, action: actions.Log) -> None:
        self.slog.event(LEVELS.get(action.level, logging.INFO), action.message, action.fields)

    def _error_sent(self, action: actions.ErrorSent) -> None:
        if self.hooks is not None:
            self.hooks.error(action.text, action.command)

    def _accepted(self, action: actions.Accepted) -> None:
        accepted = self.deliveries.accepted
        if self.hooks is not None and accepted is not None:
            self.hooks.accepted(accepted)

    # -- TLS (RFC 3207, RFC 8314) ------------------------------------------------------
    def _read_client_hello(self) -> None:
        """Read the client's first TLS record (RFC 8446 §5.1: five octets of
        header, the last two its length), within the handshake timeout."""
        self.sock.settimeout(min(self.rt.idle_timeout or HANDSHAKE_TIMEOUT, HANDSHAKE_TIMEOUT))
        record = b""
        try:
            while len(record) < 5 or len(record) < 5 + int.from_bytes(record[3:5], "big"):
                data = self.sock.recv(RECV_SIZE)
                if not data:
                    return
                record += data
        except OSError:
            return

    def _handshake(self, fault: str | None = None) -> bool:
        if self.rt.tls is None:
            return False
        raw = self.sock
        raw.settimeout(min(self.rt.idle_timeout or HANDSHAKE_TIMEOUT, HANDSHAKE_TIMEOUT))
        tls = self.rt.tls
        context = tls.server_context() if fault is None else tls.fault_context(fault)
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
        except (OSError, ValueError) as exc:  # ssl.SSLError included
            self.slog.tls_failed(exc, own_fault=self.rt.tls.own_fault(exc))
            return False
        wrapped.settimeout(self.rt.idle_timeout)
        self.slog.tls_ok(wrapped)
        return True


# The one place the shell maps what the core asks for to what it does.
_DO: dict[type, Callable[[Handler, Any], list[Action] | None]] = {
    actions.Send: Handler._send,
    actions.SplitSend: Handler._send_split,
    actions.Write: Handler._write,
    actions.Wait: Handler._waited,
    actions.Close: Handler._close,
    actions.StartTLS: Handler._start_tls,
    actions.Begin: Handler._begin,
    actions.Commit: Handler._commit,
    actions.Abort: Handler._abort,
    actions.Verify: Handler._verify,
    actions.Log: Handler._log,
    actions.ErrorSent: Handler._error_sent,
    actions.Accepted: Handler._accepted,
}
