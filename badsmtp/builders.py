"""Builders for the special inputs (badsmtp(1), ERROR TRIGGERS and EHLO
KEYWORDS), so a test says what it wants instead of spelling the grammar by
hand::

    badsmtp.address("rcpt", 550, "5.1.1")        # 'rcpt550_5.1.1@example.com'
    badsmtp.ehlo_name(no=["pipelining"], size=100_000)
                                                 # 'nopipelining-size100000.example.com'
    badsmtp.helo_trigger_name(500)               # 'helo500.example.com'
    badsmtp.ehlo_name(tls="certexpired")         # 'certexpired.example.com'

Every builder refuses input the server would not understand (ValueError
with the reason), so a typo fails the test at once instead of silently
turning into an ordinary address.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from . import commands, replyfaults, triggers
from .config import TLS_FAULTS
from .replies import ReplyError

__all__ = [
    "ADDRESS_VERBS",
    "CAPABILITIES",
    "TRANSFER_FAULTS",
    "address",
    "ehlo_name",
    "fault_address",
    "helo_trigger_name",
]

ADDRESS_VERBS = triggers.ADDRESS_VERBS  # in the documented order, for error messages
# The capabilities a ``no...`` keyword switches off, by the name a test uses:
# the keyword without its ``no`` and the capability EHLO advertises
# (``8bit``, ``8bitmime``), plus the short ``enhanced``.
CAPABILITIES = {
    **{keyword[2:]: keyword for keyword in triggers.NO_KEYWORDS},
    **{capability.lower(): keyword for keyword, capability in triggers.NO_KEYWORDS.items()},
    "enhanced": "noenhancedstatuscodes",
}
# The ``auth...`` keywords, by the keyword without its ``auth`` (``cram``) and
# by the name of each mechanism it offers (``cram-md5``, ``cram-sha256``).
AUTH_KEYWORDS = {
    name: keyword
    for keyword, mechanisms in triggers.AUTH_KEYWORDS.items()
    for name in (keyword[4:], *(mechanism.lower() for mechanism in mechanisms))
}
_ENHANCED = re.compile(r"\d+\.\d+\.\d+")
_NEUTRAL = "client.example.com"


def _code(code: int | str) -> str:
    """Three digits.  An int must be 100-999 (``55`` is more likely a typo
    for 550 than a wish for 055); codes with leading zeros go as strings."""
    ok = _whole(code, 100, 999) or (
        isinstance(code, str) and len(code) == 3 and code.isascii() and code.isdigit()
    )
    if not ok:
        raise ValueError(
            f"reply code must be three digits (an int 100-999, or a string such as '050'), not {code!r}"
        )
    return str(code)


def _whole(value: object, low: int, high: int) -> bool:
    """An int from ``low`` to ``high``; ``True`` is not a number here."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _domain(domain: str) -> str:
    if not isinstance(domain, str) or not domain or "@" in domain or not _domain_ok(domain):
        raise ValueError(f"not a valid mail domain: {domain!r}")
    return domain


def _domain_ok(domain: str) -> bool:
    try:
        commands.validate_address(f"x@{domain}", smtputf8=True)
    except ReplyError:
        return False
    return True


def address(
    verb: str,
    code: int | str,
    enhanced: str | None = None,
    *,
    times: int | None = None,
    tag: str | None = None,
    domain: str = "example.com",
) -> str:
    """An address that makes ``verb`` fail with ``code`` (and the RFC 3463
    ``enhanced`` code ``x.y.z``), e.g. ``address("rcpt", 550, "5.1.1")`` →
    ``"rcpt550_5.1.1@example.com"``.

    ``mail`` fails the MAIL FROM that carries it; ``rcpt`` fails the RCPT TO
    that carries it (or, in MAIL FROM, every RCPT TO of the transaction);
    the others, put in MAIL FROM, fail that later command.

    ``times=2`` fails only the first two times on the server, counted
    across connections, then the address is an ordinary one
    (``rcpt451x2@``); ``tag="t17"`` gives the count a key of its own
    (``rcpt451x2+t17@``), so parallel tests never share one."""
    if not isinstance(verb, str) or verb.lower() not in ADDRESS_VERBS:
        hint = " (use helo_trigger_name() for HELO/EHLO)" if str(verb).lower() in ("helo", "ehlo") else ""
        raise ValueError(
            f"unknown trigger verb {verb!r}{hint}; expected one of {', '.join(ADDRESS_VERBS)}"
        )
    local = verb.lower() + _code(code)
    if enhanced is not None:
        if not isinstance(enhanced, str) or not _ENHANCED.fullmatch(enhanced):
            raise ValueError(f"enhanced status code must look like x.y.z (digits), not {enhanced!r}")
        local += "_" + enhanced
    return f"{local}{_times(times)}{_tag(tag)}@{_domain(domain)}"


