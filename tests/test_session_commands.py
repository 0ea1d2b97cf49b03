"""The session's other commands, driven through the fake shell: the order
of commands (RFC 5321 §4.1.4), SIZE= and the recipient limit, unknown and
unimplemented verbs, RSET/NOOP/QUIT, VRFY, HELP, enhanced status codes on
every reply (RFC 2034), and how a timeout, a shutdown or the client's EOF ends
the session.  No sockets."""

from __future__ import annotations

import pytest
from fakeshell import (
    HOW,
    NO_RCPTS,
    UNKNOWN,
    Wire,
    data_wire,
    greeted,
    in_rcpt,
    phase,
    size_exceeded,
    without_findings,
)
from helpers import b64
from wire import ACCEPTED, BYE, GO_AHEAD, MAIL_OK, OK, RCPT_OK

from badsmtp import replies
from badsmtp.actions import Close, Send
from badsmtp.protocol import Context, Phase


# == sequence over the wire (RFC 5321 §4.1.4, §4.3.2) ==================================
def test_sequence_errors_on_the_wire() -> None:
    wire = Wire()
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
    assert wire.feed(b"MAIL\r\n") == b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
    assert wire.feed(b"DATA\r\n") == b"503 Bad sequence - DATA not allowed in HELO state\r\n"
    assert wire.feed(b"RSET\r\n") == b"250 OK\r\n"
    assert phase(wire) is Phase.HELO  # RSET does not skip the greeting exchange
    wire.feed(b"EHLO x\r\n")
    assert wire.feed(b"RCPT TO:<b@example.com>\r\n") == b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n"
    assert wire.feed(b"DATA\r\n") == b"503 5.5.1 Bad sequence - DATA not allowed in MAIL state\r\n"
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == MAIL_OK
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == b"503 5.5.1 Bad sequence - MAIL not allowed in RCPT state\r\n"
    assert wire.feed(b"AUTH PLAIN\r\n") == b"503 5.5.1 Bad sequence - AUTH not allowed in RCPT state\r\n"
    assert wire.feed(b"STARTTLS\r\n") == b"503 5.5.1 Bad sequence - STARTTLS not allowed in RCPT state\r\n"
    assert wire.feed(b"DATA\r\n") == NO_RCPTS
    assert wire.feed(b"BDAT 3 LAST\r\nxyz") == NO_RCPTS  # the refused chunk is read (RFC 3030 §2)
    assert wire.feed(b"RCPT TO:<b@example.com>\r\nBDAT 3\r\nabc") == RCPT_OK + OK
    assert wire.feed(b"DATA\r\n") == b"503 5.5.1 Bad sequence - DATA not allowed in BDAT state\r\n"
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == b"503 5.5.1 Bad sequence - MAIL not allowed in BDAT state\r\n"
    assert wire.feed(b"RCPT TO:<b@example.com>\r\n") == b"503 5.5.1 Bad sequence - RCPT not allowed in BDAT state\r\n"
    assert wire.feed(b"BDAT 0 LAST\r\n") == ACCEPTED
    assert wire.contents == [b"abc"]


# == SIZE= and recipients (RFC 1870 §6; RFC 5321 §4.1.1.3) ==============================
def test_size_parameter_refused_early() -> None:
    wire = greeted(b"EHLO size1000.example")
    assert wire.feed(b"MAIL FROM:<a@example.com> SIZE=1001\r\n") == size_exceeded(1000)
    assert wire.feed(b"RCPT TO:<b@example.com>\r\n") == b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n"
    assert wire.feed(b"MAIL FROM:<a@example.com> SIZE=1000\r\n") == MAIL_OK


def test_max_recipients() -> None:
    wire = greeted(ctx=Context(max_recipients=3))
    wire.feed(b"MAIL FROM:<a@example.com>\r\n")
    rcpts = b"".join(b"RCPT TO:<r%d@example.com>\r\n" % i for i in range(5))
    assert wire.feed(rcpts) == RCPT_OK * 3 + b"452 4.5.3 Too many recipients\r\n" * 2
    assert wire.feed(b"DATA\r\nx\r\n.\r\n") == GO_AHEAD + ACCEPTED
    assert wire.messages[0][0].recipients == ("r0@example.com", "r1@example.com", "r2@example.com")
    # The limit is per transaction.
    wire.feed(b"MAIL FROM:<a@example.com>\r\n")
    assert wire.feed(rcpts[: rcpts.index(b"RCPT TO:<r3")]) == RCPT_OK * 3


def test_max_recipients_exactly_reached_is_fine() -> None:
    wire = greeted(ctx=Context(max_recipients=1))
    wire.feed(b"MAIL FROM:<a@example.com>\r\n")
    assert wire.feed(b"RCPT TO:<r@example.com>\r\n") == RCPT_OK
    assert wire.feed(b"RCPT TO:<r@example.com>\r\n") == b"452 4.5.3 Too many recipients\r\n"


