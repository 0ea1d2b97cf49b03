"""The pure command dispatcher: ``dispatch(state, verb, args, ctx)`` returns the
new state and what to do: replies, actions for the shell (:mod:`badsmtp.actions`)
and the reader to switch to.  No sockets, clocks or files.

Preconditions are checked once, from the ``ALLOWED`` table (spec 4.2); each
verb's handler is a small function in ``HANDLERS``.  Handlers signal failure by
raising :class:`ReplyError`; the one conversion to a reply is in ``dispatch``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable, Union

from . import commands, replies, triggers
from .actions import Abort, Close, Log, StartTLS, Wait
from .replies import Reply, ReplyError
from .triggers import HELO_CAPABILITIES, Capabilities, Trigger

__all__ = [
    "Phase",
    "State",
    "Context",
    "ReadData",
    "ReadChunk",
    "DiscardChunk",
    "Authenticate",
    "Policy",
    "Output",
    "fired",
    "dispatch",
    "transaction_over",
    "KNOWN_VERBS",
    "UNIMPLEMENTED_VERBS",
]


class Phase(Enum):
    """Session states; the names appear in 503 replies (spec 4.1)."""

    HELO = "HELO"
    MAIL = "MAIL"
    RCPT = "RCPT"
    BDAT = "BDAT"


# HELP for the default port plan (spec 12.5); the server passes its own.
DEFAULT_HELP = replies.help_reply("3000-3099", "4000-4099", "5000-5099", "6000", "25465", "25587")


@dataclass(frozen=True, slots=True)
class Policy:
    """The embedder's answers inside the order of checks (spec 8.1, 9.1,
    10.4): its authorizer and rate limiter, as plain callables the shell built
    for one connection (user and client address bound, exceptions turned into
    "no").  The core only asks; the replies to a "no" are its own."""

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


# Replies, the actions the dispatcher asks for (Abort: the transaction is
# gone; Close; StartTLS; Wait: before the next reply; Log: a trigger fired),
# and reader switches.
Output = Union[Reply, Abort, Close, Log, StartTLS, Wait, ReadData, ReadChunk, DiscardChunk, Authenticate]
Result = tuple[State, list[Output]]
Handler = Callable[[State, list[str], Context], Result]


def fired(trigger: str, code: int, stage: str) -> Log:
    """The record of a client-requested error (a WARN; README "Asking for errors")."""
    fields: dict[str, object] = {"error_code": code, "trigger": trigger, "smtp_stage": stage}
    return Log("WARN", "SMTP error simulation triggered", fields)


ALL = frozenset(Phase)
ALLOWED: dict[str, frozenset[Phase]] = {
    "HELO": frozenset({Phase.HELO, Phase.MAIL, Phase.RCPT, Phase.BDAT}),
    "EHLO": frozenset({Phase.HELO, Phase.MAIL, Phase.RCPT, Phase.BDAT}),
    "AUTH": frozenset({Phase.MAIL}),
    "MAIL": frozenset({Phase.MAIL}),
    "RCPT": frozenset({Phase.RCPT}),
    "DATA": frozenset({Phase.RCPT}),
    "BDAT": frozenset({Phase.RCPT, Phase.BDAT}),
    "RSET": ALL,
    "NOOP": ALL,
    "QUIT": ALL,
    "STARTTLS": frozenset({Phase.HELO, Phase.MAIL}),
    "VRFY": ALL,
    "HELP": ALL,
}
KNOWN_VERBS = frozenset(ALLOWED)
# Verbs whose armed deferred trigger answers before the sequence check, and
# the phases where it does.  The trigger is what the client asked for, and
# RFC 3207 does not forbid STARTTLS inside a transaction: MAIL FROM with
# starttls454@… then STARTTLS gives 454 (README trigger table); without an
# armed trigger STARTTLS keeps its 503 there.  Not AUTH: RFC 4954 §4 forbids
# it during a transaction.  Not mid-BDAT: half a message has been sent.
TRIGGER_FIRST: dict[str, frozenset[Phase]] = {
    "STARTTLS": ALLOWED["STARTTLS"] | {Phase.RCPT},
}
# Well-known verbs we do not implement get 502, not 500 (spec 0.5).
UNIMPLEMENTED_VERBS = frozenset({"EXPN", "ETRN", "TURN", "ATRN", "VERB", "SEND", "SOML", "SAML"})


def _fire(state: State, verb: str, stage: str) -> Result | None:
    """The armed deferred trigger for ``verb``, if any, as the command's result."""
    armed = state.armed
    if armed is None or armed.verb != verb:
        return None
    return state, [armed.reply, fired(armed.source, armed.reply.code, stage)]


