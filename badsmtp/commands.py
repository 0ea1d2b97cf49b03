"""Command lines and their arguments: tokenising, MAIL/RCPT paths, address
validation (RFC 5321 §4.1.2, RFC 6531 §3.3), ESMTP parameters (RFC 1870) and
BDAT sizes (RFC 3030).

Pure functions; a parse failure raises :class:`ReplyError` carrying the 501.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from functools import lru_cache

from . import replies
from .replies import Reply, ReplyError

__all__ = [
    "extract_path",
    "validate_address",
    "normalise",
    "checked",
    "size_parameter",
    "bdat_arguments",
    "bdat_size",
    "vrfy_mailbox",
]

# RFC 5321 §4.1.2 atext plus the dot, which a local part may hold anywhere here
# (leading, trailing and repeated dots included).
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_LOCAL_ASCII = re.compile(rf"[{_ATEXT}.]+")
_DOMAIN_ASCII = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
# RFC 5321 §4.1.2 Quoted-string: qtextSMTP (%d32-126 but '"' and '\') or a
# quoted pair (backslash, then %d32-126).  RFC 6531 §3.3 adds UTF-8 to qtextSMTP
# under SMTPUTF8; the C1 controls U+0080-U+009F (category Cc) stay out, as the
# C0 ones do: no control character ever reaches a stored header.  (The UTF-8
# class is spelt as what it leaves out, the same set as [ !#-\[\]-~\xa0-\U0010ffff]:
# a range up to U+10FFFF takes the re compiler milliseconds at every start.)
_QUOTED_ASCII = re.compile(r'"(?:[ !#-\[\]-~]|\\[ -~])+"')
_QUOTED_UTF8 = re.compile(r'"(?:[^\x00-\x1f"\\\x7f-\x9f]|\\[ -~])+"')
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: category Cc


def extract_path(args: list[str], prefix: str) -> tuple[str, list[str]]:
    """The path after ``FROM:``/``TO:`` and the ESMTP parameters after it.

    The path may be glued to the colon or follow it as the next argument
    (``MAIL FROM: <a@example.com>``).  Angle brackets are stripped from both ends; ``<>`` is
    returned as ``"<>"`` so MAIL can recognise the null reverse-path.  A
    missing prefix or path is a malformed command (501 5.5.4); a path that is
    only brackets comes back empty, for the caller's address check to refuse."""
    if not args or not args[0][: len(prefix)].upper() == prefix:
        raise ReplyError(replies.SYNTAX)
    path = args[0][len(prefix):]
    rest = args[1:]
    if not path and rest:
        path, rest = rest[0], rest[1:]
    if not path:
        raise ReplyError(replies.SYNTAX)
    return path if path == "<>" else path.strip("<>"), rest


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
    if local[0] == '"':
        return (_QUOTED_UTF8 if smtputf8 else _QUOTED_ASCII).fullmatch(local) is not None
    if local.isascii():
        return _LOCAL_ASCII.fullmatch(local) is not None
    if not smtputf8:
        return False
    ascii_part = "".join(ch for ch in local if ch < "\x80")
    return (not ascii_part or _LOCAL_ASCII.fullmatch(ascii_part) is not None) and _unicode_ok(
        local, marks=False
    )


def _literal_ok(literal: str) -> bool:
    """An address literal's inside (RFC 5321 §4.1.3): IPv4, or ``IPv6:``."""
    ipv6 = literal[:5].upper() == "IPV6:"
    if ipv6 and "%" in literal:  # IPv6-addr has no zone (ipaddress would take any text after "%")
        return False
    try:
        ipaddress.IPv6Address(literal[5:]) if ipv6 else ipaddress.IPv4Address(literal)
    except ValueError:
        return False
    return True


def _domain_ok(domain: str) -> bool:
    if domain.startswith("[") and domain.endswith("]"):
        return _literal_ok(domain[1:-1])
    if domain.isascii():
        return _DOMAIN_ASCII.match(domain) is not None
    # IDN: non-ASCII letters, digits and marks are allowed, with or without SMTPUTF8.
    return all(
        label
        and _unicode_ok(label, marks=True)
        and all(ch >= "\x80" or re.match(rf"[{_ATEXT}]", ch) for ch in label)
        for label in domain.split(".")
    )


