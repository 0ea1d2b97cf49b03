"""Helpers shared by the test modules (``from helpers import ...``)."""

from __future__ import annotations

import base64
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout: README.md, man/, examples/, scripts/


def split_command(line: str) -> tuple[str, list[str]]:
    """Verb (upper-cased) and arguments (case kept) of a trimmed, non-empty
    command line, split at runs of spaces and tabs as the session splits
    them: ``str.split()`` would also split at CR, NBSP, U+2028 and the like.
    Verbs are case-insensitive (RFC 5321 §2.4)."""
    words = [word for word in line.replace("\t", " ").split(" ") if word]
    return words[0].upper(), words[1:]


def b64(text: str | bytes) -> str:
    """Base64 of ``text`` (UTF-8), as a SASL client sends it (RFC 4954 §4)."""
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")
