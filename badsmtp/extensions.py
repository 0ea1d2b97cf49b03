"""The extension interfaces (README, Extending badsmtp): what an embedder can
plug into badsmtp, the defaults, and the adapters the IO shell calls them
through.

Five interfaces, all optional (``BadSMTP(authenticator=..., message_store=...,
observers=[...], rate_limiter=..., authorizer=...)``):

- :class:`MessageStore` (re-exported from :mod:`badsmtp.storage`): a
  streaming ``begin`` → ``write``… → ``commit``/``abort`` delivery;
- :class:`Authenticator`: ``authenticate(username, password)`` → a
  :class:`User` (``active=False`` for an inactive account), ``None`` or an
  exception for "rejected";
- :class:`RateLimiter`: per-connection and per-message admission;
- :class:`Authorizer`: who may send from/to what, and a size quota;
- :class:`SessionObserver`: notifications, return values ignored.

The classes here are ``typing.Protocol``\\ s: any object with the right
methods will do.  They can also be subclassed; an observer that subclasses
:class:`SessionObserver` only overrides the events it cares about, and a plain
duck-typed observer may simply leave methods out.

**How the pure core asks the extensions** (why a ``Policy`` and not a pause).
The dispatcher (:mod:`badsmtp.protocol`) and the session driver stay free of
IO.  The decisions an extension makes *inside* a command's order of checks
(``can_send_from`` and ``allow_message`` at MAIL, ``can_send_to`` at RCPT,
``get_quota`` at the end of DATA/BDAT) reach the core as a
:class:`~badsmtp.protocol.Policy`: four plain callables in the session's
``Context``, built per connection by :class:`ConnectionHooks`, which binds the
authenticated user and the client address and turns an exception into the
documented refusal (logged at ERROR).  The core decides *where* in the order
of checks the question is asked and *which reply* a "no" gets (the texts stay
in :mod:`badsmtp.replies`); the policy only answers yes/no (a number for the
quota).  A pause/resume like ``Verify`` would keep the core equally pure but
split every MAIL and RCPT handler in two halves and stall the pipeline on each
one, for answers that never need the network; a test of the dispatcher just
passes lambdas.  Without an authorizer or a rate limiter the policy is
``None`` and the core makes no extra call at all.

Everything else happens where the IO shell already is: ``allow_connection``
on accept, observers around the session, ``authenticate`` at the ``Verify``
pause.  The session driver reports the two events the shell cannot see for
itself (a 4xx/5xx reply and its verb, an acknowledged message) as actions,
and only when an observer or rate limiter is installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from . import protocol, replies
from .auth import Credentials, User, pattern_authenticate
from .replies import Reply
from .storage import Delivery, Message, MessageStore

__all__ = [
    "AllowAllAuthorizer",
    "AllowAllRateLimiter",
    "Authenticator",
    "Authorizer",
    "ConnectionHooks",
    "Delivery",
    "Extensions",
    "Message",
    "MessageStore",
    "PatternAuthenticator",
    "RateLimiter",
    "SessionContext",
    "SessionObserver",
    "User",
]

log = logging.getLogger("badsmtp.extensions")

_OBSERVER_EVENTS = ("on_connect", "on_auth", "on_message", "on_error", "on_disconnect")


# -- data shapes ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionContext:
    """What observers are told about the session an event belongs to."""

    id: str
    client_ip: str
    hostname: str
    user: User | None
    authenticated: bool
    tls_active: bool
    messages_sent: int


# -- the interfaces ------------------------------------------------------------
class Authenticator(Protocol):
    def authenticate(self, username: str, password: str | None) -> User | None:
        """A :class:`User` accepts (an inactive one gets ``535 … account
        inactive``); ``None`` or an exception rejects (``535``).  ``password``
        is ``None`` for CRAM-* and XOAUTH2."""
        ...


class RateLimiter(Protocol):
    def allow_connection(self, client_ip: str) -> tuple[bool, str]:
        """On accept, before anything else; ``(False, reason)`` → ``421 {reason}``."""
        ...

    def record_connection(self, client_ip: str) -> None: ...

    def release_connection(self, client_ip: str) -> None:
        """When a recorded connection ends, however it ends."""
        ...

    def allow_message(self, user: User | None, client_ip: str) -> tuple[bool, str]:
        """At MAIL FROM; ``(False, reason)`` → ``451 {reason}``."""
        ...

    def record_message(self, user: User | None, client_ip: str) -> None:
        """After each accepted message."""
        ...


class Authorizer(Protocol):
    def can_send_from(self, user: User | None, sender: str) -> bool:
        """At MAIL FROM; False → ``550``.  ``sender`` is ``""`` for ``<>``."""
        ...

    def can_send_to(self, user: User | None, recipient: str) -> bool:
        """At each RCPT TO; False → ``550``."""
        ...

    def get_quota(self, user: User | None) -> int:
        """Octets a message may have (``-1`` unlimited), checked at the end
        of DATA/BDAT LAST: over it → ``552``."""
        ...


class SessionObserver(Protocol):
    def on_connect(self, ctx: SessionContext) -> None: ...

    def on_auth(self, ctx: SessionContext, user: User) -> None: ...

    def on_message(self, ctx: SessionContext, message: Message) -> None: ...

    def on_error(self, ctx: SessionContext, error: str, command: str) -> None:
        """After every 4xx/5xx reply: ``error`` is the reply as sent (lines
        joined with CRLF), ``command`` the verb it answered ("" for the
        connection-level ones: idle timeout, shutdown)."""
        ...

    def on_disconnect(self, ctx: SessionContext, duration: float) -> None: ...


# -- the defaults ----------------------------------------------------------------
class PatternAuthenticator:
    """The default (badsmtp(1), ERROR TRIGGERS): ``badauth`` in the username fails,
    anything else succeeds."""

    def authenticate(self, username: str, password: str | None) -> User | None:
        return pattern_authenticate(username, password)


class AllowAllRateLimiter:
    """The default: allows everything, records nothing."""

    def allow_connection(self, client_ip: str) -> tuple[bool, str]:
        return True, ""

    def record_connection(self, client_ip: str) -> None:
        pass

    def release_connection(self, client_ip: str) -> None:
        pass

    def allow_message(self, user: User | None, client_ip: str) -> tuple[bool, str]:
        return True, ""

    def record_message(self, user: User | None, client_ip: str) -> None:
        pass


class AllowAllAuthorizer:
    """The default: everyone may send anything, no quota."""

    def can_send_from(self, user: User | None, sender: str) -> bool:
        return True

    def can_send_to(self, user: User | None, recipient: str) -> bool:
        return True

    def get_quota(self, user: User | None) -> int:
        return -1


# -- the adapters the IO shell uses ------------------------------------------------
T = TypeVar("T")


def _failed(what: str, exc: BaseException) -> None:
    log.error(
        "Extension raised an exception",
        exc_info=exc,
        extra={"fields": {"extension": what, "error": f"{type(exc).__name__}: {exc}"}},
    )


def _ask(
    name: str, fallback: T, then: Callable[[Any], T], method: Callable[..., Any], *args: Any
) -> T:
    """An extension's answer, through ``then``; if either raises, the
    exception is logged at ERROR and ``fallback`` answers (README, Extending badsmtp)."""
    try:
        return then(method(*args))
    except Exception as exc:  # noqa: BLE001 - an extension's bug never reaches the session
        _failed(name, exc)
        return fallback


def _as_is(result: Any) -> Any:
    return result


def _verdict(result: Any) -> tuple[bool, str]:
    """``(allowed, reason)``; a bare bool is accepted too."""
    if isinstance(result, tuple):
        allowed, reason = result
        return bool(allowed), str(reason or "")
    return bool(result), ""


class Extensions:
    """The extensions one server was given.  ``active`` is False when only
    the authenticator is installed: the shell then skips every other hook."""

    def __init__(
        self,
        authenticator: Authenticator | Callable[[str, str | None], Any] | None = None,
        observers: Iterable[SessionObserver] = (),
        rate_limiter: RateLimiter | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        if authenticator is None:
            self._authenticate: Callable[[str, str | None], Any] = pattern_authenticate
        elif hasattr(authenticator, "authenticate"):
            self._authenticate = authenticator.authenticate
        elif callable(authenticator):  # a plain function(username, password)
            self._authenticate = authenticator
        else:
            raise TypeError("authenticator must have an authenticate(username, password) method")
        self.rate_limiter = rate_limiter
        self.authorizer = authorizer
        # Observers may leave events out: bind what each one has, once.
        self.listeners: dict[str, list[tuple[str, Callable[..., Any]]]] = {
            event: [] for event in _OBSERVER_EVENTS
        }
        for observer in observers:
            for event in _OBSERVER_EVENTS:
                method = getattr(observer, event, None)
                if callable(method):
                    self.listeners[event].append((f"{type(observer).__name__}.{event}", method))
        self.observing = any(self.listeners.values())
        # The session reports error replies and acknowledged messages only
        # when someone listens (on_error, on_message, record_message).
        self.notifies = bool(
            self.listeners["on_error"] or self.listeners["on_message"] or rate_limiter is not None
        )
        self.active = self.observing or rate_limiter is not None or authorizer is not None

    def authenticate(self, credentials: Credentials) -> Any:
        """The authenticator's verdict; an exception is a rejection."""
        return _ask("authenticator.authenticate", None, _as_is, self._authenticate,
                    credentials.username, credentials.password)  # fmt: skip

    def hooks(self, client_ip: str, identity: str, session_id: str) -> ConnectionHooks | None:
        return ConnectionHooks(self, client_ip, identity, session_id) if self.active else None