# == unknown and unimplemented verbs (RFC 5321 §4.2.4) ==================================
@pytest.mark.parametrize("verb", [b"EXPN", b"ETRN", b"TURN", b"ATRN", b"VERB", b"SEND", b"SOML", b"SAML", b"expn"])
def test_unimplemented_verbs(verb: bytes) -> None:
    wire = Wire()
    assert wire.feed(verb + b" x\r\n") == b"502 Command not implemented\r\n"
    wire = in_rcpt()
    assert wire.feed(verb + b"\r\n") == b"502 5.5.1 Command not implemented\r\n"
    assert phase(wire) is Phase.RCPT


@pytest.mark.parametrize("verb", [b"XYZZY", b"MAILFROM:<a@example.com>", b"HELLO", b"QUITX"])
def test_unknown_verbs(verb: bytes) -> None:
    wire = Wire()
    assert wire.feed(verb + b"\r\n") == b"500 Command not recognised\r\n"
    wire = greeted()
    assert wire.feed(verb + b"\r\n") == UNKNOWN


# == RSET / NOOP / QUIT (12.1-12.3) =================================================
def test_rset() -> None:
    wire = in_rcpt()
    assert wire.feed(b"RSET now\r\n") == OK
    assert wire.feed(b"RCPT TO:<b@example.com>\r\n") == b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n"
    assert wire.feed(b"DATA\r\n") == b"503 5.5.1 Bad sequence - DATA not allowed in MAIL state\r\n"


def test_noop() -> None:
    assert Wire().feed(b"NOOP\r\n") == b"250 OK\r\n"
    assert in_rcpt().feed(b"NOOP foo bar\r\n") == OK


@pytest.mark.parametrize("how", HOW)
def test_quit(how: str) -> None:
    wire = greeted()
    assert wire.feed_how(b"QUIT now\r\nNOOP\r\n", how) == BYE
    assert wire.closed and wire.session.closed
    assert Wire().feed(b"QUIT\r\n") == b"221 Bye\r\n"


def test_nothing_is_processed_after_quit() -> None:
    wire = in_rcpt()
    wire.feed(b"DATA\r\n")
    assert wire.feed(b"x\r\n.\r\nQUIT\r\nNOOP\r\n") == ACCEPTED + BYE
    assert wire.session.receive_data(b"NOOP\r\n") == []
    assert wire.session.receive_data(b"") == []


# == VRFY (RFC 5321 §4.1.1.6; badsmtp(1), ERROR TRIGGERS) =======================
@pytest.mark.parametrize(
    "line, plain",
    [
        (b"VRFY exists@example.com", b"250 exists@example.com User exists"),
        (b"VRFY Exists.User@Example.COM", b"250 Exists.User@example.com User exists"),
        (b'VRFY "Alice Example" <exists@example.com>', b"250 exists@example.com User exists"),
        (b"VRFY <exists-1@example.com>", b"250 exists-1@example.com User exists"),
        (b"VRFY unknown@example.com", b"551 User not local; please try forward path"),
        (b"VRFY ambiguous@example.com", b"553 Requested action not taken: mailbox name not allowed"),
        (b"VRFY anyone@example.com", b"550 Requested action not taken: mailbox unavailable"),
        (b"VRFY nobody", b"501 Syntax error in parameters"),
        (b"VRFY", b"501 Syntax error in parameters"),
    ],
)
def test_vrfy(line: bytes, plain: bytes) -> None:
    enhanced = {b"250": b"2.1.5 ", b"551": b"5.1.6 ", b"553": b"5.1.4 ", b"550": b"5.1.1 ", b"501": b"5.5.4 "}
    assert Wire().feed(line + b"\r\n") == plain + b"\r\n"  # before HELO/EHLO too
    assert greeted(b"HELO x").feed(line + b"\r\n") == plain + b"\r\n"
    wire = in_rcpt()
    assert wire.feed(line + b"\r\n") == plain[:4] + enhanced[plain[:3]] + plain[4:] + b"\r\n"
    assert phase(wire) is Phase.RCPT


# == HELP (RFC 5321 §4.1.1.8) ===================================================
HELP_LINES = (
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
    "tlsabort, then STARTTLS; implicit TLS: ports 25800-25804, in that order",
    "Broken replies: splitreplies bytereplies lfreplies longreplies mixedreplies",
    "Ports: 3000-3099 delay the greeting, 4000-4099 every command, and",
    "5000-5099 close the connection, by (port - first port) x 10 s;",
    "6000 closes at once; 25465 is implicit TLS; 25587 is for STARTTLS",
    "End of HELP",
)


def help_bytes(esc: str) -> bytes:
    last = len(HELP_LINES) - 1
    return "".join(f"214{'-' if i < last else ' '}{esc}{l}\r\n" for i, l in enumerate(HELP_LINES)).encode()


