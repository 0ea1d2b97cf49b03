"""Session log events (badsmtp(1), LOGGING) for the IO shell.

One :class:`SessionLog` per connection carries the fields every record of
the session has (``session_id``, ``client_ip``, ``hostname``) and asks the
logger once, when the connection starts, which levels are on: at the
default level nothing is logged per command, so the hot path pays for
nothing but a few attribute tests.

The per-command DEBUG events come from :class:`SessionTracer`, which plugs
into the session's recorder hook (the interface the transcript recorder
implements) and passes every call on to that recorder when there is one;
it is only installed while DEBUG is on.  The WARN events (triggers, limits)
come from the session itself as ``Log`` actions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import Credentials, redact_auth_args
from .replies import Reply

if TYPE_CHECKING:
    import ssl

    from .actions import Envelope
    from .config import Listener
    from .session import Session
    from .storage import Delivery, MessageStore

__all__ = [
    "LEVELS",
    "SessionLog",
    "SessionTracer",
    "new_session_id",
    "set_direct_writer",
    "storage_type",
]

session_log = logging.getLogger("badsmtp.session")
server_log = logging.getLogger("badsmtp.server")
DEBUG, INFO, WARN, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
# The level names records carry, and ``Log`` actions and --log-level use
# (badsmtp(1), --log-level): WARN, not WARNING.
LEVELS = {"DEBUG": DEBUG, "INFO": INFO, "WARN": WARN, "ERROR": ERROR}

# writer(level, message, fields, error): queues one record of the connection
RecordWriter = Callable[[int, str, dict[str, Any], "str | None"], None]
_direct: Callable[[dict[str, Any]], RecordWriter] | None = None


def set_direct_writer(factory: Callable[[dict[str, Any]], RecordWriter] | None) -> None:
    """Give session records a shorter way out than ``Logger.handle``.

    :func:`badsmtp.log.configure` installs one while it owns the
    ``badsmtp`` logger (the CLI).  Each connection, when it starts, calls
    ``factory(base)`` with the fields all its records carry and gets a
    writer that queues each record's parts for the logging thread to
    format, unless ``badsmtp.session`` has handlers or filters of its own.
    Levels are checked against the logger's level when the connection
    started, as its ``info``/``warn``/``debug`` flags are."""
    global _direct
    _direct = factory


def _direct_writer(base: dict[str, Any]) -> RecordWriter | None:
    factory = _direct
    if factory is None or session_log.handlers or session_log.filters or not session_log.propagate:
        return None
    return factory(base)


def new_session_id() -> str:
    """``sess_`` and 24 lower-case hex digits (12 random bytes).  From
    ``os.urandom``, as ``secrets.token_hex`` makes them, without loading
    ``secrets`` (and ``random``, ``hashlib``) at start-up."""
    return "sess_" + os.urandom(12).hex()


def storage_type(store: MessageStore | None) -> str:
    """``local`` for a maildir, ``none`` when storage is off;
    ``memory`` for the embedding API's capture alone."""
    if store is None:
        return "none"
    kind = getattr(store, "kind", "custom")  # an embedder's store says nothing
    return kind if isinstance(kind, str) else "custom"


def _saved_paths(delivery: Delivery) -> list[str]:
    return [p for p in getattr(delivery, "paths", ()) if isinstance(p, str)]


def _tls_version(name: str | None) -> str:
    # "TLSv1.3" -> "TLS 1.3", as the tls_version field spells it
    return (name or "").replace("TLSv", "TLS ")


def _ms(since: float) -> float:
    """Milliseconds since ``since``, to the microsecond (truncated: a
    third of the cost of ``round``, on a path taken twice per message)."""
    return int((time.monotonic() - since) * 1_000_000) / 1000


class _SessionRecord(logging.LogRecord):
    """A log record made cheaply: a busy sink writes two per message at
    INFO, and ``LogRecord.__init__`` with ``Logger.log``'s extra handling
    cost as much as the rest of a transaction's logging.  Only what badsmtp's
    records (badsmtp(1), LOGGING) and the standard formatters read is filled
    in."""

    def __init__(self, level: int, message: str, fields: dict[str, Any]) -> None:
        now = time.time()
        self.name = "badsmtp.session"
        self.msg = message
        self.args = None
        self.levelno = level
        self.levelname = logging.getLevelName(level)
        self.pathname = self.filename = __file__
        self.module = "sessionlog"
        self.lineno = 0
        self.funcName = "event"
        self.created = now
        self.msecs = (now - int(now)) * 1000
        self.relativeCreated = 0.0
        self.exc_info = self.exc_text = self.stack_info = None
        self.thread = self.threadName = self.processName = self.process = None
        self.taskName = None
        self.fields = fields


