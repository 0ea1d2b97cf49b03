"""The inspection API's JSON (badsmtp(1), INSPECTION API): messages of the
:class:`~badsmtp.inbox.Inbox` and session transcripts as plain dicts, with
Mailpit's key names where Mailpit has one (PascalCase item keys).  Read
from the transcripts' public records; nothing here touches a socket."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .records import (
    CommandRecord,
    ContentRecord,
    FaultRecord,
    FindingRecord,
    Record,
    ReplyRecord,
)

if TYPE_CHECKING:
    from .findings import Finding
    from .inbox import Entry, Inbox
    from .transcript import Transcript

__all__ = ["message_detail", "message_summary", "rfc3339", "session_detail", "session_summary"]


def rfc3339(seconds: float) -> str:
    """``2026-12-03T17:04:05.123Z``: UTC with milliseconds."""
    millis = int(seconds * 1000)
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000))
    return f"{whole}.{millis % 1000:03d}Z"


# -- messages -------------------------------------------------------------------------
def message_summary(inbox: Inbox, entry: Entry) -> dict[str, Any]:
    env = entry.env
    return {
        "ID": entry.id,
        "SessionID": entry.session_id,
        "From": env.sender,
        "To": list(env.recipients),
        "Size": env.size,
        "Created": rfc3339(entry.created),
        "Subject": inbox.subject(entry),
    }


def message_detail(inbox: Inbox, entry: Entry) -> dict[str, Any]:
    return {
        **message_summary(inbox, entry),
        "ClientIP": entry.client_ip,
        "Helo": entry.env.helo,
        "TLS": entry.env.tls,
        "User": entry.env.user,
        "Headers": inbox.headers(entry),
        "Stored": entry.stored,
    }


# -- sessions -------------------------------------------------------------------------
def session_summary(transcript: Transcript, events: tuple[Record, ...] | None = None) -> dict[str, Any]:
    events = transcript.events if events is None else events
    commands = sum(1 for e in events if isinstance(e, CommandRecord) and not e.discarded)
    findings = sum(1 for e in events if isinstance(e, FindingRecord))
    return {
        "ID": transcript.id,
        "ClientIP": transcript.client_ip,
        "ClientPort": transcript.client_port,
        "Port": transcript.port,
        "Role": transcript.role,
        "ImplicitTLS": transcript.implicit_tls,
        "TLS": transcript.tls,
        "Started": rfc3339(transcript.started_at),
        "Open": not transcript.closed,
        "ClosedBy": transcript.closed_by if transcript.closed else None,
        "Duration": transcript.duration,
        "Commands": commands,
        "Messages": transcript.accepted,
        "Findings": findings,
    }


def session_detail(transcript: Transcript, inbox: Inbox) -> dict[str, Any]:
    events = transcript.events
    return {
        **session_summary(transcript, events),
        "Events": [event(e) for e in events],
        "Pipelined": [list(verbs) for verbs in transcript.pipelined],
        "FindingsList": [
            {**finding(e.finding), "At": e.at, "Batch": e.batch}
            for e in events
            if isinstance(e, FindingRecord)
        ],
        "MessageIDs": inbox.session_ids(transcript.id),  # those still kept
        "DiscardedOctets": transcript.discarded_octets,
        "Truncated": transcript.truncated,
    }


def finding(f: Finding) -> dict[str, Any]:
    return {
        "Code": f.code,
        "RFC": f.rfc,
        "Command": f.command,
        "Explanation": f.explanation,
        "Severity": f.severity,
    }


def event(record: Record) -> dict[str, Any]:
    """One transcript record as an Event of the API."""
    head: dict[str, Any] = {"At": record.at, "Batch": record.batch}
    if isinstance(record, CommandRecord):
        return {"Type": "command", **head, "Verb": record.verb, "Line": record.line,
                "Discarded": record.discarded}  # fmt: skip
    if isinstance(record, ReplyRecord):
        return {"Type": "reply", **head, "Code": record.code, "Enhanced": record.enhanced,
                "Text": record.text, "Faults": record.faults}  # fmt: skip
    if isinstance(record, ContentRecord):
        return {"Type": "content", **head, "Size": record.size, "EndedAt": record.ended_at}
    if isinstance(record, FaultRecord):
        fields = {str(k): _plain(v) for k, v in record.fields}
        return {"Type": "fault", **head, "What": record.what, "Fields": fields}
    if isinstance(record, FindingRecord):
        return {"Type": "finding", **head, **finding(record.finding)}
    return {"Type": "tls", **head}


def _plain(value: object) -> object:
    """A fault field as JSON can carry it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)