def test_help() -> None:
    ctx = Context(help=replies.help_reply("3000-3099", "4000-4099", "5000-5099", "6000", "25465", "25587"))
    assert Wire(ctx=ctx).feed(b"HELP\r\n") == help_bytes("")
    assert greeted(b"HELO x", ctx=ctx).feed(b"HELP MAIL\r\n") == help_bytes("")
    wire = in_rcpt(ctx=ctx)
    assert wire.feed(b"HELP\r\n") == help_bytes("2.0.0 ")
    assert wire.feed(b"help rcpt\r\n") == help_bytes("2.0.0 ")
    assert phase(wire) is Phase.RCPT
    assert greeted(b"EHLO noenhancedstatuscodes.x", ctx=ctx).feed(b"HELP\r\n") == help_bytes("")


# == enhanced codes on every server reply (RFC 2034 §3, RFC 3463) =====================
# After EHLO, in order; each (line, enhanced reply).  The same script after HELO
# gives the plain replies: the enhanced form minus its x.y.z.
EVERY_REPLY = [
    (b"NOOP", b"250 2.0.0 OK"),
    (b"RSET", b"250 2.0.0 OK"),
    (b"XYZZY", b"500 5.5.2 Command not recognised"),
    (b"EXPN x", b"502 5.5.1 Command not implemented"),
    (b"Q" * 5000, b"500 5.5.2 Command too long"),
    (b"RCPT TO:<a@example.com>", b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state"),
    (b"MAIL FROM:<bad>", b"501 5.5.4 Syntax error in parameters"),
    (b"MAIL FROM:", b"501 5.5.4 Syntax error in parameters"),
    (b"AUTH FOO", b"504 5.5.4 Authentication mechanism not supported"),
    (b"MAIL FROM:<a@example.com> SIZE=99999999", b"552 5.3.4 Message size exceeds fixed maximum of 10485760 bytes"),
    (b"MAIL FROM:<a@example.com>", b"250 2.1.0 OK"),
    (b"DATA", b"503 5.5.1 Bad sequence of commands"),
    (b"RCPT TO:<bad>", b"501 5.5.4 Syntax error in parameters"),
    (b"RCPT TO:<a\x01b@example.com>", b"501 5.1.3 Syntax error in parameters"),
    (b"RCPT TO:<b@example.com>", b"250 2.1.5 OK"),
    (b"RCPT TO:<c@example.com>", b"452 4.5.3 Too many recipients"),
    (b"VRFY exists@example.com", b"250 2.1.5 exists@example.com User exists"),
    (b"VRFY unknown@example.com", b"551 5.1.6 User not local; please try forward path"),
    (b"VRFY ambiguous@example.com", b"553 5.1.4 Requested action not taken: mailbox name not allowed"),
    (b"VRFY x@example.com", b"550 5.1.1 Requested action not taken: mailbox unavailable"),
    (b"DATA", b"354 End data with <CR><LF>.<CR><LF>"),
    (b"hi\r\n.", b"250 2.0.0 OK Message accepted for delivery"),
    (b"AUTH PLAIN " + b64("\0u\0p").encode(), b"235 2.7.0 Authentication successful"),
    (b"AUTH PLAIN", b"503 5.5.1 Already authenticated"),
    (b"STARTTLS", b"220 2.0.0 Ready to start TLS"),
]


def strip_enhanced(reply: bytes) -> bytes:
    code, rest = reply[:4], reply[4:]
    first = rest.split(b" ", 1)[0]
    if first.count(b".") == 2 and first.replace(b".", b"").isdigit():
        return code + rest.split(b" ", 1)[1]
    return reply


@pytest.mark.parametrize("ehlo", [b"EHLO client.example", b"HELO client.example", b"EHLO noenhancedstatuscodes.x"])
def test_enhanced_codes_on_every_reply(ehlo: bytes) -> None:
    wire = greeted(ehlo, ctx=Context(max_recipients=1))
    enhanced = ehlo == b"EHLO client.example"
    for line, reply in EVERY_REPLY:
        expected = reply if enhanced else strip_enhanced(reply)
        assert wire.feed(line + b"\r\n") == expected + b"\r\n", line


# == timeouts, shutdown and the client's EOF (RFC 5321 §3.8, §4.5.3.2) =============
@pytest.mark.parametrize(
    "method, text",
    [("timeout", b"421 4.4.2 Idle timeout, closing connection"), ("shutdown", b"421 4.3.2 Service shutting down")],
)
def test_timeout_and_shutdown(method: str, text: bytes) -> None:
    for wire, expected in ((Wire(), strip_enhanced(text)), (greeted(), text), (greeted(b"HELO x"), strip_enhanced(text))):
        actions = getattr(wire.session, method)()
        assert actions == [Send(expected + b"\r\n"), Close()]
        assert wire.session.closed
        assert getattr(wire.session, method)() == []


@pytest.mark.parametrize("method", ["timeout", "shutdown"])
def test_timeout_and_shutdown_abort_a_delivery(method: str) -> None:
    wire = data_wire()
    wire.feed(b"DATA\r\npartial\r\n")
    wire.run(getattr(wire.session, method)())
    assert wire.closed and wire.aborted == 1 and wire.messages == []


def test_client_eof_closes() -> None:
    wire = greeted()
    assert without_findings(wire.session.receive_data(b"")) == [Close()]
    assert wire.session.closed
