"""The extension interfaces (README, Extending badsmtp): what an embedder can
plug into badsmtp, and the defaults.

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

The adapters the IO shell calls them through live in :mod:`badsmtp.hooks`
(:class:`Extensions`, :class:`ConnectionHooks`, and the
:class:`SessionContext` observers are given); those names are re-exported
here.

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

from typing import Protocol

from .auth import User, pattern_authenticate
from .hooks import ConnectionHooks, Extensions, SessionContext, as_observers
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
    "as_observers",
]


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
