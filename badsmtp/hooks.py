"""How the IO shell calls the extensions (README, Extending badsmtp; the
interfaces are in :mod:`badsmtp.extensions`): :class:`Extensions`, the set
one server was given, and :class:`ConnectionHooks`, one connection's view of
it, which binds the client address and the authenticated user, answers the
core's :class:`~badsmtp.protocol.Policy` questions and never lets an
extension's exception out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from . import protocol, replies
from .auth import Credentials, User, pattern_authenticate
from .replies import Reply
from .storage import Message

if TYPE_CHECKING:
    from .extensions import Authenticator, Authorizer, RateLimiter, SessionObserver

__all__ = ["ConnectionHooks", "Extensions", "SessionContext", "as_observers"]

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


# -- an extension's answer, never its exception -----------------------------------
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


def _anyone(address: str) -> bool:
    return True


def _verdict(result: Any) -> tuple[bool, str]:
    """``(allowed, reason)``; a bare bool is accepted too."""
    if isinstance(result, tuple):
        allowed, reason = result
        return bool(allowed), str(reason or "")
    return bool(result), ""


def _authenticate_function(
    authenticator: Authenticator | Callable[[str, str | None], Any] | None,
) -> Callable[[str, str | None], Any]:
    """``authenticator=`` as the function to call: its ``authenticate``
    method, the function itself, or the default (badsmtp(1), ERROR TRIGGERS)."""
    if authenticator is None:
        return pattern_authenticate
    if hasattr(authenticator, "authenticate"):
        return authenticator.authenticate
    if callable(authenticator):  # a plain function(username, password)
        return authenticator
    raise TypeError("authenticator must have an authenticate(username, password) method")


Listeners = dict[str, list[tuple[str, Callable[..., Any]]]]


def _listeners(observers: Iterable[SessionObserver]) -> Listeners:
    """Each event's bound observer methods, with the name an error log
    gives each.  Observers may leave events out: bind what each one has, once."""
    listeners: Listeners = {event: [] for event in _OBSERVER_EVENTS}
    for observer in observers:
        for event in _OBSERVER_EVENTS:
            method = getattr(observer, event, None)
            if callable(method):
                listeners[event].append((f"{type(observer).__name__}.{event}", method))
    return listeners


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
        self._authenticate = _authenticate_function(authenticator)
        self.rate_limiter = rate_limiter
        self.authorizer = authorizer
        self.listeners = _listeners(observers)
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
            can_send_from=self._authorizer_question("can_send_from"),
            allow_message=self._allow_message,
            can_send_to=self._authorizer_question("can_send_to"),
            quota=self._quota,
        )

    def _authorizer_question(self, question: str) -> Callable[[str], bool]:
        """The authorizer's ``can_send_from`` or ``can_send_to`` about an
        address, for the current user; False when it raises (README,
        Extending badsmtp), always True without an authorizer."""
        authorizer = self.ext.authorizer
        if authorizer is None:
            return _anyone
        name = "authorizer." + question

        def ask(address: str) -> bool:
            method = getattr(authorizer, question)
            return _ask(name, False, bool, method, self._current_user(), address)

        return ask

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