def validate_address(address: str, smtputf8: bool, forbidden: Reply = replies.SYNTAX) -> None:
    """Raise the 501 unless ``address`` is valid (RFC 5321 §4.1.2; non-ASCII
    local parts only under SMTPUTF8, RFC 6531 §3.3): ``forbidden``
    (the verb's own X.1.7/X.1.3, RFC 3463 §3.2) when it holds an octet no
    address may hold (a control character, or inside quotes anything but
    qtextSMTP and quoted pairs: RFC 5321 §4.1.2), the plain 501 otherwise."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or not _local_ok(local, smtputf8) or not _domain_ok(domain):
        octets = _CONTROL.search(address) is not None or local[:1] == '"'
        raise ReplyError(forbidden if octets else replies.SYNTAX)


@lru_cache(maxsize=4096)
def checked(address: str, smtputf8: bool, forbidden: Reply = replies.SYNTAX) -> str:
    """``address`` validated (a 501 otherwise, see :func:`validate_address`)
    and normalised.  Cached: load tests and real clients send the same few
    addresses again and again, and a pure function of its text is safe to
    remember (a 501 is not cached)."""
    validate_address(address, smtputf8, forbidden)
    return normalise(address)


def normalise(address: str) -> str:
    """Local part as sent, domain lower-cased: only the domain is
    case-insensitive (RFC 5321 §2.4)."""
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


# RFC 5322 §3.2.3 specials, less "." (obs-phrase, RFC 5322 §4.1, allows dots
# in display names: ``Alice J. Example``).  Quotes and parentheses open quoted
# strings and comments.
_PHRASE_SPECIALS = frozenset(')<>[]:;@\\,')
_CLOSE = {'"': '"', "(": ")"}


def _skip_quoted(text: str, i: int) -> int:
    """The index after the quoted string or (nested) comment opening at
    ``text[i]`` (RFC 5322 §3.2.2, §3.2.4), or -1 if it is never closed.
    Nesting is a counter, not recursion: no input can exhaust the stack."""
    close, depth, n = _CLOSE[text[i]], 1, len(text)
    i += 1
    while i < n:
        ch = text[i]
        if ch == "\\":  # a quoted pair (RFC 5322 §3.2.1)
            i += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i + 1
        elif ch == "(" and close == ")":
            depth += 1
        i += 1
    return -1


def _is_phrase(text: str) -> bool:
    """``text`` is an RFC 5322 §3.2.5 phrase (atoms, quoted strings and
    comments) or empty: one linear scan (``email.utils.parseaddr`` recurses
    once per nested ``(``, so a client could exhaust its stack)."""
    i, n = 0, len(text)
    while i < n:
        if text[i] in _CLOSE:
            i = _skip_quoted(text, i)
            if i < 0:
                return False
        elif text[i] in _PHRASE_SPECIALS:
            return False
        else:
            i += 1
    return True


def _name_addr(text: str) -> str | None:
    """The address of ``[display name] <address>`` (RFC 5322 §3.4 name-addr),
    or None when ``text`` is not of that form."""
    if not text.endswith(">"):
        return None
    start = text.rfind("<")
    address = text[start + 1 : -1]
    if start < 0 or not address or any(c in address for c in " <>"):
        return None
    return address if _is_phrase(text[:start]) else None


def vrfy_mailbox(args: list[str]) -> str:
    """The mailbox a VRFY names (RFC 5321 §4.1.1.6): the address of the
    whole string as ``[display name] <address>``, else the first token holding
    an ``@`` with ``<>,'"`` stripped from its ends (a bare address is such a
    token).  Bounded: linear scans only."""
    text = " ".join(args)
    address = _name_addr(text)
    if address is None:
        address = next((tok.strip("<>,'\"") for tok in args if "@" in tok), "")
    if "@" not in address:
        raise ReplyError(replies.SYNTAX)
    return address
