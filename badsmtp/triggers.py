"""The special inputs that make badsmtp misbehave on request (badsmtp(1),
ERROR TRIGGERS and EHLO KEYWORDS): ``verb<code>[_x.y.z]@`` addresses, EHLO
hostname keywords and the VRFY table.  Pure functions of their text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from . import replies
from .auth import MECHANISMS
from .config import TLS_FAULTS
from .replies import Reply, trigger_reply
from .replyfaults import ReplyFaults, reply_faults

__all__ = [
    "ADDRESS_VERBS",
    "AUTH_KEYWORDS",
    "NO_KEYWORDS",
    "Trigger",
    "TransferFault",
    "Capabilities",
    "HELO_CAPABILITIES",
    "DEFAULT_SIZE",
    "address_trigger",
    "transfer_fault",
    "helo_trigger",
    "ehlo_capabilities",
    "vrfy_reply",
]

DEFAULT_SIZE = 10_485_760
SIZE_MIN, SIZE_MAX = 1_000, 10_000_000
DLAY_MAX = 605
# The keywords that offer one mechanism only (badsmtp(1), EHLO KEYWORDS).
AUTH_KEYWORDS: dict[str, tuple[str, ...]] = {
    "authplain": ("PLAIN",),
    "authlogin": ("LOGIN",),
    "authcram": ("CRAM-MD5", "CRAM-SHA256"),
    "authoauth": ("XOAUTH2",),
}
# The keywords that leave a capability out of the EHLO reply, in the reply's
# order: keyword -> the capability's EHLO keyword (RFC 5321 §4.1.1.1).
NO_KEYWORDS: dict[str, str] = {
    "noauth": "AUTH",
    "no8bit": "8BITMIME",
    "nosize": "SIZE",
    "nopipelining": "PIPELINING",
    "nostarttls": "STARTTLS",
    "nochunking": "CHUNKING",
    "nosmtputf8": "SMTPUTF8",
    "noenhancedstatuscodes": "ENHANCEDSTATUSCODES",
}

# Verbs an address can name, in the order of badsmtp(1), ERROR TRIGGERS; every
# one but ``mail`` (and ``rcpt`` on a RCPT TO address) is deferred: armed by
# MAIL FROM, fired by its command later.
ADDRESS_VERBS = ("mail", "rcpt", "data", "rset", "noop", "quit", "starttls", "auth")
# re.ASCII: "decimal digits" are 0-9 only; a Unicode \d would read an
# SMTPUTF8 local part such as mail٥٥٠@ as a 550 trigger.
# After the code: ``x<N>`` (fail the first N times on this server, then
# succeed) and ``+<tag>`` (part of that count's key only).
_ADDRESS = re.compile(
    r"([a-z]+)(\d{3})(?:_(\d+\.\d+\.\d+))?(?:x(\d{1,3}))?(?:\+[a-z0-9_-]+)?@", re.ASCII
)
_HELO = re.compile(r"(?:helo|ehlo)(\d{3})(?:x(\d{1,3}))?\.", re.ASCII)
TIMES_MAX = 999
# Transfer faults, armed by MAIL FROM for its transaction (badsmtp(1), ERROR
# TRIGGERS): dropafter<octets>, noack, slowack<seconds>; counted and tagged
# like the other triggers.
_TRANSFER = re.compile(
    r"(dropafter|noack|slowack)(\d*)(?:x(\d{1,3}))?(?:\+[a-z0-9_-]+)?@", re.ASCII
)
DROP_MAX = 10**9  # octets: more than any message this server accepts
_SIZE = re.compile(r"size(\d+)", re.ASCII)
# dlay must stand as its own token: an accidental delay would be costly
# (badsmtp(1), EHLO KEYWORDS).
_DLAY = re.compile(r"(?:^|[._-])dlay(\d+)(?=$|[._-])", re.ASCII)


def _key_from_source(counted: Trigger | TransferFault) -> None:
    """A count's default key: the whole text that asked, lower-cased."""
    if not counted.key:
        object.__setattr__(counted, "key", counted.source.lower())


@dataclass(frozen=True, slots=True)
class Trigger:
    """An error a client asked for: the verb it answers, the reply, and the
    text that asked for it (for logs).  ``times``: it fires only the first
    that many times on the server, counted under ``key`` (the whole address
    or name, lower-cased, its tag included); None: every time."""

    verb: str
    reply: Reply
    source: str
    times: int | None = None
    key: str = ""

    def __post_init__(self) -> None:
        _key_from_source(self)


@dataclass(frozen=True, slots=True)
class TransferFault:
    """A fault in the transfer of one message, asked for in MAIL FROM:
    ``dropafter`` (close once ``amount`` octets of content arrived),
    ``noack`` (store, then close instead of the final 250) or ``slowack``
    (wait ``amount`` seconds before the final reply).  Counted like a
    :class:`Trigger`."""

    kind: str
    amount: int
    source: str
    times: int | None = None
    key: str = ""

    def __post_init__(self) -> None:
        _key_from_source(self)


@lru_cache(maxsize=1024)
def transfer_fault(address: str) -> TransferFault | None:
    """The transfer fault in a normalised sender address, if any."""
    m = _TRANSFER.match(address.lower())
    if m is None:
        return None
    kind, digits = m.group(1), m.group(2)
    times = _times(m.group(3))
    if times is False or (kind == "noack") != (digits == ""):
        return None  # noack takes no number; the others need one
    amount = int(digits) if digits else 0
    if kind == "slowack" and not 1 <= amount <= DLAY_MAX or amount > DROP_MAX:
        return None
    return TransferFault(kind, amount, address, times or None)


