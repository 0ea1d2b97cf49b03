"""Command lines and their arguments: tokenising, MAIL/RCPT paths, address
validation (spec 3, 7), ESMTP parameters (RFC 1870) and BDAT sizes (RFC 3030).

Pure functions; a parse failure raises :class:`ReplyError` carrying the 501.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import lru_cache

from . import replies
from .replies import ReplyError

__all__ = [
    "split_command",
    "extract_path",
    "validate_address",
    "normalise",
    "checked",
    "size_parameter",
    "bdat_arguments",
    "bdat_size",
    "vrfy_mailbox",
]

# RFC 5321 §4.1.2 atext plus the dot (spec 7.3 allows dots anywhere).
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_LOCAL_ASCII = re.compile(rf"[{_ATEXT}.]+")
_DOMAIN_ASCII = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")


def split_command(line: str) -> tuple[str, list[str]]:
    """Verb (upper-cased) and arguments (case kept), split at runs of spaces
    and tabs (spec 3.3).  ``line`` is already trimmed and non-empty."""
    parts = line.split()
    return parts[0].upper(), parts[1:]


def extract_path(args: list[str], prefix: str) -> tuple[str, list[str]]:
    """The path after ``FROM:``/``TO:`` and the ESMTP parameters after it.

    The path may be glued to the colon or follow it as the next argument
    (spec 7.1, 0.2).  Angle brackets are stripped from both ends; ``<>`` is
    returned as ``"<>"`` so MAIL can recognise the null reverse-path."""
    if not args or not args[0][: len(prefix)].upper() == prefix:
        raise ReplyError(replies.SYNTAX)
    path = args[0][len(prefix):]
    rest = args[1:]
    if not path and rest:
        path, rest = rest[0], rest[1:]
    if path == "<>":
        return path, rest
    path = path.strip("<>")
    if not path:
        raise ReplyError(replies.SYNTAX)
    return path, rest


def _unicode_ok(text: str, marks: bool) -> bool:
    for ch in text:
        if ch < "\x80":
            continue
        cat = unicodedata.category(ch)
        if cat[0] in "LN" or (marks and cat[0] == "M"):
            continue
        return False
    return True


def _local_ok(local: str, smtputf8: bool) -> bool:
    if len(local) >= 3 and local[0] == '"' and local[-1] == '"':
        return True
    if local.isascii():
        return _LOCAL_ASCII.fullmatch(local) is not None
    if not smtputf8:
        return False
    ascii_part = "".join(ch for ch in local if ch < "\x80")
    return (not ascii_part or _LOCAL_ASCII.fullmatch(ascii_part) is not None) and _unicode_ok(
        local, marks=False
    )


def _domain_ok(domain: str) -> bool:
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        try:
            if literal[:5].upper() == "IPV6:":
                ipaddress.IPv6Address(literal[5:])
            else:
                ipaddress.IPv4Address(literal)
        except ValueError:
            return False
        return True
    if domain.isascii():
        return _DOMAIN_ASCII.match(domain) is not None
    # IDN: non-ASCII letters, digits and marks are always allowed (spec 7.3).
    labels = domain.split(".")
    return all(
        label
        and _unicode_ok(label, marks=True)
        and all(ch >= "\x80" or re.match(rf"[{_ATEXT}]", ch) for ch in label)
        for label in labels
    )


def validate_address(address: str, smtputf8: bool) -> None:
    """Raise the 501 unless ``address`` is valid per spec 7.3."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or not _local_ok(local, smtputf8) or not _domain_ok(domain):
        raise ReplyError(replies.SYNTAX)


@lru_cache(maxsize=4096)
def checked(address: str, smtputf8: bool) -> str:
    """``address`` validated (501 otherwise) and normalised.  Cached: load
    tests and real clients send the same few addresses again and again, and a
    pure function of its text is safe to remember (a 501 is not cached)."""
    validate_address(address, smtputf8)
    return normalise(address)


def normalise(address: str) -> str:
    """Local part as sent, domain lower-cased (spec 7.4)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def size_parameter(params: list[str]) -> int | None:
    """The value of a well-formed ``SIZE=`` parameter (RFC 1870 §6), else None."""
    for param in params:
        if param[:5].upper() == "SIZE=" and param[5:].isdigit() and param[5:].isascii():
            return int(param[5:])
    return None


def bdat_size(args: list[str]) -> int | None:
    """The chunk size of ``BDAT size …`` (RFC 3030 §2), or None if it does not parse."""
    if not args:
        return None
    digits = args[0].removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        return None
    return int(digits)


def bdat_arguments(args: list[str]) -> tuple[int, bool]:
    """``BDAT size [LAST]`` (RFC 3030 §2): the chunk size and whether it is last."""
    size = bdat_size(args)
    if size is None or len(args) > 1 and args[1].upper() != "LAST":
        raise ReplyError(replies.SYNTAX)
    return size, len(args) > 1


def vrfy_mailbox(args: list[str]) -> str:
    """The mailbox a VRFY names (spec 12.4 steps 1-3)."""
    text = " ".join(args)
    from email.utils import parseaddr  # lazy: VRFY is rare, email is slow to import

    _, addr = parseaddr(text)
    if "@" not in addr or any(c in addr for c in " <>"):
        addr = next((tok.strip("<>,'\"") for tok in text.split(" ") if "@" in tok), "")
    if "@" not in addr:
        raise ReplyError(replies.SYNTAX)
    return addr
