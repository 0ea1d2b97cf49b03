"""The verdicts on a message's content, as data: what happens when DATA's
final ``.`` or a BDAT chunk has been read, and when the store has answered.

Each function takes the session's state and the message being received (a
:class:`~badsmtp.batch.Transaction`) and returns the new state and the
outputs, exactly as a command's handler does (:mod:`badsmtp.verbs`): the
session applies them the same way.  An ``Abort`` drops the delivery
before the reply leaves, so that once the client reads an error nothing of
the message still exists.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from . import replies
from .actions import Abort, Accepted, Close, Commit, Envelope, Log, Wait
from .state import (
    Context,
    Phase,
    Result,
    State,
    fault_fired,
    fired,
    may_fire,
    transaction_over,
)

if TYPE_CHECKING:
    from .batch import Transaction
    from .replies import Reply

__all__ = ["chunk_read", "committed", "end_of_message", "envelope"]


def envelope(state: State, message: Transaction) -> Envelope:
    return Envelope(
        state.sender or "", state.recipients, state.helo_name, state.tls, state.user, message.size
    )


def end_of_message(state: State, message: Transaction, ctx: Context) -> Result:
    """The content is complete (RFC 5321 §4.1.1.4): too big, over the
    authorizer's quota, or committed (a pause until the store answers)."""
    if message.overflow:
        return _too_big(state, message)
    if ctx.policy is not None and 0 <= ctx.policy.quota() < message.size:
        return _failed(state, replies.QUOTA_EXCEEDED)
    return state, [Commit(envelope(state, message))]


def chunk_read(state: State, message: Transaction, last: bool, ctx: Context) -> Result:
    """A BDAT chunk has been read whole (RFC 3030 §2).  An armed ``data``
    trigger answers BDAT LAST alone: the chunks go, the envelope stays and
    so does the trigger (the client is expected to RSET)."""
    if message.overflow:
        return _too_big(state, message)
    if not last:
        return replace(state, phase=Phase.BDAT), [replies.OK]
    armed = state.armed
    if armed is not None and armed.verb == "data":
        if may_fire(armed, ctx):
            logged = fired(armed.source, armed.reply.code, "BDAT")
            return replace(state, phase=Phase.RCPT), [logged, Abort(), armed.reply]
        state = replace(state, armed=None)  # its count is used up
    return end_of_message(state, message, ctx)


def committed(state: State, error: Reply | None, ctx: Context) -> Result:
    """The store's answer to the Commit: stored and acknowledged, or the
    failure's reply (a failure of any step of this delivery).  A ``slowack``
    waits before that reply; a ``noack`` closes instead of the 250, the
    message stored: the lost acknowledgement behind duplicate sends."""
    fault = state.fault
    if fault is not None and fault.kind in ("noack", "slowack") and may_fire(fault, ctx):
        logged = fault_fired(fault)
        if fault.kind == "slowack":
            done, outputs = committed(replace(state, fault=None), error, ctx)
            return done, [logged, Wait(float(fault.amount)), *outputs]
        if error is None:
            return transaction_over(state, accepted=True), [logged, Accepted(), Close()]
    if error is not None:
        return _failed(state, error)
    return transaction_over(state, accepted=True), [replies.ACCEPTED, Accepted()]


def _failed(state: State, reply: Reply) -> Result:
    return transaction_over(state), [Abort(), reply]


def _too_big(state: State, message: Transaction) -> Result:
    """Over the SIZE the session allows (RFC 1870 §4): read to the end, refused."""
    limit = state.caps.size_limit
    fields: dict[str, object] = {"current_size": message.size, "max_size": limit}
    logged = Log("WARN", "Message size limit exceeded", fields)
    return transaction_over(state), [logged, Abort(), replies.size_exceeded(limit)]
