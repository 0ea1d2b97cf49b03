"""What one call into the session returns, and the message it is receiving.

A :class:`Batch` collects replies and actions in order.  Replies that
follow each other are joined into one Send, so a pipelined batch of
commands is answered in one write (RFC 2920 §3.1); an action that is not
a log ends the run of replies before it.  Notes for the edges (ErrorSent,
Accepted) leave right after the Send they follow.

A :class:`Transaction` is the message being received, as a frozen value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .actions import Action, Log, Send, SplitSend
from .findings import Finding
from .replies import Reply

__all__ = ["Batch", "Recorder", "Transaction"]


class Recorder(Protocol):
    """What a session reports while a transcript is recorded
    (:class:`badsmtp.transcript.Recorder`).  Optional: without one the
    session pays one ``is not None`` test per reply, command and DATA read."""

    def command(self, words: list[str]) -> None: ...
    def too_long(self, length: int) -> None: ...
    def reply(self, reply: Reply, enhanced: bool) -> None: ...
    def content_read(self) -> None: ...
    def content_end(self, size: int) -> None: ...
    def discarded(self, data: bytes) -> None: ...
    def tls_started(self, discarded: bytes) -> None: ...
    def framed(self, faults: str, writes: tuple[bytes, ...]) -> None: ...
    def fault(self, what: str, fields: dict[str, object]) -> None: ...
    def finding(self, finding: Finding) -> None: ...


class Batch:
    __slots__ = ("_actions", "_cuts", "_notes", "_out")

    def __init__(self) -> None:
        self._out: list[bytes] = []
        self._actions: list[Action] = []
        self._notes: list[Action] = []
        self._cuts: list[int] = []  # write boundaries in the joined replies (SplitSend.cuts)

    def send(self, data: bytes) -> None:
        """A reply's octets, joined with the replies next to it."""
        self._out.append(data)

    def send_cut(self, data: bytes, cuts: tuple[int, ...]) -> None:
        """A reply's octets that leave in several writes: a new one starts
        at each offset in ``cuts`` (a reply-framing fault): the batch leaves as a SplitSend."""
        at = sum(map(len, self._out))
        self._cuts.extend(at + cut for cut in cuts)
        self._out.append(data)

    def note(self, action: Action) -> None:
        """For the edges, right after the Send of the replies so far."""
        self._notes.append(action)

    def log(self, log: Log) -> None:
        # A log needs no flush: it never splits a run of replies in two writes.
        self._actions.append(log)

    def act(self, action: Action) -> None:
        self.flush()
        self._actions.append(action)

    def flush(self) -> None:
        if self._out:
            if self._cuts:
                self._actions.append(SplitSend(b"".join(self._out), tuple(self._cuts)))
                self._cuts = []
            else:
                self._actions.append(Send(b"".join(self._out)))
            self._out = []
        if self._notes:
            self._actions.extend(self._notes)
            self._notes = []

    def take(self) -> list[Action]:
        self.flush()
        actions, self._actions = self._actions, []
        return actions


@dataclass(frozen=True, slots=True)
class Transaction:
    """The message being received: octets of content so far (DATA unstuffed,
    BDAT chunks), whether they passed the size limit, and whether its
    delivery is open in the store."""

    size: int = 0
    overflow: bool = False
    open: bool = False

    def grown(self, octets: int, limit: int) -> tuple[Transaction, bool]:
        """``octets`` more; and whether this made it pass ``limit`` (RFC 1870
        §4: it is then refused, but read to its end).  Built directly, not
        with ``dataclasses.replace``: this runs for every piece of content."""
        size = self.size + octets
        if size > limit and not self.overflow:
            return Transaction(size, True, self.open), True
        return Transaction(size, self.overflow, self.open), False

    def closed(self) -> Transaction:
        """The same message with its delivery no longer open."""
        return Transaction(self.size, self.overflow, False)
