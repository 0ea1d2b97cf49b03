"""The values the pure core passes around: the session's ``State``, what the
server tells every session (``Context``, ``Policy``), and the outputs of a
command besides replies and actions (which reader comes next).  Frozen,
slotted, updated with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable, Union

from . import replies
from .actions import Abort, Accepted, Close, Commit, Log, StartTLS, Wait
from .replies import Reply
from .triggers import HELO_CAPABILITIES, Capabilities, TransferFault, Trigger

__all__ = [
    "DEFAULT_HELP",
    "Authenticate",
    "Context",
    "DiscardChunk",
    "Handler",
    "Output",
    "Phase",
    "Policy",
    "ReadChunk",
    "ReadData",
    "Result",
    "State",
    "fault_fired",
    "fired",
    "may_fire",
    "reset",
    "tls_fault_fired",
    "transaction_over",
]


class Phase(Enum):
    """Session states (RFC 5321 §4.1.4 orders the commands); the names appear in
    503 replies."""

    HELO = "HELO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    BDAT = "BDAT"


# HELP for the default port plan (README "Quick tour"); the server passes its own.
DEFAULT_HELP = replies.help_reply("3000-3099", "4000-4099", "5000-5099", "6000", "25465", "25587")


@dataclass(frozen=True, slots=True)
class Policy:
    """The embedder's answers inside the order of checks (at MAIL, at RCPT, at
    the end of the content; README "Extending badsmtp"): its authorizer and
    rate limiter, as plain callables the shell built for one connection (user
    and client address bound, exceptions turned into "no").  The core only
    asks; the replies to a "no" are its own."""

    can_send_from: Callable[[str], bool]
    allow_message: Callable[[], tuple[bool, str]]
    can_send_to: Callable[[str], bool]
    quota: Callable[[], int]  # octets; -1 = unlimited


@dataclass(frozen=True, slots=True)
class Context:
    """What the server tells every session; fixed for a listener's life
    (``policy`` is set per connection, and only when extensions ask)."""

    identity: str = "badsmtp.test"
    max_recipients: int = 1000
    help: Reply = DEFAULT_HELP
    policy: Policy | None = None
    # A counted trigger (``x<N>``) asks this whether it may fire once more:
    # ``uses(key, times)`` takes one use of the server-wide count and says
    # whether there was one left.  None: counted triggers fire every time.
    uses: Callable[[str, int], bool] | None = None
    time_scale: float = 1.0  # every Wait's seconds are multiplied by it (README, Time scaling)


@dataclass(frozen=True, slots=True)
class State:
    phase: Phase = Phase.HELO
    caps: Capabilities = HELO_CAPABILITIES
    helo_name: str = ""
    tls: bool = False
    user: str | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    armed: Trigger | None = None
    armed_used: bool = False  # a counted rcpt trigger took its use in this transaction
    fault: TransferFault | None = None  # dropafter/noack/slowack, for this transaction
    messages: int = 0


# -- readers: what the session reads next (besides command lines) ------------
@dataclass(frozen=True, slots=True)
class ReadData:
    """Read DATA content up to CRLF.CRLF (the 354 has been queued)."""


@dataclass(frozen=True, slots=True)
class ReadChunk:
    """Read exactly ``size`` octets of BDAT chunk, then judge (RFC 3030)."""

    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class DiscardChunk:
    """A refused BDAT: read and discard its ``size`` octets of chunk, then
    answer with ``then`` (RFC 3030 §2: the server MUST read the chunk even
    when it refuses the command, or the chunk's octets would be taken as
    commands: SMTP smuggling)."""

    size: int
    then: tuple[Reply | Log, ...]


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Run the SASL exchange for ``mechanism`` (RFC 4954)."""

    mechanism: str
    initial: str | None


# Replies; the actions a command or a verdict asks for (Abort: the
# transaction is gone; Close; StartTLS; Wait: before the next reply; Log: a
# trigger fired; Commit; Accepted); and reader switches.
Output = Union[
    Reply, Abort, Accepted, Close, Commit, Log, StartTLS, Wait,
    ReadData, ReadChunk, DiscardChunk, Authenticate,
]  # fmt: skip
Result = tuple[State, list[Output]]
Handler = Callable[[State, list[str], Context], Result]


def may_fire(trigger: Trigger | TransferFault, ctx: Context) -> bool:
    """Whether ``trigger`` fires now: always, unless it is counted
    (``x<N>``) and the server's count for it is used up; firing takes a use."""
    return trigger.times is None or ctx.uses is None or ctx.uses(trigger.key, trigger.times)


def fault_fired(fault: TransferFault, **extra: object) -> Log:
    """The record of a transfer fault that fired (a WARN; README "Asking for errors")."""
    fields: dict[str, object] = {"fault": fault.kind, "trigger": fault.source, **extra}
    return Log("WARN", "SMTP transfer fault triggered", fields)


def fired(trigger: str, code: int, stage: str) -> Log:
    """The record of a client-requested error (a WARN; README "Asking for errors")."""
    fields: dict[str, object] = {"error_code": code, "trigger": trigger, "smtp_stage": stage}
    return Log("WARN", "SMTP error simulation triggered", fields)


def tls_fault_fired(fault: str, stage: str) -> Log:
    """The record of a TLS fault a client asked for (badsmtp(1), TLS FAULTS)."""
    return Log("WARN", "TLS fault triggered", {"tls_fault": fault, "smtp_stage": stage})


def transaction_over(state: State, accepted: bool = False) -> State:
    """End of a transaction, by acceptance (counted) or by a failure:
    envelope and armed trigger cleared (README "Asking for errors": a
    deferred error stays armed until a message is accepted)."""
    return replace(
        state, phase=Phase.MAIL, sender=None, recipients=(), armed=None, armed_used=False,
        fault=None, messages=state.messages + accepted,
    )  # fmt: skip


def reset(state: State) -> State:
    """RSET's reset (RFC 5321 §4.1.1.5): the transaction goes, armed
    triggers and capabilities stay."""
    phase = Phase.HELO if state.phase is Phase.HELO else Phase.MAIL
    return replace(
        state, phase=phase, sender=None, recipients=(), armed_used=False, fault=None
    )
