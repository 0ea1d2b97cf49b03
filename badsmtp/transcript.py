"""Session transcripts: what each connection said and was told, for tests to
assert on ("the client sent QUIT after the 421", "the client waited for the
354", "the client retried RCPT").

The pure session reports what it processed through an optional recorder
(``Session(recorder=...)``, called only when one is given); the IO shell owns
the :class:`Recorder`, which adds the clock (``time.monotonic``, relative to
the connect) and the receive batches (one ``recv`` = one batch, so commands
of one batch arrived pipelined together).  What is recorded follows README,
Using badsmtp in your tests: AUTH arguments redacted, AUTH continuation lines
never, DATA/BDAT content never (only its size).

The records themselves are frozen values (:mod:`badsmtp.records`, re-exported
here).  :class:`Transcript` and its :class:`Recorder` share one private list
of raw tuples, so they live together in this module.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .auth import redact_auth_args
from .findings import Finding
from .records import (
    CommandRecord,
    ContentRecord,
    Exchange,
    FaultRecord,
    FindingRecord,
    Record,
    ReplyRecord,
    TLSRecord,
    group_exchanges,
    record_lines,
)
from .replies import Reply

__all__ = [
    "CommandRecord",
    "ContentRecord",
    "Exchange",
    "FaultRecord",
    "Finding",
    "FindingRecord",
    "Recorder",
    "ReplyRecord",
    "TLSRecord",
    "Transcript",
]

# After one of these, what follows on the wire may be message content or an
# AUTH continuation (a password): never parse it into commands.
_OPAQUE_AFTER = frozenset({"DATA", "BDAT", "AUTH"})


class Transcript:
    """One connection, as the server saw it.  Handler threads append while a
    test reads: every property works on a snapshot of the records."""

    def __init__(
        self,
        client_ip: str,
        client_port: int,
        port: int,
        role: str,
        tls: bool = False,
        on_close: Callable[[], None] | None = None,
        session_id: str = "",
    ) -> None:
        self.id = session_id  # the session_id of its log records
        self.client_ip = client_ip
        self.client_port = client_port
        self.port = port  # the listener's port
        self.role = role
        self.implicit_tls = tls
        self.tls = tls  # TLS in effect now (implicit, or after STARTTLS)
        self.closed_by: str | None = None  # "client" or "server"; None while open
        self.duration: float | None = None
        self.discarded_octets = 0
        self.started_at = time.time()  # the wall clock at the connect
        # Records past this many are not kept (findings are always kept):
        # the inspection API's bounded memory under a load test.
        self.event_limit: int | None = None
        self.truncated = False  # it reached the limit: later records were not kept
        self.accepted = 0  # messages accepted in it
        # Raw tuples of atoms, turned into records only when read: cheap to
        # append and, holding no containers, untracked by the cyclic GC, so a
        # long session does not slow every collection.
        self._raw: list[tuple[Any, ...]] = []
        self._closed = threading.Event()
        self._on_close = on_close

    # -- raw records ------------------------------------------------------------
    @property
    def events(self) -> tuple[Record, ...]:
        """Every record in order: commands, replies, content, TLS, and the
        faults the client asked for, where they fired."""
        return tuple(_record(raw) for raw in tuple(self._raw))

    def _of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [r for r in self.events if isinstance(r, kind)]

    # -- what a test asserts on ------------------------------------------------------
    @property
    def command_records(self) -> list[CommandRecord]:
        """Processed commands (not the discarded ones)."""
        return [c for c in self._of(CommandRecord) if not c.discarded]

    @property
    def commands(self) -> list[str]:
        """Verbs of the processed commands, in order."""
        return [c.verb for c in self.command_records]

    @property
    def command_lines(self) -> list[str]:
        return [c.line for c in self.command_records]

    @property
    def discarded(self) -> list[CommandRecord]:
        """Commands received but never processed (after a 421 or STARTTLS)."""
        return [c for c in self._of(CommandRecord) if c.discarded]

    @property
    def replies(self) -> list[ReplyRecord]:
        return self._of(ReplyRecord)

    @property
    def codes(self) -> list[int]:
        return [r.code for r in self.replies]

    @property
    def greeting(self) -> ReplyRecord | None:
        records = self.events
        return records[0] if records and isinstance(records[0], ReplyRecord) else None

    @property
    def exchanges(self) -> list[Exchange]:
        """Each processed command with the replies that followed it."""
        return group_exchanges(self.events)

    def exchange(self, verb: str, index: int = 0) -> Exchange:
        """The ``index``-th exchange whose command is ``verb``."""
        verb = verb.upper()
        found = [e for e in self.exchanges if e.verb == verb]
        if len(found) <= index:
            raise LookupError(
                f"no {verb} command #{index} in this session; commands were {self.commands}"
            )
        return found[index]

    def reply_to(self, verb: str, index: int = 0) -> ReplyRecord:
        """The (first) reply to the ``index``-th ``verb`` command."""
        exchange = self.exchange(verb, index)
        if exchange.reply is None:
            raise LookupError(f"the {exchange.command.line!r} command got no reply")
        return exchange.reply

    def count(self, verb: str) -> int:
        """How often the client issued ``verb`` (processed commands)."""
        verb = verb.upper()
        return sum(1 for c in self.command_records if c.verb == verb)

    def _first_reply(self, code: int) -> int:
        records = self.events
        for i, record in enumerate(records):
            if isinstance(record, ReplyRecord) and record.code == code:
                return i
        raise LookupError(f"no {code} reply in this session; replies were {self.codes}")

    def sent_after(self, code: int) -> list[str]:
        """Verbs the client sent after the first reply with ``code``, discarded
        ones included: after a 421 these are the commands that were already
        on their way (pipelined) when the server closed."""
        start = self._first_reply(code)
        return [r.verb for r in self.events[start + 1 :] if isinstance(r, CommandRecord)]

    def waited_for(self, code: int) -> bool:
        """Whether the client waited for the first reply with ``code`` before
        sending more: nothing it sent afterwards (command, or DATA content
        after a 354) arrived in the same receive batch as the command that
        got that reply."""
        start = self._first_reply(code)
        records = self.events
        batch = records[start].batch
        return not any(
            isinstance(r, (CommandRecord, ContentRecord)) and r.batch == batch
            for r in records[start + 1 :]
        )

    @property
    def findings(self) -> list[Finding]:
        """What the client did wrong, by the RFCs (README, What your client
        did wrong), in the order noted."""
        return [r.finding for r in self._of(FindingRecord)]

    @property
    def pipelined(self) -> list[tuple[str, ...]]:
        """Verbs of each receive batch that held more than one command
        (discarded commands included: they arrived in that batch)."""
        batches: dict[int, list[str]] = {}
        for c in self._of(CommandRecord):
            batches.setdefault(c.batch, []).append(c.verb)
        return [tuple(verbs) for _, verbs in sorted(batches.items()) if len(verbs) > 1]

    # -- lifetime -----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout: float = 5.0) -> Transcript:
        """Block until the server has finished with this connection."""
        if not self._closed.wait(timeout):
            raise TimeoutError(f"session still open after {timeout} s:\n{self}")
        return self

    def _finish(self, by: str, duration: float) -> None:
        if self._closed.is_set():
            return
        if self.closed_by is None:
            self.closed_by = by
        self.duration = duration
        self._closed.set()
        if self._on_close is not None:
            self._on_close()

    # -- display ---------------------------------------------------------------------
    def __str__(self) -> str:
        state = f"closed by {self.closed_by}" if self.closed else "open"
        tls = ", implicit TLS" if self.implicit_tls else ""
        head = f"session {self.client_ip}:{self.client_port} -> port {self.port} ({self.role}{tls}), {state}"
        return "\n".join([head, *self._lines()])

    def _lines(self) -> Iterator[str]:
        for record in self.events:
            yield from record_lines(record)

    def __repr__(self) -> str:
        return (
            f"<Transcript {self.client_ip}:{self.client_port}->{self.port} "
            f"commands={self.commands} codes={self.codes} closed_by={self.closed_by}>"
        )


class Recorder:
    """The shell's side of a transcript: implements the session's recorder
    hook and adds the clock and the receive batches."""

    __slots__ = ("_append", "_clock", "_content_at", "_full", "_last_verb", "_limit", "_raw",
                 "batch", "started", "transcript")  # fmt: skip

    def __init__(
        self, transcript: Transcript, started: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.transcript = transcript
        self.started = started
        self.batch = 0  # 0: before the first recv (the greeting)
        self._clock = clock
        self._content_at: tuple[int, float] | None = None
        self._last_verb = ""
        # Bound once: the calls below run for every command and reply (the
        # CLI records them for the inspection API, on its load-test path).
        self._raw = transcript._raw
        self._append = transcript._raw.append
        self._full = False  # past the transcript's event limit: records are counted
        self._limit = transcript.event_limit or sys.maxsize

    def _now(self) -> float:
        return self._clock() - self.started

    def _add(self, raw: tuple[Any, ...]) -> None:
        self._append(raw)

    def _drop(self, raw: tuple[Any, ...]) -> None:
        return None

    @property
    def full(self) -> bool:
        """The transcript reached its event limit: nothing but findings is
        kept, and the shell stops the session reporting the rest."""
        return self._full

    # -- called by the shell --------------------------------------------------------------
    def received(self, data: bytes) -> None:
        """One ``recv`` returned ``data`` (``b""``: the client closed).  The
        shell may count a receive itself (``batch += 1``) and call this only
        for the close and every 64th batch."""
        self.batch += 1
        if not data and self.transcript.closed_by is None:
            self.transcript.closed_by = "client"
        # Checked here, not per record; the shell calls this for every 64th
        # receive only (and the close): the limit may be passed by 64 batches.
        if len(self._raw) >= self._limit:
            self._append, self._full = self._drop, True
            self.transcript.truncated = True

    def sent(self, reply: Reply) -> None:
        """The shell sent ``reply`` itself (an internal error's 421)."""
        self.reply(reply, False)

    def finish(self, by: str = "server") -> None:
        self.transcript._finish(by, self._now())

    # -- called by the session (its recorder hook) ------------------------------------
    def command(self, words: list[str]) -> None:
        verb = words[0].upper()
        self._last_verb = verb
        if verb == "AUTH":  # never keep the initial response, not even here
            words = [words[0], *redact_auth_args(words[1:])]
        self._append((_COMMAND, tuple(words), self.batch, self._clock() - self.started, False))

    def too_long(self, length: int) -> None:
        self._last_verb = ""
        self._add((_TOO_LONG, length, self.batch, self._now()))

    def reply(self, reply: Reply, enhanced: bool) -> None:
        esc = reply.enhanced if enhanced else None
        self._append((_REPLY, reply.code, reply.lines, esc, self.batch, self._clock() - self.started))

    def framed(self, faults: str, writes: tuple[bytes, ...]) -> None:
        """The reply just recorded left under reply-framing ``faults``, in
        these ``writes`` (README, Breaking the replies)."""
        if not self._full:  # else that reply was not kept
            self.transcript._raw[-1] += (faults, writes)

    def fault(self, what: str, fields: dict[str, object]) -> None:
        """A fault the client asked for fired (a :class:`FaultRecord`)."""
        self._add((_FAULT, what, tuple(fields.items()), self.batch, self._now()))

    def finding(self, finding: Finding) -> None:
        """The session noted a compliance finding (kept past the event limit too)."""
        self.transcript._raw.append((_FINDING, finding, self.batch, self._now()))

    def content_read(self) -> None:
        if self._content_at is None:
            self._content_at = (self.batch, self._now())

    def content_end(self, size: int) -> None:
        batch, at = self._content_at or (self.batch, self._now())
        self._content_at = None
        self._add((_CONTENT, size, batch, at, self._now()))

    def discarded(self, data: bytes) -> None:
        """Bytes received but never processed.  Whole command lines become
        discarded commands, up to (and including) one after which content or
        an AUTH continuation may follow; the rest is only counted."""
        self.transcript.discarded_octets += len(data)
        if self._last_verb in _OPAQUE_AFTER:
            return
        now = self._now()
        for raw in data.split(b"\n"):
            words = raw.decode("utf-8", "replace").split()
            if not words:
                continue
            verb = words[0].upper()
            if verb == "AUTH":
                words = [words[0], *redact_auth_args(words[1:])]
            self._add((_COMMAND, tuple(words), self.batch, now, True))
            if verb in _OPAQUE_AFTER:
                return

    def tls_started(self, discarded: bytes) -> None:
        if discarded:
            self.discarded(discarded)
        self.transcript.tls = True
        self._last_verb = ""
        self._add((_TLS, self.batch, self._now()))


_COMMAND, _TOO_LONG, _REPLY, _CONTENT, _TLS, _FAULT, _FINDING = range(7)


def _record(raw: tuple[Any, ...]) -> Record:
    kind = raw[0]
    if kind == _COMMAND:
        words, batch, at, discarded = raw[1:]
        return CommandRecord(words[0].upper(), " ".join(words), batch, at, discarded)
    if kind == _REPLY:
        code, lines, esc, batch, at, *framed = raw[1:]
        return ReplyRecord(code, "\n".join(lines), esc, batch, at, *framed)
    if kind == _CONTENT:
        return ContentRecord(*raw[1:])
    if kind == _FAULT:
        return FaultRecord(*raw[1:])
    if kind == _FINDING:
        return FindingRecord(*raw[1:])
    if kind == _TOO_LONG:
        length, batch, at = raw[1:]
        return CommandRecord("", f"<{length} octets: line too long>", batch, at)
    return TLSRecord(*raw[1:])
