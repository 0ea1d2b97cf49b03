"""Fake SASL mechanism exchanges for AUTH (RFC 4954 §4).

No account exists: an exchange only extracts a username (and, for PLAIN and
LOGIN, a password) and the authenticator decides (README, Extending
badsmtp; the default one: badsmtp(1), ERROR TRIGGERS).  Each
mechanism is a generator: it yields the ``334`` challenges to send, receives
the client's continuation lines through ``.send()`` and returns
:class:`Credentials`, or raises :class:`ReplyError` with the reply that ends the
exchange.  Pure: no IO, no clock (the CRAM challenge text comes from the caller).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field

from .replies import AUTH_BAD_BASE64, AUTH_CANCELLED, AUTH_FAILED, Reply, ReplyError

__all__ = [
    "MECHANISMS",
    "Credentials",
    "User",
    "exchange",
    "failure_exchange",
    "pattern_authenticate",
    "redact_auth_args",
]

MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5", "CRAM-SHA256", "XOAUTH2")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an exchange extracted; ``password`` is None for CRAM-* and XOAUTH2
    (and for a LOGIN password that is not valid base64)."""

    mechanism: str
    username: str
    password: str | None


Exchange = Generator[Reply, bytes, Credentials]


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated user (README, Extending badsmtp)."""

    id: str
    username: str
    active: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)


# -- 334 challenges (3xx never carry an enhanced code, RFC 2034 §4) ---------
def _challenge(text: str) -> Reply:
    return Reply(334, (text,))


# RFC 4954 §4: an empty server challenge is "334 " (code, space, nothing else).
EMPTY_CHALLENGE = _challenge("")
USERNAME_PROMPT = _challenge("VXNlcm5hbWU6")  # base64("Username:")
PASSWORD_PROMPT = _challenge("UGFzc3dvcmQ6")  # base64("Password:")

# The error challenge Google's servers send before the final 535.
XOAUTH2_ERROR_JSON = '{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
XOAUTH2_ERROR = _challenge(base64.b64encode(XOAUTH2_ERROR_JSON.encode("ascii")).decode("ascii"))

_XOAUTH2_USER = re.compile(r"user=([^,\x01]+)")
_STRICT_B64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_CANCEL = b"*"
_REDACTED = "[redacted]"


# -- decoding helpers --------------------------------------------------------
def _b64(data: str | bytes) -> bytes:
    """Strict base64: standard alphabet, correct padding, nothing else
    (RFC 4648 §4); anything else is answered 501 Cannot decode response
    (RFC 4954 §4)."""
    raw = data.encode("ascii", errors="replace") if isinstance(data, str) else data
    # The pattern first: even with validate=True CPython accepts surplus
    # padding after a complete quantum ("YWJj=", "YWJj====").
    if not _STRICT_B64.fullmatch(raw):
        raise ReplyError(AUTH_BAD_BASE64)
    return base64.b64decode(raw, validate=True)


def _initial(initial: str) -> bytes:
    # RFC 4954 §4: a zero-length initial response is sent as a single "=".
    return b"" if initial == "=" else _b64(initial)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _ask(reply: Reply) -> Generator[Reply, bytes, bytes]:
    """Send one challenge and return the client's line; ``*`` alone cancels
    the exchange at any step (RFC 4954 §4: 501)."""
    line = yield reply
    if line == _CANCEL:
        raise ReplyError(AUTH_CANCELLED)
    return line


def _response(initial: str | None) -> Generator[Reply, bytes, bytes]:
    """The single decoded response of PLAIN and XOAUTH2: the initial response
    if there is one, else the answer to an empty ``334 `` challenge."""
    if initial is not None:
        return _initial(initial)
    return _b64((yield from _ask(EMPTY_CHALLENGE)))


def _username(raw: bytes) -> str:
    """A username must be non-empty: an empty one is a malformed exchange."""
    if not raw:
        raise ReplyError(AUTH_FAILED)
    return _text(raw)


# -- the mechanisms ----------------------------------------------------------
def _plain(initial: str | None, challenge: str) -> Exchange:
    """RFC 4616 §2: ``[authzid] NUL authcid NUL passwd``.  The password may
    itself contain NULs, so split at the first two only."""
    fields = (yield from _response(initial)).split(b"\x00", 2)
    if len(fields) != 3:
        raise ReplyError(AUTH_FAILED)
    return Credentials("PLAIN", _username(fields[1]), _text(fields[2]))


def _login(initial: str | None, challenge: str) -> Exchange:
    """The non-standard LOGIN mechanism (draft-murchison-sasl-login): an
    initial response is the username, so its prompt is skipped."""
    if initial is not None:
        raw_user = _initial(initial)
    else:
        raw_user = _b64((yield from _ask(USERNAME_PROMPT)))
    username = _username(raw_user)  # fail before prompting for a password
    line = yield from _ask(PASSWORD_PROMPT)
    try:
        password: str | None = _text(_b64(line))
    except ReplyError:
        password = None  # an undecodable password is passed as absent, not refused
    return Credentials("LOGIN", username, password)


def _cram(mechanism: str) -> Callable[[str | None, str], Exchange]:
    def run(initial: str | None, challenge: str) -> Exchange:
        """RFC 2195 §2: the client answers ``username SP digest``.  Any
        initial response is ignored (CRAM is server-first) and the digest is
        never checked: no account exists."""
        offer = _challenge(base64.b64encode(challenge.encode("utf-8")).decode("ascii"))
        answer = _b64((yield from _ask(offer)))
        user, space, _digest = answer.partition(b" ")
        if not space:
            raise ReplyError(AUTH_FAILED)
        return Credentials(mechanism, _username(user), None)

    return run


def _xoauth2(initial: str | None, challenge: str) -> Exchange:
    """Google's XOAUTH2: ``user={name}^Aauth=Bearer {token}^A^A``.  The
    username runs from ``user=`` to the next ``,`` or ``^A``; the
    bearer token is not interpreted."""
    match = _XOAUTH2_USER.search(_text((yield from _response(initial))))
    if match is None:
        raise ReplyError(AUTH_FAILED)
    return Credentials("XOAUTH2", match.group(1), None)


_EXCHANGES: dict[str, Callable[[str | None, str], Exchange]] = {
    "PLAIN": _plain,
    "LOGIN": _login,
    "CRAM-MD5": _cram("CRAM-MD5"),
    "CRAM-SHA256": _cram("CRAM-SHA256"),
    "XOAUTH2": _xoauth2,
}


def exchange(mechanism: str, initial: str | None, challenge: str) -> Exchange:
    """Start the exchange for ``mechanism`` (one of :data:`MECHANISMS`; the
    caller has already answered 504 to anything else).

    ``initial`` is the initial response from the AUTH line, if any;
    ``challenge`` the CRAM challenge text, e.g. ``<1735900000.4242@badsmtp.test>``.
    Prime the generator with ``next()``, send each yielded ``334`` and
    ``.send()`` the client's answer (bytes, line ending and trailing white space
    removed).  It returns :class:`Credentials` or raises :class:`ReplyError`
    (501 cancelled, 501 cannot decode, 535 malformed).
    """
    try:
        run = _EXCHANGES[mechanism.upper()]
    except KeyError:
        raise ValueError(f"unsupported SASL mechanism {mechanism!r}") from None
    return run(initial, challenge)


def failure_exchange(mechanism: str) -> Generator[Reply, bytes, None]:
    """The end of an exchange whose credentials the authenticator rejected.

    XOAUTH2: send the JSON error challenge, take the client's next
    line whatever it is (normally empty), then 535.  Every other mechanism:
    535 at once.
    """
    if mechanism.upper() == "XOAUTH2":
        yield XOAUTH2_ERROR
    raise ReplyError(AUTH_FAILED)


# -- the default authenticator (badsmtp(1), ERROR TRIGGERS) ------------------
def pattern_authenticate(username: str, password: str | None) -> User | None:
    """Reject a username containing ``badauth`` (case-sensitive); accept any
    other.  None means rejected.  The password is never looked at."""
    if "badauth" in username:
        return None
    return User(id=username, username=username, metadata={"auth_method": "pattern"})


def redact_auth_args(args: list[str]) -> list[str]:
    """AUTH arguments (without the verb) fit for a log (badsmtp(1), LOGGING): the
    mechanism stays, the initial response becomes ``[redacted]``.  Any further
    (invalid) argument is redacted too: it may well be a password."""
    return args[:1] + [_REDACTED] * (len(args) - 1)