def transaction_over(state: State) -> State:
    """End of a transaction by acceptance or by a size/storage failure:
    envelope and armed trigger cleared (spec 6.5, 10.4)."""
    return replace(state, phase=Phase.MAIL, sender=None, recipients=(), armed=None)


def _reset(state: State) -> State:
    """RSET's reset: the transaction goes, triggers and capabilities stay (12.1)."""
    phase = Phase.HELO if state.phase is Phase.HELO else Phase.MAIL
    return replace(state, phase=phase, sender=None, recipients=())


def _helo(state: State, args: list[str], ctx: Context) -> Result:
    name = args[0]
    refusal = triggers.helo_trigger(name)
    if refusal is not None:
        return state, [refusal, fired(name, refusal.code, "HELO")]
    new = replace(_reset(state), phase=Phase.MAIL, caps=HELO_CAPABILITIES, helo_name=name)
    return new, [Abort(), Reply(250, (ctx.identity,))]


def _ehlo(state: State, args: list[str], ctx: Context) -> Result:
    name = args[0]
    refusal = triggers.helo_trigger(name)
    if refusal is not None:
        return state, [refusal, fired(name, refusal.code, "EHLO")]
    if triggers.ehlo_rejected(name):
        return state, [replies.EHLO_REJECTED]
    caps = triggers.ehlo_capabilities(name, state.tls, ctx.identity)
    new = replace(_reset(state), phase=Phase.MAIL, caps=caps, helo_name=name)
    assert caps.ehlo is not None
    out: list[Output] = [Abort()]
    if caps.delay:
        out.append(Wait(caps.delay))
    out.append(caps.ehlo)
    return new, out


def _auth(state: State, args: list[str], ctx: Context) -> Result:
    if state.user is not None:
        raise ReplyError(replies.AUTH_ALREADY)
    answer = _fire(state, "auth", "AUTH")
    if answer is not None:
        return answer
    mechanism = args[0].upper()
    if mechanism not in triggers.AUTH_ALL:
        raise ReplyError(replies.AUTH_UNSUPPORTED)
    return state, [Authenticate(mechanism, args[1] if len(args) > 1 else None)]


def _mail(state: State, args: list[str], ctx: Context) -> Result:
    path, params = commands.extract_path(args, "FROM:")
    armed: Trigger | None = None
    if path == "<>":  # the null reverse-path: bounces and DSNs (RFC 5321 §4.5.5)
        sender = ""
    else:
        sender = commands.checked(path, state.caps.smtputf8, replies.BAD_SENDER)
        armed = triggers.address_trigger(sender)
        if armed is not None and armed.verb == "mail":
            return state, [armed.reply, fired(sender, armed.reply.code, "MAIL")]
    size = commands.size_parameter(params)
    if size is not None and size > state.caps.size_limit:  # RFC 1870 §6.1
        raise ReplyError(replies.size_exceeded(state.caps.size_limit))
    policy = ctx.policy
    if policy is not None:  # authorizer, then rate limiter (spec 8.1, 18.4, 18.5)
        if not policy.can_send_from(sender):
            raise ReplyError(replies.AUTHZ_REFUSED)
        allowed, reason = policy.allow_message()
        if not allowed:
            raise ReplyError(replies.rate_limited(reason))
    new = replace(state, phase=Phase.RCPT, sender=sender, recipients=(), armed=armed)
    return new, [replies.MAIL_OK]


def _rcpt(state: State, args: list[str], ctx: Context) -> Result:
    path, _ = commands.extract_path(args, "TO:")
    if path == "<>":  # the null path is only a reverse-path (RFC 5321 §4.1.1.3)
        raise ReplyError(replies.SYNTAX)
    recipient = commands.checked(path, state.caps.smtputf8, replies.BAD_RECIPIENT)
    if len(state.recipients) >= ctx.max_recipients:
        raise ReplyError(replies.TOO_MANY_RCPTS)
    own = triggers.address_trigger(recipient)
    if own is not None and own.verb == "rcpt":
        return state, [own.reply, fired(recipient, own.reply.code, "RCPT")]
    answer = _fire(state, "rcpt", "RCPT")
    if answer is not None:
        return answer
    if ctx.policy is not None and not ctx.policy.can_send_to(recipient):  # spec 9.1, 18.5
        raise ReplyError(replies.AUTHZ_REFUSED)
    return replace(state, recipients=state.recipients + (recipient,)), [replies.RCPT_OK]