TRANSFER_FAULTS = ("dropafter", "noack", "slowack")
_AMOUNTS = {"dropafter": (0, triggers.DROP_MAX), "slowack": (1, triggers.DLAY_MAX)}


def fault_address(
    fault: str,
    amount: int | None = None,
    *,
    times: int | None = None,
    tag: str | None = None,
    domain: str = "example.com",
) -> str:
    """A MAIL FROM address that arms a transfer fault for its transaction
    (badsmtp(1), Transfer faults): ``fault_address("dropafter", 100)`` →
    ``"dropafter100@example.com"``, ``fault_address("noack", times=1)`` →
    ``"noackx1@example.com"``, ``fault_address("slowack", 30)``."""
    if fault not in TRANSFER_FAULTS:
        raise ValueError(f"unknown transfer fault {fault!r}; expected one of {', '.join(TRANSFER_FAULTS)}")
    if fault == "noack":
        if amount is not None:
            raise ValueError("noack takes no amount")
        number = ""
    elif _whole(amount, *_AMOUNTS[fault]):
        number = str(amount)
    else:
        what = "octets from 0" if fault == "dropafter" else f"seconds from 1 to {triggers.DLAY_MAX}"
        raise ValueError(f"{fault} needs a whole number of {what}, not {amount!r}")
    return f"{fault}{number}{_times(times)}{_tag(tag)}@{_domain(domain)}"


def _times(times: int | None) -> str:
    if times is None:
        return ""
    if not _whole(times, 1, triggers.TIMES_MAX):
        raise ValueError(f"times must be an int from 1 to {triggers.TIMES_MAX}, not {times!r}")
    return f"x{times}"


def _tag(tag: str | None) -> str:
    if tag is None:
        return ""
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", tag):
        raise ValueError(f"tag must be letters, digits, '-' and '_', not {tag!r}")
    return "+" + tag


def helo_trigger_name(
    code: int | str, *, times: int | None = None, domain: str = "example.com"
) -> str:
    """A HELO/EHLO name that makes the HELO or EHLO itself fail with ``code``
    (badsmtp(1), ERROR TRIGGERS): ``helo_trigger_name(500)`` →
    ``"helo500.example.com"``; ``times=2`` fails only the first two times
    on the server (``helo421x2.example.com``)."""
    return f"helo{_code(code)}{_times(times)}.{_neutral_domain(domain)}"


def ehlo_name(
    no: Iterable[str] = (),
    *,
    size: int | None = None,
    auth: str | None = None,
    delay: int | None = None,
    reject: bool = False,
    enhanced: bool = True,
    tls: str | None = None,
    replies: Iterable[str] = (),
    domain: str = "example.com",
) -> str:
    """An EHLO name whose keywords switch capabilities for the session
    (badsmtp(1), EHLO KEYWORDS).

    ``no``: capabilities to withdraw (``auth``, ``8bit``, ``size``,
    ``pipelining``, ``starttls``, ``chunking``, ``smtputf8``,
    ``enhancedstatuscodes``); ``size``: the SIZE limit to advertise
    (1000-10000000); ``auth``: offer only that mechanism (``plain``,
    ``login``, ``cram``, ``oauth``); ``delay``: seconds before every reply
    (1-605); ``reject``: answer EHLO with 502; ``enhanced=False``: no
    enhanced status codes; ``tls``: a TLS fault for the STARTTLS that follows
    (``certexpired``, ``certfuture``, ``certwronghost``, ``certselfsigned``,
    ``tlsabort``; badsmtp(1), TLS FAULTS).  ``replies``: reply-framing faults (``split``,
    ``byte``, ``lf``, ``long``, ``mixed``: ``replies="split"`` →
    ``"splitreplies.example.com"``).  ``ehlo_name(no=["pipelining", "auth"],
    size=100_000)`` → ``"nopipelining-noauth-size100000.example.com"``."""
    # ehlo_name(no="auth") means what it says.
    tokens = _withdrawn([no] if isinstance(no, str) else no, enhanced)
    if size is not None:
        tokens.append(_size_keyword(size, tokens))
    if auth is not None:
        tokens.append(_auth_keyword(auth, tokens))
    if delay is not None:
        tokens.append(_delay_keyword(delay))
    if reject:
        tokens.append("reject")
    if tls is not None:
        tokens.append(_tls_keyword(tls))
    tokens += _replies_keywords([replies] if isinstance(replies, str) else replies)
    domain = _neutral_domain(domain)
    return f"{'-'.join(tokens)}.{domain}" if tokens else domain


