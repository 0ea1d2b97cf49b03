"""Compliance findings: what a client did wrong, by the RFCs (README, What
your client did wrong).

A finding never changes a reply: badsmtp misbehaves only when asked.  The
session (pure) notes each one as a :class:`Finding`; the shell logs it as
one WARN record (``SMTP client protocol finding``) and the transcript
keeps it (``transcript.findings``, ``server.findings``).

Each code has one entry in :data:`CATALOGUE`: the RFC section it cites and
its class, ``error`` (a protocol violation) or ``warning`` (allowed, but
unwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CATALOGUE", "Finding", "finding"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One client protocol fault: a short ``code``, the ``rfc`` section it
    breaks, the ``command`` it concerns (the verb, ``DATA`` for content,
    ``""`` for the connection) and a one-line ``explanation``."""

    code: str
    rfc: str
    command: str
    explanation: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f" [{self.command}]" if self.command else ""
        return f"{self.severity} {self.code}{where}: {self.explanation} ({self.rfc})"

    def fields(self) -> dict[str, Any]:
        """The fields of its log record and of its JSON (README, What your
        client did wrong)."""
        return {
            "code": self.code,
            "rfc": self.rfc,
            "command": self.command,
            "explanation": self.explanation,
            "severity": self.severity,
        }


# code -> (RFC section, class)
CATALOGUE: dict[str, tuple[str, str]] = {}


def finding(code: str, command: str, explanation: str) -> Finding:
    """The finding ``code`` (one of :data:`CATALOGUE`) about ``command``."""
    rfc, severity = CATALOGUE[code]
    return Finding(code, rfc, command, explanation, severity)