def _data(state: State, args: list[str], ctx: Context) -> Result:
    if not state.recipients:
        raise ReplyError(replies.NO_RECIPIENTS)
    answer = _fire(state, "data", "DATA")
    if answer is not None:
        return answer
    return state, [replies.DATA_GO, ReadData()]


def _bdat(state: State, args: list[str], ctx: Context) -> Result:
    if not state.recipients:
        raise ReplyError(replies.NO_RECIPIENTS)
    size, last = commands.bdat_arguments(args)
    return state, [ReadChunk(size, last)]


def _rset(state: State, args: list[str], ctx: Context) -> Result:
    return _fire(state, "rset", "RSET") or (_reset(state), [Abort(), replies.OK])


def _noop(state: State, args: list[str], ctx: Context) -> Result:
    return _fire(state, "noop", "NOOP") or (state, [replies.OK])


def _quit(state: State, args: list[str], ctx: Context) -> Result:
    state, out = _fire(state, "quit", "QUIT") or (state, [replies.BYE])
    return state, [*out, Close()]


def _starttls(state: State, args: list[str], ctx: Context) -> Result:
    # An armed starttls trigger has already answered (TRIGGER_FIRST).
    if state.tls:
        raise ReplyError(replies.TLS_ALREADY)
    return state, [replies.TLS_READY, StartTLS()]


def _vrfy(state: State, args: list[str], ctx: Context) -> Result:
    mailbox = commands.vrfy_mailbox(args)
    commands.validate_address(mailbox, state.caps.smtputf8)
    return state, [triggers.vrfy_reply(commands.normalise(mailbox))]


def _help(state: State, args: list[str], ctx: Context) -> Result:
    return state, [ctx.help]


HANDLERS: dict[str, Handler] = {
    "HELO": _helo,
    "EHLO": _ehlo,
    "AUTH": _auth,
    "MAIL": _mail,
    "RCPT": _rcpt,
    "DATA": _data,
    "BDAT": _bdat,
    "RSET": _rset,
    "NOOP": _noop,
    "QUIT": _quit,
    "STARTTLS": _starttls,
    "VRFY": _vrfy,
    "HELP": _help,
}
# Argument checks of spec 3.5 that are not part of a handler's own parsing.
_NEEDS_ARGUMENT = frozenset({"HELO", "EHLO", "AUTH", "MAIL", "RCPT", "VRFY"})


def dispatch(state: State, verb: str, args: list[str], ctx: Context) -> Result:
    """Run one command (spec 3.4 steps 3-6).  Never raises for client input."""
    result = _dispatch(state, verb, args, ctx)
    if verb == "BDAT":
        return _chunk_always_read(state, args, result)
    return result


def _chunk_always_read(before: State, args: list[str], result: Result) -> Result:
    """A BDAT whose size parses is followed by that many octets of chunk
    whatever its verdict (RFC 3030 §2), so a refused one must consume them
    too.  A chunk refused in the middle of a message fails the whole
    transaction (RFC 3030 §2): the message is dropped and the chunks still
    in the pipeline after it are read and refused, so none can complete it."""
    state, outputs = result
    size = commands.bdat_size(args)
    if size is None or any(isinstance(out, ReadChunk) for out in outputs):
        return result
    refusal = tuple(out for out in outputs if isinstance(out, (Reply, Log)))
    if before.phase is Phase.BDAT:
        return transaction_over(state), [Abort(), DiscardChunk(size, refusal)]
    return state, [DiscardChunk(size, refusal)]


def _dispatch(state: State, verb: str, args: list[str], ctx: Context) -> Result:
    handler = HANDLERS.get(verb)
    if handler is None:
        if verb in UNIMPLEMENTED_VERBS:
            return state, [replies.NOT_IMPLEMENTED]
        return state, [replies.UNKNOWN_COMMAND]
    if state.phase in TRIGGER_FIRST.get(verb, ()):
        answer = _fire(state, verb.lower(), verb)
        if answer is not None:
            return answer
    if state.phase not in ALLOWED[verb]:
        return state, [replies.bad_sequence(verb, state.phase.value)]
    if verb in _NEEDS_ARGUMENT and not args:
        return state, [replies.SYNTAX]
    try:
        return handler(state, args, ctx)
    except ReplyError as exc:
        return state, [exc.reply]