def _replies_keywords(names: Iterable[str]) -> list[str]:
    """The reply-framing keywords asked for (``split`` or ``splitreplies``), each once."""
    tokens: list[str] = []
    for name in names:
        keyword = str(name).lower().removesuffix("replies") + "replies"
        if keyword not in replyfaults.KEYWORDS:
            known = ", ".join(k.removesuffix("replies") for k in replyfaults.KEYWORDS)
            raise ValueError(f"unknown reply fault {name!r}; expected one of {known}")
        if keyword not in tokens:
            tokens.append(keyword)
    return tokens


def _withdrawn(names: Iterable[str], enhanced: bool) -> list[str]:
    """The ``no...`` keywords asked for, each once, in the order asked."""
    tokens: list[str] = []
    for name in names:
        keyword = CAPABILITIES.get(str(name).lower())
        if keyword is None:
            raise ValueError(
                f"unknown capability {name!r}; expected one of {', '.join(sorted(set(CAPABILITIES)))}"
            )
        if keyword not in tokens:
            tokens.append(keyword)
    if not enhanced and "noenhancedstatuscodes" not in tokens:
        tokens.append("noenhancedstatuscodes")
    return tokens


def _size_keyword(size: int, tokens: list[str]) -> str:
    if "nosize" in tokens:
        raise ValueError("size= contradicts no=['size']")
    if not _whole(size, triggers.SIZE_MIN, triggers.SIZE_MAX):
        raise ValueError(
            f"size must be an integer from {triggers.SIZE_MIN} to {triggers.SIZE_MAX}, not {size!r}"
        )
    return f"size{size}"


def _auth_keyword(auth: str, tokens: list[str]) -> str:
    if "noauth" in tokens:
        raise ValueError("auth= contradicts no=['auth']")
    keyword = AUTH_KEYWORDS.get(str(auth).lower())
    if keyword is None:
        raise ValueError(
            f"unknown AUTH mechanism {auth!r}; expected one of {', '.join(AUTH_KEYWORDS)}"
        )
    return keyword


def _tls_keyword(fault: str) -> str:
    if fault not in TLS_FAULTS:
        raise ValueError(f"unknown TLS fault {fault!r}; expected one of {', '.join(TLS_FAULTS)}")
    return fault


def _delay_keyword(delay: int) -> str:
    if not _whole(delay, 1, triggers.DLAY_MAX):
        raise ValueError(
            f"delay must be whole seconds from 1 to {triggers.DLAY_MAX}, not {delay!r}"
        )
    return f"dlay{delay}"


def _neutral_domain(domain: str) -> str:
    """``domain`` must not switch anything by itself: keywords are matched
    anywhere in the name, so ``nosize.org`` would."""
    _domain(domain)
    plain = triggers.ehlo_capabilities(_NEUTRAL, False, "x")
    if (
        triggers.ehlo_capabilities(domain, False, "x") != plain
        or triggers.ehlo_rejected(domain)
        or triggers.helo_trigger(domain) is not None
    ):
        raise ValueError(f"domain {domain!r} holds an EHLO keyword of its own; pick another")
    return domain
