"""What each command does once the dispatcher (:mod:`badsmtp.protocol`) has
checked its sequence and its argument, and no armed trigger answered it:
one small function per verb, in ``HANDLERS``.  The checks that come before an
armed trigger are the verb's *guard* (``GUARDS``).  A failure raises
:class:`ReplyError`; the dispatcher turns it into the reply.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from . import auth, commands, replies, triggers
from .actions import Abort, Close, StartTLS, Wait
from .replies import Reply, ReplyError
from .state import (
    Authenticate,
    Context,
    Handler,
    Output,
    Phase,
    ReadChunk,
    ReadData,
    Result,
    State,
    fired,
    may_fire,
    reset,
    tls_fault_fired,
)
from .triggers import HELO_CAPABILITIES, Trigger

__all__ = ["GUARDS", "HANDLERS"]

Guard = Callable[[State, list[str], Context], "Result | None"]


# -- guards: what wins over an armed trigger (README "Asking for errors") -------------
def _not_authenticated(state: State, args: list[str], ctx: Context) -> Result | None:
    if state.user is not None:  # RFC 4954 §4: one AUTH per session
        raise ReplyError(replies.AUTH_ALREADY)
    return None


def _has_recipients(state: State, args: list[str], ctx: Context) -> Result | None:
    if not state.recipients:  # RFC 5321 §4.1.1.4: DATA needs a recipient
        raise ReplyError(replies.NO_RECIPIENTS)
    return None


def _recipient(state: State, args: list[str], ctx: Context) -> str:
    """The RCPT TO address, checked (RFC 5321 §4.1.1.3) and within the limit."""
    path, _ = commands.extract_path(args, "TO:")
    if path == "<>":  # the null path is only a reverse-path
        raise ReplyError(replies.SYNTAX)
    recipient = commands.checked(path, state.caps.smtputf8, replies.BAD_RECIPIENT)
    if len(state.recipients) >= ctx.max_recipients:
        raise ReplyError(replies.TOO_MANY_RCPTS)
    return recipient


def _own_trigger(state: State, recipient: str, ctx: Context) -> Result | None:
    """A recipient's own ``rcpt`` trigger answers that recipient alone."""
    own = triggers.address_trigger(recipient)
    if own is not None and own.verb == "rcpt" and may_fire(own, ctx):
        return state, [own.reply, fired(recipient, own.reply.code, "RCPT")]
    return None


def _recipient_first(state: State, args: list[str], ctx: Context) -> Result | None:
    """A bad address, the recipient limit and a recipient's own ``rcpt``
    trigger win over the one armed by MAIL FROM: that one answers every
    *other* recipient (README "Asking for errors")."""
    return _own_trigger(state, _recipient(state, args, ctx), ctx)


# -- the verbs -----------------------------------------------------------------------------
def _refused(state: State, name: str, verb: str, ctx: Context) -> Result | None:
    """A ``helo<ddd>`` name's own answer, while its count lasts."""
    refusal = triggers.helo_trigger(name)
    if refusal is None or not may_fire(refusal, ctx):
        return None
    return state, [refusal.reply, fired(name, refusal.reply.code, verb)]


def _helo(state: State, args: list[str], ctx: Context) -> Result:
    name = args[0]
    refused = _refused(state, name, "HELO", ctx)
    if refused is not None:
        return refused
    new = replace(reset(state), phase=Phase.MAIL, caps=HELO_CAPABILITIES, helo_name=name)
    return new, [Abort(), Reply(250, (ctx.identity,))]


def _ehlo(state: State, args: list[str], ctx: Context) -> Result:
    name = args[0]
    refused = _refused(state, name, "EHLO", ctx)
    if refused is not None:
        return refused
    if triggers.ehlo_rejected(name):
        return state, [replies.EHLO_REJECTED]
    caps = triggers.ehlo_capabilities(name, state.tls, ctx.identity)
    new = replace(reset(state), phase=Phase.MAIL, caps=caps, helo_name=name)
    assert caps.ehlo is not None
    out: list[Output] = [Abort()]
    if caps.delay:  # dlay<N>: the reply itself waits too
        out.append(Wait(caps.delay))
    out.append(caps.ehlo)
    return new, out


def _auth(state: State, args: list[str], ctx: Context) -> Result:
    _not_authenticated(state, args, ctx)
    mechanism = args[0].upper()
    if mechanism not in auth.MECHANISMS:
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
            if may_fire(armed, ctx):
                return state, [armed.reply, fired(sender, armed.reply.code, "MAIL")]
            armed = None  # its count is used up: an ordinary sender
    size = commands.size_parameter(params)
    if size is not None and size > state.caps.size_limit:  # RFC 1870 §6.1
        raise ReplyError(replies.size_exceeded(state.caps.size_limit))
    _may_send(sender, ctx)
    fault = triggers.transfer_fault(sender) if sender else None
    new = replace(
        state, phase=Phase.RCPT, sender=sender, recipients=(), armed=armed, armed_used=False,
        fault=fault,
    )  # fmt: skip
    return new, [replies.MAIL_OK]


def _may_send(sender: str, ctx: Context) -> None:
    """The authorizer, then the rate limiter (README "Extending badsmtp")."""
    policy = ctx.policy
    if policy is None:
        return
    if not policy.can_send_from(sender):
        raise ReplyError(replies.AUTHZ_REFUSED)
    allowed, reason = policy.allow_message()
    if not allowed:
        raise ReplyError(replies.rate_limited(reason))


def _rcpt(state: State, args: list[str], ctx: Context) -> Result:
    recipient = _recipient(state, args, ctx)
    own = _own_trigger(state, recipient, ctx)
    if own is not None:
        return own
    if ctx.policy is not None and not ctx.policy.can_send_to(recipient):
        raise ReplyError(replies.AUTHZ_REFUSED)
    return replace(state, recipients=state.recipients + (recipient,)), [replies.RCPT_OK]


def _data(state: State, args: list[str], ctx: Context) -> Result:
    _has_recipients(state, args, ctx)
    return state, [replies.DATA_GO, ReadData()]


def _bdat(state: State, args: list[str], ctx: Context) -> Result:
    _has_recipients(state, args, ctx)
    size, last = commands.bdat_arguments(args)
    return state, [ReadChunk(size, last)]


def _rset(state: State, args: list[str], ctx: Context) -> Result:
    return reset(state), [Abort(), replies.OK]


def _noop(state: State, args: list[str], ctx: Context) -> Result:
    return state, [replies.OK]


def _quit(state: State, args: list[str], ctx: Context) -> Result:
    return state, [replies.BYE, Close()]


def _starttls(state: State, args: list[str], ctx: Context) -> Result:
    if state.tls:
        raise ReplyError(replies.TLS_ALREADY)
    fault = state.caps.tls_fault
    if fault is None:
        return state, [replies.TLS_READY, StartTLS()]
    log = tls_fault_fired(fault, "STARTTLS")
    if fault == "tlsabort":  # the 220, then the connection closes: no handshake
        return state, [replies.TLS_READY, log, Close()]
    return state, [replies.TLS_READY, log, StartTLS(fault)]


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
# The verbs an armed deferred trigger answers (README "Asking for errors"),
# with the checks that win over it (None: none do).  A handler makes the same
# checks itself: a guard runs only while a trigger for its verb is armed.
GUARDS: dict[str, Guard | None] = {
    "AUTH": _not_authenticated,
    "RCPT": _recipient_first,
    "DATA": _has_recipients,
    "RSET": None,
    "NOOP": None,
    "QUIT": None,
    "STARTTLS": None,
}
