"""The one action vocabulary: what the pure core asks the IO shell to do.

The dispatcher (:mod:`badsmtp.protocol`) and the session driver
(:mod:`badsmtp.session`) return these; the shell (:mod:`badsmtp.server`)
executes them in order from a type-to-method table.  Four of them *pause*
the session: the shell does what they say, then answers with the session
method named in their docstring, which returns the next actions.  No
socket, clock or file is touched to build one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .auth import Credentials

__all__ = [
    "Abort",
    "Accepted",
    "Action",
    "Begin",
    "Close",
    "Commit",
    "Envelope",
    "ErrorSent",
    "Log",
    "PAUSES",
    "Send",
    "SplitSend",
    "StartTLS",
    "Verify",
    "Wait",
    "Write",
]


class Action:
    """The common base: every action is a frozen value."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message's envelope as the store sees it (RFC 5321 §3.3)."""

    sender: str
    recipients: tuple[str, ...]
    helo: str
    tls: bool
    user: str | None
    size: int = 0


# -- the wire ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send(Action):
    """Write these octets (the replies of one batch, in one write)."""

    data: bytes

    @property
    def writes(self) -> tuple[bytes, ...]:
        """The octets of each write, in order."""
        return (self.data,)


@dataclass(frozen=True, slots=True)
class SplitSend(Send):
    """Write these octets in several writes, each offset in ``cuts``
    starting a new one: a reply-framing fault (:mod:`badsmtp.replyfaults`).
    A type of its own, so that a plain Send stays as cheap as it was."""

    cuts: tuple[int, ...]

    @property
    def writes(self) -> tuple[bytes, ...]:
        bounds = (0, *self.cuts, len(self.data))
        return tuple(self.data[a:b] for a, b in pairwise(bounds))


@dataclass(frozen=True, slots=True)
class Wait(Action):
    """Pause: wait ``seconds`` (ended early by a stop or by the client
    closing), then call ``session.waited()``.  Every delay a client or a
    listener asks for is one of these."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Close(Action):
    """Close the connection after what came before; nothing follows it."""


@dataclass(frozen=True, slots=True)
class StartTLS(Action):
    """Pause: run the TLS handshake (after the 220 that came before, or
    first thing on an implicit TLS listener), then call
    ``session.tls_started()``, or ``session.receive_data(b"")`` if it failed.

    ``fault`` (badsmtp(1), TLS FAULTS) presents a certificate made to fail
    verification (``certexpired``, ...), or with ``tlsabort`` (implicit TLS:
    the STARTTLS path closes in the core) reads the ClientHello and fails
    without a handshake."""

    fault: str | None = None


# -- the message store (the delivery of RFC 5321 §4.1.1.4) --------------------------
@dataclass(frozen=True, slots=True)
class Begin(Action):
    """Open a delivery in the message store; its content follows as Write."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Write(Action):
    data: bytes


@dataclass(frozen=True, slots=True)
class Commit(Action):
    """Pause: commit the open delivery, then call ``session.commit_done()``
    with ``None`` or the reply for its failure: the failure of a ``begin`` or
    ``write`` of this same delivery, or of the commit itself."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Abort(Action):
    """Drop the open delivery: nothing of it may be kept.  From the
    dispatcher it means "the transaction is gone" (RSET, a new EHLO), and
    the session passes it on only when a delivery is open."""


# -- authentication ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verify(Action):
    """Pause: ask the authenticator, then call ``session.auth_done()``."""

    credentials: Credentials


# -- what the edges hear -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Log(Action):
    level: str
    message: str
    fields: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErrorSent(Action):
    """A 4xx/5xx reply went out (in the Send before this), answering
    ``command`` ("" for connection-level replies).  Only when asked for."""

    text: str
    command: str


@dataclass(frozen=True, slots=True)
class Accepted(Action):
    """The message just committed was acknowledged.  Only when asked for."""


PAUSES = (Wait, StartTLS, Commit, Verify)  # each ends its batch
