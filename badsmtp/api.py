"""The embedding API: ``BadSMTP(ports=...)``, a server you can start in a
thread from any synchronous test harness, as a context manager or by hand."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import portplan, protocol
from .acceptor import Acceptor, ListenerServer
from .config import Config, ConfigError, Listener, Role
from .extensions import Authenticator, Authorizer, RateLimiter
from .hooks import Extensions, as_observers
from .portplan import listener_for_port, plan_listeners, validate_ports
from .runtime import Runtime, TriggerUses
from .storage import MaildirStore, MemoryStore, Message, MessageStore, TeeStore

if TYPE_CHECKING:
    from .findings import Finding
    from .httpapi import InspectionServer
    from .inbox import Inbox
    from .transcript import Transcript
    from .transcriptlog import TranscriptLog

__all__ = ["BadSMTP"]

log = logging.getLogger("badsmtp.server")
_CONFIG_KEYS = frozenset(f.name for f in fields(Config))


class BadSMTP:
    """A badsmtp server.

    ``ports`` takes port numbers (each gets the role the README's port plan
    gives it; any other number, ``0`` included, is a normal SMTP listener) and
    :class:`Listener` descriptions (``Listener(0, "greeting_delay", 0.2)``).
    Without ``ports`` the whole default plan of 309 listeners is opened.

    Every configuration key is a keyword argument (``tls_hostname=``,
    ``mailbox_dir=``, ``max_recipients=``…).  Accepted messages are kept in
    :attr:`messages` unless ``capture=False``; every connection's transcript
    is kept in :attr:`sessions` unless ``record=False``.

    Extensions (README, Extending badsmtp; :mod:`badsmtp.extensions`): ``message_store=`` (gets
    every accepted message as well as the capture), ``authenticator=`` (an
    object with ``authenticate(username, password)`` or that function
    itself), ``observer=``/``observers=[...]``, ``rate_limiter=`` and
    ``authorizer=``.
    """

    def __init__(
        self,
        ports: Iterable[int | Listener] | None = None,
        *,
        config: Config | None = None,
        capture: bool = True,
        record: bool = True,
        message_store: MessageStore | None = None,
        authenticator: Authenticator | Callable[[str, str | None], Any] | None = None,
        observer: Any = None,
        observers: Iterable[Any] | None = None,
        rate_limiter: RateLimiter | None = None,
        authorizer: Authorizer | None = None,
        **settings: Any,
    ) -> None:
        self.config = _configured(config, settings)
        self._requested, self._required = _requested(ports, self.config)
        if not self._requested:
            raise ConfigError("no listener requested")
        self._capture = MemoryStore() if capture else None
        http = self.config.http_port is not None  # the inspection API records, bounded
        self._transcripts: TranscriptLog | None = (
            _transcript_log(self.config.http_keep if http else None) if record or http else None
        )
        self._inbox: Inbox | None = _inbox(self.config) if http else None
        self._http: InspectionServer | None = None
        self._store = _one_store(message_store, self._capture, self.config.mailbox_dir)
        self._extensions = Extensions(
            authenticator, as_observers(observer, observers), rate_limiter, authorizer
        )
        self._tls: Any = None
        self._servers: list[ListenerServer] = []
        self._acceptor: Acceptor | None = None
        self._runtime: Runtime | None = None
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()
        self.listeners: list[Listener] = []
        # Listeners of the plan that could not be bound, each with the reason
        # (the OS's words): the start-up line names them (badsmtp(1), PORT MAP).
        self.skipped: list[tuple[Listener, str]] = []
        self._uses = TriggerUses()  # counted triggers (x<N>): kept across restarts
        self._bound = False  # listeners bound by _open() and not yet accepting

    # -- lifecycle --------------------------------------------------------------------
    def serve_in_thread(self) -> BadSMTP:
        """Bind every listener and start accepting in a background thread.
        Returns once connections can be made; bind errors raise here."""
        with self._state_lock:
            if self._acceptor is not None:
                return self
            if not self._bound:
                self._open()
            self._bound = False  # the acceptor's stop() closes them
            self._acceptor = Acceptor(self._servers)
            self._acceptor.start()
            if self._http is not None:
                self._http.start()
            self._stopped.clear()
        return self

    def _open(self) -> None:
        """Bind every listener and make the runtime, without accepting yet:
        ``badsmtp --workers`` binds once, then each worker process accepts
        (:mod:`badsmtp.supervisor`)."""
        self._runtime = Runtime(
            self._context(), self._store, self.config.idle_timeout, self._tls_provider(),
            self._extensions.authenticate,
            extensions=self._extensions,
            transcripts=self._transcripts,
            inbox=self._inbox,
        )  # fmt: skip
        self._servers = self._bind_all(self._runtime)
        if self._inbox is not None:
            try:
                self._http = self._bind_http(self._inbox)
            except BaseException:
                for server in self._servers:
                    server.server_close()
                raise
        self.listeners = [s.bound for s in self._servers]
        self._runtime.ctx = self._context()  # HELP shows the ports actually bound
        self._bound = True

    def _bind_all(self, runtime: Runtime) -> list[ListenerServer]:
        """A bound server for each listener requested.  One that must bind
        and cannot raises, after the others are closed; any other is
        skipped with a warning (badsmtp(1), PORT MAP)."""
        servers: list[ListenerServer] = []
        self.skipped = []
        try:
            for index, listener in enumerate(self._requested):
                server = self._bind(listener, index in self._required, runtime)
                if server is not None:
                    servers.append(server)
        except BaseException:
            for server in servers:
                server.server_close()
            raise
        return servers

    def _bind(self, listener: Listener, required: bool, runtime: Runtime) -> ListenerServer | None:
        address = self.config.listen_address
        try:
            return ListenerServer(listener, address, runtime)
        except OSError as exc:
            if required:
                raise OSError(
                    exc.errno, f"cannot listen on {address} port {listener.port}: {exc.strerror}"
                ) from exc
            reason = exc.strerror or str(exc)
            self.skipped.append((listener, reason))
            log.warning(
                "Port already in use; skipping listener",
                extra={"error": reason, "fields": {"port": listener.port,
                                                   "desc": listener.role.value, "addr": address}},
            )  # fmt: skip
            return None

    def _bind_http(self, inbox: Inbox) -> InspectionServer:
        """The inspection API's server, bound (badsmtp(1), INSPECTION API)."""
        from .httpapi import InspectionServer

        address, port = self.config.listen_address, self.config.http_port or 0
        assert self._transcripts is not None and self._runtime is not None
        try:
            return InspectionServer(address, port, inbox, self._transcripts, self.reset_triggers,
                                    self._runtime.record_error)  # fmt: skip
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {address} port {port} (HTTP): {exc.strerror}"
            ) from exc

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called (from another thread or a signal)."""
        self.serve_in_thread()
        self._stopped.wait()

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown (badsmtp(1), SIGNALS): stop accepting, 421 every live
        session, wait for them up to ``shutdown_timeout``.  Idempotent."""
        with self._state_lock:
            acceptor, runtime = self._acceptor, self._runtime
            self._acceptor = None
            if acceptor is None or runtime is None:
                return
            runtime.stopping.set()
            if self._http is not None:
                self._http.stop()  # waiting requests end at once
                self._http = None
            acceptor.stop()
            sessions = runtime.interrupt_all()
            if sessions:
                log.info(
                    "Shutting down: notifying active sessions",
                    extra={"fields": {"sessions": sessions}},
                )
            deadline = self.config.shutdown_timeout if timeout is None else timeout
            self._join(runtime, deadline)
            self._stopped.set()

    @staticmethod
    def _join(runtime: Runtime, timeout: float) -> None:
        """Wait for every session to end, up to ``timeout``; then force the
        remaining sockets shut (badsmtp(1), --shutdown-timeout)."""
        if not runtime.pool.wait_done(timeout):
            runtime.force_close_all()
            runtime.pool.wait_done(1.0)
        runtime.pool.stop()

    def __enter__(self) -> BadSMTP:
        return self.serve_in_thread()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what a test looks at ---------------------------------------------------------
    @property
    def ports(self) -> list[int]:
        """The actual port numbers, in the order requested."""
        return [listener.port for listener in self.listeners]

    @property
    def port(self) -> int:
        """The first listener's actual port (the main one for the default plan)."""
        if not self.listeners:
            raise RuntimeError("the server is not listening: call serve_in_thread() first")
        return self.listeners[0].port

    def port_for(self, role: Role | str) -> int:
        """The actual port of the first listener with ``role``."""
        role = Role(role)
        for listener in self.listeners:
            if listener.role is role:
                return listener.port
        raise LookupError(f"no {role.value} listener")

    @property
    def http_port(self) -> int | None:
        """The inspection API's port (badsmtp(1), INSPECTION API); None when it is off."""
        return self._http.port if self._http is not None else None

    @property
    def http_url(self) -> str | None:
        """``http://127.0.0.1:PORT``: the inspection API and web page; None when off."""
        port = self.http_port
        if port is None:
            return None
        host = self.config.listen_address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    @property
    def host(self) -> str:
        return self.config.listen_address

    @property
    def messages(self) -> list[Message]:
        """Messages accepted so far (the in-memory capture)."""
        if self._capture is None:
            raise RuntimeError("message capture is off (capture=False)")
        return list(self._capture.messages)

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[Message]:
        """Block until ``count`` messages were accepted; TimeoutError otherwise."""
        if self._capture is None:
            raise RuntimeError("message capture is off (capture=False)")
        return self._capture.wait_for(count, timeout)

    @property
    def sessions(self) -> list[Transcript]:
        """Transcripts of every connection so far, in connection order (a
        snapshot; an open session's transcript keeps growing)."""
        if self._transcripts is None:
            raise RuntimeError("session recording is off (record=False)")
        return self._transcripts.snapshot()

    def wait_for_sessions(self, count: int = 1, timeout: float = 5.0) -> list[Transcript]:
        """Block until ``count`` sessions have ended (the server is done with
        them, ``closed_by`` is set); return every transcript so far."""
        if self._transcripts is None:
            raise RuntimeError("session recording is off (record=False)")
        return self._transcripts.wait_closed(count, timeout)

    @property
    def findings(self) -> list[Finding]:
        """What clients did wrong, by the RFCs (README, What your client
        did wrong): every session's findings, in connection order."""
        return [f for transcript in self.sessions for f in transcript.findings]

    @property
    def errors(self) -> list[BaseException]:
        """Internal errors seen while serving (each also answered with 421)."""
        return list(self._runtime.errors) if self._runtime else []

    # -- TLS ------------------------------------------------------------------------
    def _tls_provider(self) -> Any:
        if self._tls is None:
            from .tls import TLSProvider

            self._tls = TLSProvider(
                self.config.tls_hostname,
                self.config.listen_address,
                self.config.tls_cert_file,
                self.config.tls_key_file,
            )
        return self._tls

    def certificate_pem(self, name: str | None = None) -> str:
        """PEM of the certificate the server presents for ``name``."""
        return str(self._tls_provider().certificate_pem(name))

    def client_ssl_context(self, name: str | None = None) -> Any:
        """A client ``ssl.SSLContext`` that trusts this server's certificate,
        with certificate and host-name verification on."""
        return self._tls_provider().client_context(name)

    def reset_triggers(self) -> None:
        """Forget how often each counted trigger (``x<N>``) has fired: each
        fails its N times again (README "Asking for errors")."""
        self._uses.clear()

    def ca_pem(self) -> str:
        """PEM of this server's test CA, which issues the TLS fault certificates
        (README, TLS faults); generated on first use, then the same."""
        return str(self._tls_provider().ca_pem())

    def ca_client_context(self) -> Any:
        """A verifying client ``ssl.SSLContext`` that trusts this server's test
        CA and its default certificate: the default certificate passes, each
        TLS fault fails for its own reason."""
        return self._tls_provider().ca_client_context()

    # -- internals ------------------------------------------------------------------
    def _context(self) -> protocol.Context:
        c = self.config
        help_ = portplan.help_reply(c, self.listeners)
        return protocol.Context(
            identity=c.tls_hostname, max_recipients=c.max_recipients, help=help_,
            uses=self._uses.take, time_scale=c.time_scale,
        )  # fmt: skip

    def __repr__(self) -> str:
        state = "serving" if self._acceptor else "stopped"
        return f"<BadSMTP {state} on {self.config.listen_address} ports={self.ports}>"