def _times(digits: str | None) -> int | None | bool:
    """``x<N>``'s N; False when it is out of range (then no trigger at all)."""
    if digits is None:
        return None
    return int(digits) if 1 <= int(digits) <= TIMES_MAX else False


@lru_cache(maxsize=4096)
def address_trigger(address: str) -> Trigger | None:
    """The trigger in a normalised address, if any (badsmtp(1), ERROR TRIGGERS)."""
    lowered = address.lower()
    m = _ADDRESS.match(lowered)
    if m is None or m.group(1) not in ADDRESS_VERBS:
        return None
    times = _times(m.group(4))
    if times is False:
        return None
    reply = trigger_reply(int(m.group(2)), m.group(3))
    return Trigger(m.group(1), reply, address, times or None)


def helo_trigger(name: str) -> Trigger | None:
    """``helo<ddd>[x<N>].`` / ``ehlo<ddd>[x<N>].`` at the start of a HELO/EHLO
    name.  Replies to HELO/EHLO never carry an enhanced code (RFC 2034 §3)."""
    lowered = name.lower()
    m = _HELO.match(lowered)
    if m is None:
        return None
    times = _times(m.group(2))
    if times is False:
        return None
    return Trigger("helo", trigger_reply(int(m.group(1)), None), name, times or None)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a HELO/EHLO switched on for the session (badsmtp(1), EHLO KEYWORDS)."""

    extended: bool = False
    enhanced: bool = False
    smtputf8: bool = False
    size_limit: int = DEFAULT_SIZE
    delay: float | None = None  # a dlay keyword; None = the listener's own delay
    ehlo: Reply | None = None  # the capability list to send
    tls_fault: str | None = None  # what STARTTLS does instead (badsmtp(1), TLS FAULTS)
    faults: ReplyFaults | None = None  # reply-framing keywords (badsmtp.replyfaults)


HELO_CAPABILITIES = Capabilities()


def _size(name: str) -> int | None:
    m = _SIZE.search(name)
    if m is None or int(m.group(1)) == 0:
        return None
    return min(max(int(m.group(1)), SIZE_MIN), SIZE_MAX)


def _auth_mechanisms(name: str) -> tuple[str, ...]:
    # Several auth<mech> keywords: the one starting furthest right wins
    # (badsmtp(1), EHLO KEYWORDS).
    best = -1
    mechs: tuple[str, ...] = MECHANISMS
    for keyword, chosen in AUTH_KEYWORDS.items():
        at = name.rfind(keyword)
        if at > best:
            best, mechs = at, chosen
    return mechs


def tls_fault(name: str) -> str | None:
    """The TLS fault keyword in a lower-case EHLO name; of several, the one
    starting furthest right wins, as for auth<mech>."""
    best, chosen = -1, None
    for keyword in TLS_FAULTS:
        at = name.rfind(keyword)
        if at > best:
            best, chosen = at, keyword
    return chosen


def ehlo_capabilities(name: str, tls: bool, identity: str) -> Capabilities:
    """Capabilities for ``EHLO name``, keywords matched as substrings anywhere in
    the name (badsmtp(1), EHLO KEYWORDS).
    STARTTLS is never offered on an encrypted connection (RFC 3207 §4.2)."""
    name = name.lower()
    offered = [
        capability
        for keyword, capability in NO_KEYWORDS.items()
        if keyword not in name and not (tls and capability == "STARTTLS")
    ]
    size = _size(name) if "SIZE" in offered else None
    lines = [identity, *(_ehlo_line(capability, name, size) for capability in offered), "OK"]
    m = _DLAY.search(name)
    delay = float(min(int(m.group(1)), DLAY_MAX)) if m and int(m.group(1)) else None
    return Capabilities(
        extended=True,
        enhanced="ENHANCEDSTATUSCODES" in offered,
        smtputf8="SMTPUTF8" in offered,
        size_limit=size or DEFAULT_SIZE,
        delay=delay,
        ehlo=Reply(250, tuple(lines)),
        tls_fault=None if tls else tls_fault(name),
        faults=reply_faults(name),
    )


def _ehlo_line(capability: str, name: str, size: int | None) -> str:
    """The EHLO line for ``capability``: AUTH lists its mechanisms, SIZE its limit."""
    if capability == "AUTH":
        return "AUTH " + " ".join(_auth_mechanisms(name))
    if capability == "SIZE":
        return f"SIZE {size or DEFAULT_SIZE}"
    return capability


def ehlo_rejected(name: str) -> bool:
    """``reject``/``noehl`` anywhere in the name: answer EHLO with 502 (badsmtp(1),
    EHLO KEYWORDS)."""
    name = name.lower()
    return "reject" in name or "noehl" in name


def vrfy_reply(address: str) -> Reply:
    """The VRFY outcome for a valid, normalised address (badsmtp(1), ERROR TRIGGERS)."""
    local = address.rpartition("@")[0].lower()
    if local.startswith("exists"):
        return replies.vrfy_exists(address)
    if local.startswith("unknown"):
        return replies.VRFY_UNKNOWN
    if local.startswith("ambiguous"):
        return replies.VRFY_AMBIGUOUS
    return replies.VRFY_UNAVAILABLE