class SessionLog:
    """The log of one connection; the ``info``/``warn``/``debug`` flags are
    read once, when the connection starts."""

    __slots__ = ("_direct", "_envelope", "_level", "_message_at", "base", "debug", "info", "warn")

    def __init__(self, client_ip: str, hostname: str) -> None:
        self.base: dict[str, Any] = {
            "session_id": new_session_id(),
            "client_ip": client_ip,
            "hostname": hostname,
        }
        self.info = session_log.isEnabledFor(INFO)
        self.warn = session_log.isEnabledFor(WARN)
        self.debug = session_log.isEnabledFor(DEBUG)
        self._direct = _direct_writer(self.base) if self.warn else None
        # The direct writer's level check: the lowest of the levels above.
        self._level = DEBUG if self.debug else INFO if self.info else WARN if self.warn else ERROR
        self._envelope: Envelope | None = None
        self._message_at = 0.0

    @property
    def session_id(self) -> str:
        return str(self.base["session_id"])

    def event(
        self,
        level: int,
        message: str,
        fields: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        if self._direct is not None:
            if level >= self._level:
                self._direct(level, message, fields or {}, error)
            return
        if not session_log.isEnabledFor(level):
            return
        record = _SessionRecord(level, message, {**self.base, **fields} if fields else self.base)
        if error is not None:
            record.error = error
        session_log.handle(record)

    # -- the connection -------------------------------------------------------------------
    def established(self, port: int, tls: bool) -> None:
        if self.info:
            self.event(INFO, "SMTP connection established", {"port": port, "tls_enabled": tls})

    def closed(self, started: float) -> None:
        if self.info:
            self.event(INFO, "SMTP connection closed", {"duration_ms": _ms(started)})

    def behaviour(self, listener: Listener, time_scale: float = 1.0) -> None:
        """A delay or drop port's behaviour starts; its delay as waited
        (multiplied by ``time_scale``: README, Time scaling)."""
        if self.info and listener.role.value in (
            "greeting_delay", "command_delay", "drop_delay", "immediate_drop",
        ):  # fmt: skip
            fields: dict[str, Any] = {"behaviour": listener.role.value, "port": listener.port}
            if listener.delay:
                fields["delay_seconds"] = listener.delay * time_scale
            if time_scale != 1.0:
                fields["time_scale"] = time_scale
            self.event(INFO, "SMTP behaviour triggered", fields)

    def tls_ok(self, sock: ssl.SSLSocket) -> None:
        if self.info:
            cipher = sock.cipher()
            fields = {"success": True, "tls_version": _tls_version(sock.version()),
                      "cipher": cipher[0] if cipher else ""}  # fmt: skip
            self.event(INFO, "TLS handshake successful", fields)

    def tls_failed(self, exc: BaseException, own_fault: bool = False) -> None:
        """A failed handshake is a WARN when the client caused it (junk, an
        abort, a version or cipher it cannot use: a port scan must not fill a
        CI log with errors); ERROR only when badsmtp itself failed it."""
        if own_fault or self.warn:
            self.event(
                ERROR if own_fault else WARN,
                "TLS handshake failed",
                {"success": False},
                str(exc) or type(exc).__name__,
            )

    def auth(self, credentials: Credentials, success: bool) -> None:
        """The authenticator's verdict; usernames are logged, passwords never
        (badsmtp(1), LOGGING)."""
        if success and self.info or not success and self.warn:
            fields = {"auth_mechanism": credentials.mechanism, "username": credentials.username,
                      "success": success}  # fmt: skip
            if success:
                self.event(INFO, "SMTP authentication successful", fields)
            else:
                self.event(WARN, "SMTP authentication failed", fields)

    # -- messages ---------------------------------------------------------------------------
    def message_started(self, env: Envelope) -> None:
        self._envelope, self._message_at = env, time.monotonic()
        if self.info:
            fields = {"mail_from": env.sender, "rcpt_to": list(env.recipients),
                      "rcpt_count": len(env.recipients)}  # fmt: skip
            self.event(INFO, "SMTP message processing started", fields)

    def _message_fields(self, env: Envelope | None, store: MessageStore | None) -> dict[str, Any]:
        env = env or self._envelope
        fields: dict[str, Any] = {}
        if env is not None:
            fields = {"mail_from": env.sender, "rcpt_to": list(env.recipients),
                      "message_size": env.size}  # fmt: skip
        fields["storage_type"] = storage_type(store)
        if self._message_at:
            fields["duration_ms"] = _ms(self._message_at)
        return fields

    def message_stored(
        self, env: Envelope, store: MessageStore | None, delivery: Delivery | None
    ) -> None:
        """The message was acknowledged: stored, or counted and discarded."""
        if self.info:
            if self._envelope is None:  # storage off: nothing streamed, no start logged
                self.message_started(env)
            self.event(INFO, "SMTP message stored successfully", self._message_fields(env, store))
            for path in _saved_paths(delivery) if delivery is not None else ():
                server_log.info("Message saved", extra={"fields": {"path": path}})
        self._envelope, self._message_at = None, 0.0

    def message_failed(
        self, store: MessageStore | None, exc: BaseException, env: Envelope | None = None
    ) -> None:
        if self.warn:
            fields = self._message_fields(env, store)
            self.event(ERROR, "SMTP message storage failed", fields, str(exc) or type(exc).__name__)
        self._envelope, self._message_at = None, 0.0

    # -- the session's recorder hook ---------------------------------------------------------
    def hook(self, recorder: Any) -> Any:
        """What to give the session as its recorder: a tracer when anything
        it reports is logged, else the transcript recorder (or None)."""
        return SessionTracer(self, recorder) if self.debug else recorder


def _ignore(*args: object) -> None:
    return None


class SessionTracer:
    """The session's recorder hook: DEBUG ``SMTP command received``,
    ``SMTP response sent``/``SMTP error response sent`` and ``SMTP state
    transition`` (only installed when DEBUG was on at connect); every call is
    passed on to ``inner`` (the transcript recorder)."""

    def __init__(self, log: SessionLog, inner: Any = None) -> None:
        self._log = log
        self._inner = inner
        self._debug = log.debug
        self.session: Session | None = None
        self._phase = ""
        self._verb = ""

    def attach(self, session: Session) -> None:
        self.session = session
        self._phase = session.state.phase.value

    def __getattr__(self, name: str) -> Any:
        # Hooks this tracer does not log go straight to the recorder.
        if name.startswith("__") or name in ("_inner", "_log"):
            raise AttributeError(name)
        return getattr(self._inner, name) if self._inner is not None else _ignore

    def content_read(self) -> None:  # per recv during DATA: kept cheap
        if self._inner is not None:
            self._inner.content_read()

    def command(self, words: list[str]) -> None:
        if self._inner is not None:
            self._inner.command(words)
        if not self._debug:
            return
        self._transition()
        verb, args = words[0].upper(), words[1:]
        if verb == "AUTH":  # the initial response may be a password
            args = redact_auth_args(args)
        self._verb = verb
        fields: dict[str, Any] = {"command": verb, "smtp_state": self._phase}
        if args:
            fields["args"] = args
        self._log.event(DEBUG, "SMTP command received", fields)

    def reply(self, reply: Reply, enhanced: bool) -> None:
        if self._inner is not None:
            self._inner.reply(reply, enhanced)
        if not self._debug:
            return
        self._transition()
        text = reply.render(enhanced).decode("utf-8", "replace").removesuffix("\r\n")
        message = "SMTP error response sent" if reply.code >= 400 else "SMTP response sent"
        self._log.event(DEBUG, message, {"response": text, "response_code": reply.code})

    def too_long(self, length: int) -> None:
        if self._inner is not None:
            self._inner.too_long(length)

    def _transition(self) -> None:
        """Log a phase change, attributed to the command that caused it; seen
        at the next reply or command (a message's end changes the phase
        after its reply)."""
        session = self.session
        if session is None:
            return
        phase = session.state.phase.value
        if phase != self._phase:
            fields = {"from_state": self._phase, "to_state": phase, "command": self._verb}
            self._log.event(DEBUG, "SMTP state transition", fields)
            self._phase = phase