def _configured(config: Config | None, settings: dict[str, Any]) -> Config:
    """``config`` (or the defaults) with every keyword setting applied;
    ``mailbox=`` is the README's short spelling of ``mailbox_dir=``."""
    if "mailbox" in settings:
        settings["mailbox_dir"] = settings.pop("mailbox")
    unknown = set(settings) - _CONFIG_KEYS
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return replace(config or Config(), **settings)


def _requested(
    ports: Iterable[int | Listener] | None, config: Config
) -> tuple[list[Listener], set[int]]:
    """The listeners to open, and the indexes of those that must bind."""
    if ports is None:
        validate_ports(config)  # before anything is bound
        # Only the main listener must bind (badsmtp(1), PORT MAP).
        return plan_listeners(config), {0}
    requested = [p if isinstance(p, Listener) else listener_for_port(p, config) for p in ports]
    return requested, set(range(len(requested)))


# Records kept of one session for the inspection API (badsmtp(1), INSPECTION
# API): some 100 messages of a persistent connection; the rest are counted,
# so a load test on persistent connections neither grows memory nor pays for it.
EVENTS_KEPT = 1000


def _transcript_log(limit: int | None) -> TranscriptLog:
    from .transcriptlog import TranscriptLog  # lazy: the CLI records only for the inspection API

    return TranscriptLog(limit, EVENTS_KEPT if limit is not None else None)


def _inbox(config: Config) -> Inbox:
    from .inbox import Inbox

    return Inbox(config.http_keep, config.http_memory * 1024 * 1024, config.mailbox_dir)


def _one_store(
    message_store: MessageStore | None, capture: MemoryStore | None, mailbox_dir: str | None
) -> MessageStore | None:
    """Where accepted messages go: the maildir, the embedder's store and the
    capture, in that order; all of them through a TeeStore."""
    stores: list[MessageStore] = [s for s in (message_store, capture) if s is not None]
    if mailbox_dir:
        stores.insert(0, MaildirStore(mailbox_dir))
    if not stores:
        return None
    return stores[0] if len(stores) == 1 else TeeStore(stores)
