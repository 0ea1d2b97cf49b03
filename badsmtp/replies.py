"""SMTP replies: the one table of wire texts, and how a reply is rendered.

Every reply the server generates itself lives here, with the RFC 3463
enhanced status code it carries while ENHANCEDSTATUSCODES is in effect
(RFC 2034 §3).  Triggered replies (badsmtp(1), ERROR TRIGGERS) are built by
:func:`trigger_reply` and carry exactly the code the client asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Reply", "ReplyError", "render", "trigger_reply", "TRIGGER_TEXTS"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: a code, one or more text lines and, optionally, the
    enhanced status code it carries while enhanced codes are in effect."""

    code: int
    lines: tuple[str, ...]
    enhanced: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def render(self, enhanced: bool) -> bytes:
        return render(self, enhanced)


class ReplyError(Exception):
    """The core's one internal error type: it carries the reply to send."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.lines[0])
        self.reply = reply


@lru_cache(maxsize=4096)
def render(reply: Reply, enhanced: bool) -> bytes:
    """Wire bytes of ``reply``; ``enhanced`` says whether the session has
    enhanced status codes in effect.  Multi-line replies use ``code-`` on
    every line but the last (RFC 5321 §4.2.1)."""
    code = "%03d" % reply.code
    esc = f"{reply.enhanced} " if enhanced and reply.enhanced else ""
    last = len(reply.lines) - 1
    out = [
        f"{code}{'-' if i < last else ' '}{esc}{line}\r\n" for i, line in enumerate(reply.lines)
    ]
    return "".join(out).encode("utf-8", "replace")


def _r(code: int, text: str, enhanced: str | None = None) -> Reply:
    return Reply(code, (text,), enhanced)


# -- the server's own replies --------------------------------------------------
GREETING = "{identity} ESMTP BadSMTP - The Reliably Unreliable Mail Server"
MAIL_OK = _r(250, "OK", "2.1.0")
RCPT_OK = _r(250, "OK", "2.1.5")
OK = _r(250, "OK", "2.0.0")
DATA_GO = _r(354, "End data with <CR><LF>.<CR><LF>")
ACCEPTED = _r(250, "OK Message accepted for delivery", "2.0.0")
TOO_MANY_RCPTS = _r(452, "Too many recipients", "4.5.3")
BYE = _r(221, "Bye", "2.0.0")
TLS_READY = _r(220, "Ready to start TLS", "2.0.0")
TLS_ALREADY = _r(554, "TLS already started", "5.5.1")
AUTH_OK = _r(235, "Authentication successful", "2.7.0")
AUTH_FAILED = _r(535, "Authentication failed", "5.7.8")
AUTH_INACTIVE = _r(535, "Authentication failed: account inactive", "5.7.8")
AUTH_CANCELLED = _r(501, "Authentication cancelled", "5.7.0")
AUTH_ALREADY = _r(503, "Already authenticated", "5.5.1")
AUTH_UNSUPPORTED = _r(504, "Authentication mechanism not supported", "5.5.4")
AUTH_BAD_BASE64 = _r(501, "Cannot decode response", "5.5.2")
AUTH_LINE_TOO_LONG = _r(500, "Authentication exchange line too long", "5.5.6")
VRFY_UNKNOWN = _r(551, "User not local; please try forward path", "5.1.6")
VRFY_AMBIGUOUS = _r(553, "Requested action not taken: mailbox name not allowed", "5.1.4")
VRFY_UNAVAILABLE = _r(550, "Requested action not taken: mailbox unavailable", "5.1.1")
AUTHZ_REFUSED = _r(550, "Requested action not taken: mailbox unavailable", "5.7.1")
STORE_UNAVAILABLE = _r(550, "Requested action not taken: mailbox unavailable", "5.2.1")
STORE_QUOTA = _r(452, "Requested action not taken: insufficient system storage", "4.2.2")
STORE_FAILED = _r(451, "Requested action aborted: local error in processing", "4.3.0")
QUOTA_EXCEEDED = _r(552, "Requested mail action aborted: exceeded storage allocation", "5.2.2")
UNKNOWN_COMMAND = _r(500, "Command not recognised", "5.5.2")
LINE_TOO_LONG = _r(500, "Command too long", "5.5.2")
SYNTAX = _r(501, "Syntax error in parameters", "5.5.4")
# A MAIL/RCPT address holding an octet no address may hold: a control
# character, or outside qtextSMTP inside quotes (RFC 5321 §4.1.2; RFC 3463
# §3.2: X.1.7 "Bad sender's mailbox address syntax", X.1.3 "Bad destination
# mailbox address syntax").  Other malformed addresses keep SYNTAX.
BAD_SENDER = _r(501, "Syntax error in parameters", "5.1.7")
BAD_RECIPIENT = _r(501, "Syntax error in parameters", "5.1.3")
NOT_IMPLEMENTED = _r(502, "Command not implemented", "5.5.1")
EHLO_REJECTED = _r(502, "Command not implemented")  # a reply to EHLO: never enhanced
NO_RECIPIENTS = _r(503, "Bad sequence of commands", "5.5.1")
SHUTTING_DOWN = _r(421, "Service shutting down", "4.3.2")
IDLE_TIMEOUT = _r(421, "Idle timeout, closing connection", "4.4.2")
# The reply to a bug inside badsmtp itself: any unexpected exception is
# answered with 421, recorded in ``BadSMTP.errors``, and the listener stays up
# (README, Embedding in tests).
INTERNAL_ERROR = _r(421, "Service not available, closing transmission channel", "4.3.0")
CONNECTION_REFUSED = _r(421, "Service not available, closing transmission channel")


def bad_sequence(verb: str, state: str) -> Reply:
    return _r(503, f"Bad sequence - {verb} not allowed in {state} state", "5.5.1")


def size_exceeded(limit: int) -> Reply:
    return _r(552, f"Message size exceeds fixed maximum of {limit} bytes", "5.3.4")


def vrfy_exists(address: str) -> Reply:
    return _r(250, f"{address} User exists", "2.1.5")


def rate_limited(reason: str) -> Reply:
    return _r(451, reason or "Requested action aborted: local error in processing", "4.7.1")


def connection_refused(reason: str) -> Reply:
    """The rate limiter's refusal on accept (README, Extending badsmtp): sent
    before the greeting, so never enhanced."""
    return _r(421, reason) if reason else CONNECTION_REFUSED


# -- triggered replies (badsmtp(1), ERROR TRIGGERS) ----------------------------
TRIGGER_TEXTS: dict[int, str] = {
    421: "Service not available, closing transmission channel",
    450: "Requested mail action not taken: mailbox unavailable",
    451: "Requested action aborted: local error in processing",
    452: "Requested action not taken: insufficient system storage",
    454: "Command not implemented",
    500: "Syntax error, command unrecognized",
    501: "Syntax error in parameters or arguments",
    502: "Command not implemented",
    503: "Bad sequence of commands",
    504: "Command parameter not implemented",
    521: "Machine does not accept mail",
    535: "Authentication failed",
    550: "Requested action not taken: mailbox unavailable",
    551: "User not local; please try forward path",
    552: "Requested mail action aborted: exceeded storage allocation",
    553: "Requested action not taken: mailbox name not allowed",
    554: "Transaction failed",
    571: "Blocked - see https://example.com/blocked",
}


@lru_cache(maxsize=1024)
def trigger_reply(code: int, enhanced: str | None) -> Reply:
    """The reply a client asked for: its code, the table text, and its own
    ``x.y.z`` (shown only while enhanced codes are in effect)."""
    return Reply(code, (TRIGGER_TEXTS.get(code, "Unknown error"),), enhanced)


def help_reply(
    greeting: str, command: str, drop: str, immediate: str, tls: str, starttls: str,
    faults: str = "25800-25804",
) -> Reply:  # fmt: skip
    """HELP (RFC 5321 §4.1.1.8): what a person at a telnet prompt needs.  The
    arguments are the port ranges (``start-end``) and single ports in force,
    and the TLS fault ports (badsmtp(1), TLS FAULTS)."""
    lines = (
        "BadSMTP - The Reliably Unreliable Mail Server",
        "Errors: MAIL FROM:<mail550@example.com> makes MAIL fail with 550, and",
        "mail550_5.1.1@example.com adds an enhanced code. The verbs rcpt, data,",
        "rset, noop, quit, starttls and auth in MAIL FROM fail that later command;",
        "RCPT TO:<rcpt550@example.com> fails that recipient alone.",
        "EHLO helo500.example.com fails the EHLO itself.",
        "Retries: rcpt451x2+tag@example.com fails twice on this server, then passes.",
        "Transfer faults in MAIL FROM: dropafter<octets>@, noack@, slowack<seconds>@",
        "Capabilities: words in the EHLO name switch them: noauth authplain",
        "authlogin authcram authoauth no8bit nosize size<n> nopipelining",
        "nostarttls nochunking nosmtputf8 noenhancedstatuscodes dlay<seconds> reject",
        "TLS faults: EHLO certexpired, certfuture, certwronghost, certselfsigned or",
        f"tlsabort, then STARTTLS; implicit TLS: ports {faults}, in that order",
        "Broken replies: splitreplies bytereplies lfreplies longreplies mixedreplies",
        f"Ports: {greeting} delay the greeting, {command} every command, and",
        f"{drop} close the connection, by (port - first port) x 10 s;",
        f"{immediate} closes at once; {tls} is implicit TLS; {starttls} is for STARTTLS",
        "End of HELP",
    )
    return Reply(214, lines, "2.0.0")