class ConnectionHooks:
    """One connection's view of the extensions: it knows the client address,
    the session and its authenticated user, and never lets an extension's
    exception out: it is logged at ERROR and turned into the documented
    reply, or ignored for observers (README, Extending badsmtp)."""

    def __init__(self, ext: Extensions, client_ip: str, identity: str, session_id: str) -> None:
        self.ext = ext
        self.client_ip = client_ip
        self.identity = identity
        self.session_id = session_id  # the one of the session's log records (badsmtp(1), LOGGING)
        self.user: User | None = None
        self.session: Any = None  # the Session, once there is one
        self._recorded = False
        self._connected = False
        self._started = time.monotonic()

    # -- connection -----------------------------------------------------------------
    def admit(self) -> Reply | None:
        """None to go on, or the 421 that refuses the connection."""
        limiter = self.ext.rate_limiter
        if limiter is not None:
            allowed, reason = _ask("rate_limiter.allow_connection", (False, ""), _verdict,
                                   limiter.allow_connection, self.client_ip)  # fmt: skip
            if not allowed:
                return replies.connection_refused(reason)
            self._recorded = True
            self._call("rate_limiter.record_connection", limiter.record_connection, self.client_ip)
        return None

    def connected(self) -> None:
        self._connected = True
        self._notify("on_connect")

    def closed(self) -> None:
        if self._connected:
            self._notify("on_disconnect", time.monotonic() - self._started)
        if self._recorded and self.ext.rate_limiter is not None:
            self._recorded = False
            limiter = self.ext.rate_limiter
            self._call("rate_limiter.release_connection", limiter.release_connection, self.client_ip)

    # -- session events ------------------------------------------------------------
    def authenticated(self, user: Any) -> None:
        self.user = user
        self._notify("on_auth", user)

    def error(self, text: str, command: str) -> None:
        if self._connected:
            self._notify("on_error", text, command)

    def accepted(self, message: Message) -> None:
        limiter = self.ext.rate_limiter
        if limiter is not None:
            self._call(
                "rate_limiter.record_message", limiter.record_message,
                self._current_user(), self.client_ip,
            )
        self._notify("on_message", message)

    # -- the core's questions: at MAIL, at RCPT, at the end of the content ------------
    def policy(self) -> protocol.Policy | None:
        if self.ext.rate_limiter is None and self.ext.authorizer is None:
            return None
        return protocol.Policy(
            can_send_from=self._can_send_from,
            allow_message=self._allow_message,
            can_send_to=self._can_send_to,
            quota=self._quota,
        )

    def _can_send_from(self, sender: str) -> bool:
        authorizer = self.ext.authorizer
        if authorizer is None:
            return True
        return _ask("authorizer.can_send_from", False, bool, authorizer.can_send_from,
                    self._current_user(), sender)  # fmt: skip

    def _can_send_to(self, recipient: str) -> bool:
        authorizer = self.ext.authorizer
        if authorizer is None:
            return True
        return _ask("authorizer.can_send_to", False, bool, authorizer.can_send_to,
                    self._current_user(), recipient)  # fmt: skip

    def _allow_message(self) -> tuple[bool, str]:
        limiter = self.ext.rate_limiter
        if limiter is None:
            return True, ""
        return _ask("rate_limiter.allow_message", (False, ""), _verdict, limiter.allow_message,
                    self._current_user(), self.client_ip)  # fmt: skip

    def _quota(self) -> int:
        authorizer = self.ext.authorizer
        if authorizer is None:
            return -1
        # A failure closes: 0 is the documented 552, nothing stored.
        return _ask("authorizer.get_quota", 0, int, authorizer.get_quota, self._current_user())

    # -- helpers --------------------------------------------------------------------
    def _current_user(self) -> User | None:
        """The authenticated user; forgotten with the session's own record of
        it (after STARTTLS, RFC 3207 §4.2)."""
        session = self.session
        if self.user is None or session is None or session.state.user is None:
            return None
        return self.user

    def context(self) -> SessionContext:
        session = self.session
        state = session.state if session is not None else None
        user = self._current_user()
        return SessionContext(
            id=self.session_id,
            client_ip=self.client_ip,
            hostname=self.identity,
            user=user,
            authenticated=user is not None,
            tls_active=bool(state and state.tls),
            messages_sent=state.messages if state is not None else 0,
        )

    def _notify(self, event: str, *args: Any) -> None:
        listeners = self.ext.listeners[event]
        if not listeners:
            return
        ctx = self.context()
        for name, method in listeners:
            self._call(name, method, ctx, *args)

    @staticmethod
    def _call(name: str, method: Callable[..., Any], *args: Any) -> None:
        _ask(name, None, _as_is, method, *args)


def as_observers(observer: Any = None, observers: Iterable[Any] | None = None) -> list[Any]:
    """``observer=`` and ``observers=`` of the embedding API, as one list."""
    out = list(observers or ())
    if observer is not None:
        out.insert(0, observer)
    return out
