"""The records of a session transcript (:mod:`badsmtp.transcript`): what a
test reads about one connection, as frozen values.  A command, a reply,
message content (its size only) or a completed TLS handshake, each with its
receive batch and its time since the connect; an :class:`Exchange` groups a
command with the replies that followed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .findings import Finding

__all__ = [
    "CommandRecord",
    "ContentRecord",
    "FaultRecord",
    "FindingRecord",
    "Exchange",
    "Record",
    "ReplyRecord",
    "TLSRecord",
    "group_exchanges",
    "record_lines",
]


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command line as received (AUTH initial response ``[redacted]``).

    ``discarded`` commands arrived but were never processed: they were
    pipelined after a command that closed the connection (a 421) or after
    STARTTLS (RFC 3207 §4.2: discarded, so nothing injected survives)."""

    verb: str
    line: str
    batch: int
    at: float
    discarded: bool = False

    @property
    def args(self) -> list[str]:
        return self.line.split()[1:]


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """A reply the server sent: ``code``, its text lines joined by ``\\n``,
    and the RFC 3463 code it carried (None when it carried none).  Under a
    reply-framing fault (README, Breaking the replies), ``faults`` names
    its keywords and ``writes`` holds the octets of each write exactly as
    sent; otherwise they are empty and the reply left as rendered."""

    code: int
    text: str
    enhanced: str | None
    batch: int
    at: float
    faults: str = ""
    writes: tuple[bytes, ...] = ()

    @property
    def wire(self) -> bytes:
        """The octets sent, when a reply-framing fault changed them."""
        return b"".join(self.writes)

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")

    @property
    def line(self) -> str:
        """The first line as on the wire, without CRLF: ``550 5.1.1 ...``."""
        esc = f"{self.enhanced} " if self.enhanced else ""
        return f"{self.code:03d} {esc}{self.lines[0]}"


@dataclass(frozen=True, slots=True)
class ContentRecord:
    """DATA content: only its size (unstuffed octets), never its text.
    ``batch``/``at`` say when its first octets arrived."""

    size: int
    batch: int
    at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault the client asked for fired here: ``what`` is the log
    message ("SMTP error simulation triggered", "SMTP transfer fault
    triggered", "TLS fault triggered") and ``fields`` its fields: the
    trigger, the code or the fault's name (README, Asking for errors)."""

    what: str
    fields: tuple[tuple[str, object], ...]
    batch: int
    at: float

    @property
    def trigger(self) -> str:
        """The address, name or keyword that asked for it."""
        found = dict(self.fields)
        return str(found.get("trigger") or found.get("tls_fault") or "")


@dataclass(frozen=True, slots=True)
class TLSRecord:
    """The STARTTLS handshake completed."""

    batch: int
    at: float


@dataclass(frozen=True, slots=True)
class FindingRecord:
    """A compliance finding (:class:`badsmtp.findings.Finding`), where the
    session noted it."""

    finding: Finding
    batch: int
    at: float


Record = CommandRecord | ReplyRecord | ContentRecord | TLSRecord | FaultRecord | FindingRecord


@dataclass(frozen=True, slots=True)
class Exchange:
    """A command and every reply that followed it before the next command
    (DATA: the 354, then the verdict on the content; AUTH: the 334s, then
    the result)."""

    command: CommandRecord
    replies: tuple[ReplyRecord, ...]
    content: ContentRecord | None = None

    @property
    def verb(self) -> str:
        return self.command.verb

    @property
    def reply(self) -> ReplyRecord | None:
        """The first reply (for DATA, the 354 or the error instead of it)."""
        return self.replies[0] if self.replies else None

    @property
    def final(self) -> ReplyRecord | None:
        """The last reply (for DATA, the verdict on the message)."""
        return self.replies[-1] if self.replies else None


def group_exchanges(records: Iterable[Record]) -> list[Exchange]:
    """Each processed command with the replies (and content) that followed
    it before the next one; discarded commands start none."""
    out: list[Exchange] = []
    command: CommandRecord | None = None
    got: list[ReplyRecord] = []
    content: ContentRecord | None = None
    for record in records:
        if isinstance(record, CommandRecord) and not record.discarded:
            if command is not None:
                out.append(Exchange(command, tuple(got), content))
            command, got, content = record, [], None
        elif isinstance(record, ReplyRecord) and command is not None:
            got.append(record)
        elif isinstance(record, ContentRecord):
            content = record
    if command is not None:
        out.append(Exchange(command, tuple(got), content))
    return out


def record_lines(r: Record) -> Iterator[str]:
    """A record as lines of a printed transcript (a reply: one per line,
    marked as on the wire)."""
    stamp = f"  +{r.at:8.4f}s [{r.batch:3d}]"
    if isinstance(r, CommandRecord):
        yield f"{stamp} C: {r.line}{'   (discarded)' if r.discarded else ''}"
    elif isinstance(r, ReplyRecord):
        esc = f"{r.enhanced} " if r.enhanced else ""
        for i, text in enumerate(r.lines):
            sep = "-" if i < len(r.lines) - 1 else " "
            yield f"{stamp} S: {r.code:03d}{sep}{esc}{text}"
        if r.faults:  # the octets as sent: each write when there are few
            shown = " + ".join(map(repr, r.writes)) if len(r.writes) <= 4 else repr(r.wire)
            yield f"{stamp} S! {r.faults}: {len(r.writes)} write(s): {shown}"
    elif isinstance(r, ContentRecord):
        yield f"{stamp} C: <{r.size} octets of message content>"
    elif isinstance(r, FaultRecord):
        yield f"{stamp} !! {r.what}: " + ", ".join(f"{k}={v}" for k, v in r.fields)
    elif isinstance(r, FindingRecord):
        yield f"{stamp} ?? {r.finding}"
    else:
        yield f"{stamp} -- TLS handshake completed"
