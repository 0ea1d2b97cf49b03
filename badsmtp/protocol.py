"""The pure command dispatcher: ``dispatch(state, verb, args, ctx)`` returns the
new state and what to do: replies, actions for the shell (:mod:`badsmtp.actions`)
and the reader to switch to.  No sockets, clocks or files.

Everything that decides *whether* a command runs is a table here: where
each verb is allowed (``ALLOWED``), which verbs an armed deferred trigger
answers and what wins over it (``verbs.GUARDS``), where a trigger answers
even out of sequence (``TRIGGER_FIRST``).  What a command does is its
handler in :mod:`badsmtp.verbs`.  Handlers signal failure by raising
:class:`ReplyError`; the one conversion to a reply is in ``dispatch``.
"""

from __future__ import annotations

from dataclasses import replace

from . import commands, replies
from .actions import Abort, Close, Log
from .replies import Reply, ReplyError
from .state import (
    DEFAULT_HELP,
    Authenticate,
    Context,
    DiscardChunk,
    Output,
    Phase,
    Policy,
    ReadChunk,
    ReadData,
    Result,
    State,
    fired,
    may_fire,
    transaction_over,
)
from .verbs import GUARDS, HANDLERS

__all__ = [
    "ALLOWED",
    "DEFAULT_HELP",
    "KNOWN_VERBS",
    "TRIGGER_FIRST",
    "UNIMPLEMENTED_VERBS",
    "Authenticate",
    "Context",
    "DiscardChunk",
    "Output",
    "Phase",
    "Policy",
    "ReadChunk",
    "ReadData",
    "State",
    "dispatch",
    "fired",
    "transaction_over",
]

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
# Well-known verbs we do not implement get 502, not 500 (RFC 5321 §4.2.4).
UNIMPLEMENTED_VERBS = frozenset({"EXPN", "ETRN", "TURN", "ATRN", "VERB", "SEND", "SOML", "SAML"})


# Argument checks that are not part of a handler's own parsing (RFC 5321 §4.1.1).
_NEEDS_ARGUMENT = frozenset({"HELO", "EHLO", "AUTH", "MAIL", "RCPT", "VRFY"})
# What follows an armed trigger's answer whatever it is: QUIT still closes.
_AFTER_TRIGGER: dict[str, tuple[Output, ...]] = {"QUIT": (Close(),)}


def dispatch(state: State, verb: str, args: list[str], ctx: Context) -> Result:
    """Run one command.  Never raises for client input."""
    result = _dispatch(state, verb, args, ctx)
    if verb == "BDAT":
        return _chunk_always_read(state, args, result)
    return result


def _dispatch(state: State, verb: str, args: list[str], ctx: Context) -> Result:
    handler = HANDLERS.get(verb)
    if handler is None:
        if verb in UNIMPLEMENTED_VERBS:
            return state, [replies.NOT_IMPLEMENTED]
        return state, [replies.UNKNOWN_COMMAND]
    if state.phase in TRIGGER_FIRST.get(verb, ()):
        state, answer = _fire(state, verb, ctx)
        if answer is not None:
            return answer
    if state.phase not in ALLOWED[verb]:
        return state, [replies.bad_sequence(verb, state.phase.value)]
    if verb in _NEEDS_ARGUMENT and not args:
        return state, [replies.SYNTAX]
    try:
        state, answer = _guarded(state, verb, args, ctx)
        return answer or handler(state, args, ctx)
    except ReplyError as exc:
        return state, [exc.reply]


def _guarded(
    state: State, verb: str, args: list[str], ctx: Context
) -> tuple[State, Result | None]:
    """The answer of an armed trigger for ``verb``, unless what wins over it
    (the verb's guard) answers first.  None when nothing is armed for it."""
    armed = state.armed
    if armed is None or armed.verb != verb.lower() or verb not in GUARDS:
        return state, None
    guard = GUARDS[verb]
    answer = guard and guard(state, args, ctx)
    return (state, answer) if answer else _fire(state, verb, ctx)


def _fire(state: State, verb: str, ctx: Context) -> tuple[State, Result | None]:
    """The armed deferred trigger for ``verb``, if any, as the command's
    result.  A counted one (``x<N>``) takes a use of the server's count
    each time it fires, but once for all the RCPT replies of a transaction;
    used up, it is disarmed and the command runs as if it never was."""
    armed = state.armed
    if armed is None or armed.verb != verb.lower():
        return state, None
    if not state.armed_used:
        if not may_fire(armed, ctx):
            return replace(state, armed=None), None
        if verb == "RCPT" and armed.times is not None:
            state = replace(state, armed_used=True)
    out: list[Output] = [armed.reply, fired(armed.source, armed.reply.code, verb)]
    return state, (state, out + list(_AFTER_TRIGGER.get(verb, ())))


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
