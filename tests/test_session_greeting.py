"""How a session opens and greets, driven through the fake shell: the 220
greeting, EHLO and HELO with their replies, the EHLO name's keywords (badsmtp(1),
EHLO KEYWORDS: capabilities, SIZE, dlay, reject), HELO/EHLO triggers, a repeated
HELO/EHLO, and the listener's behaviour when the connection opens (drops,
greeting delay, implicit TLS) as actions.  No sockets."""

from __future__ import annotations

import pytest
from fakeshell import (
    DEFAULT_LINES,
    Wire,
    ehlo_list,
    greeted,
    in_rcpt,
    phase,
    size_exceeded,
    without,
    without_findings,
)
from helpers import b64
from wire import ACCEPTED, EHLO_REPLY, GO_AHEAD, GREETING, MAIL_OK, OK, RCPT_OK

from badsmtp.actions import Action, Close, Send, StartTLS, Wait
from badsmtp.protocol import Context, Phase
from badsmtp.session import Session


# == greeting (RFC 5321 §3.1) ==================================================
def test_greeting() -> None:
    assert Wire().sent == GREETING


def test_greeting_uses_the_configured_identity() -> None:
    wire = Wire(ctx=Context(identity="mx.test.example"))
    assert wire.sent == b"220 mx.test.example ESMTP BadSMTP - The Reliably Unreliable Mail Server\r\n"
    assert wire.feed(b"HELO x\r\n") == b"250 mx.test.example\r\n"
    assert wire.feed(b"EHLO x\r\n").startswith(b"250-mx.test.example\r\n")


# == EHLO (RFC 5321 §4.1.1.1; badsmtp(1), EHLO KEYWORDS) ======================
def test_ehlo_default_list() -> None:
    wire = Wire()
    assert wire.feed(b"EHLO client.example\r\n") == EHLO_REPLY
    assert ehlo_list(*DEFAULT_LINES) == EHLO_REPLY
    assert phase(wire) is Phase.MAIL


def test_ehlo_on_an_encrypted_connection_omits_starttls() -> None:
    assert greeted(tls=True).sent == GREETING + ehlo_list(*without("STARTTLS"))
    assert greeted(tls=False).sent == GREETING + EHLO_REPLY  # twin


@pytest.mark.parametrize(
    "name, lines",
    [
        ("noauth.example.com", without("AUTH PLAIN LOGIN CRAM-MD5 CRAM-SHA256 XOAUTH2")),
        ("mx.noauth.example.com", without("AUTH PLAIN LOGIN CRAM-MD5 CRAM-SHA256 XOAUTH2")),
        ("authplain.example", ("AUTH PLAIN",) + without(DEFAULT_LINES[0])),
        ("authlogin.example", ("AUTH LOGIN",) + without(DEFAULT_LINES[0])),
        ("authcram.example", ("AUTH CRAM-MD5 CRAM-SHA256",) + without(DEFAULT_LINES[0])),
        ("authoauth.example", ("AUTH XOAUTH2",) + without(DEFAULT_LINES[0])),
        ("authplain-authoauth.example.com", ("AUTH XOAUTH2",) + without(DEFAULT_LINES[0])),
        ("authoauth-authplain.example.com", ("AUTH PLAIN",) + without(DEFAULT_LINES[0])),
        ("authcram.authlogin.authcram.x", ("AUTH CRAM-MD5 CRAM-SHA256",) + without(DEFAULT_LINES[0])),
        ("authplain-noauth.example", without(DEFAULT_LINES[0])),
        ("no8bit.example", without("8BITMIME")),
        ("nosize.example", without("SIZE 10485760")),
        ("nopipelining.example", without("PIPELINING")),
        ("nostarttls.example", without("STARTTLS")),
        ("nochunking.example", without("CHUNKING")),
        ("nosmtputf8.example", without("SMTPUTF8")),
        ("noenhancedstatuscodes.example", without("ENHANCEDSTATUSCODES")),
        ("noauth_nopipelining.example.com", without(DEFAULT_LINES[0], "PIPELINING")),
        ("size5000-no8bit.test", tuple("SIZE 5000" if l.startswith("SIZE") else l for l in without("8BITMIME"))),
        ("NOAUTH.NOCHUNKING.EXAMPLE", without(DEFAULT_LINES[0], "CHUNKING")),
        ("[192.0.2.1]", DEFAULT_LINES),
        ("client.example", DEFAULT_LINES),
    ],
)
def test_ehlo_keywords(name: str, lines: tuple[str, ...]) -> None:
    wire = Wire()
    assert wire.feed(f"EHLO {name} ignored args\r\n".encode()) == ehlo_list(*lines)


@pytest.mark.parametrize(
    "name, size",
    [
        ("size0.example", 10485760),
        ("size1.example", 1000),
        ("size999.example", 1000),
        ("size1000.example", 1000),
        ("size5000.example", 5000),
        ("size10000000.example", 10000000),
        ("size10000001.example", 10000000),
        ("size99999999999999999999999.example", 10000000),
        ("mx.size2000.size3000.example", 2000),
        ("sizeabc-size4000.example", 4000),
    ],
)
def test_size_keyword_is_advertised_and_enforced(name: str, size: int) -> None:
    wire = Wire()
    out = wire.feed(f"EHLO {name}\r\n".encode())
    assert f"250-SIZE {size}\r\n".encode() in out
    assert wire.feed(f"MAIL FROM:<a@example.com> SIZE={size + 1}\r\n".encode()) == size_exceeded(size)
    assert wire.feed(f"MAIL FROM:<a@example.com> SIZE={size}\r\n".encode()) == MAIL_OK


def test_nosize_keeps_the_default_limit() -> None:
    wire = greeted(b"EHLO nosize-size1000.example")
    assert b"SIZE" not in wire.sent
    assert wire.feed(b"MAIL FROM:<a@example.com> SIZE=10485761\r\n") == size_exceeded(10485760)


def test_switched_off_extensions_are_still_accepted() -> None:
    wire = greeted(b"EHLO noauth-nochunking-no8bit-nopipelining-nostarttls.example")
    out = wire.feed(
        b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\nBDAT 2 LAST\r\nhi"
    )
    assert out == MAIL_OK + RCPT_OK + ACCEPTED
    assert wire.feed(b"AUTH PLAIN " + b64("\0u\0p").encode() + b"\r\n") == (
        b"235 2.7.0 Authentication successful\r\n"
    )
    assert wire.feed(b"STARTTLS\r\n") == b"220 2.0.0 Ready to start TLS\r\n"


# -- dlay (badsmtp(1), EHLO KEYWORDS) -----------------------------------------------------------
@pytest.mark.parametrize("name, seconds", [("dlay30.example.com", 30), ("size5000-dlay2.test", 2),
                                           ("dlay700.example", 605), ("dlay605.example", 605)])
def test_dlay_waits_before_the_ehlo_reply_and_every_later_command(name: str, seconds: int) -> None:
    wire = Wire()
    # The EHLO reply waits (a pause), then every command waits before it is handled.
    assert wire.session.receive_data(f"EHLO {name}\r\n".encode()) == [Wait(seconds)]
    [reply] = wire.session.waited()
    assert isinstance(reply, Send) and reply.data.startswith(b"250-badsmtp.test\r\n")
    assert wire.session.receive_data(b"NOOP\r\n\r\nNOOP\r\n") == [Wait(seconds)]
    assert without_findings(wire.session.waited()) == [Send(OK), Wait(seconds)]
    assert wire.session.waited() == [Send(OK)]


@pytest.mark.parametrize("name", ["notdlay123.x", "dlayabc.x", "dlay-5.x", "dlay0.example", "dlay5x.example"])
def test_dlay_token_rules(name: str) -> None:
    wire = greeted(name.encode().join([b"EHLO ", b""]))
    wire.feed(b"NOOP\r\n")
    assert wire.waits == []


def test_helo_drops_dlay_and_restores_the_listener_delay() -> None:
    wire = greeted(b"EHLO dlay9.example", command_delay=2.0)
    assert wire.waits == [2.0, 9.0]  # the port's delay, then dlay before the reply
    wire.feed(b"NOOP\r\n")
    assert wire.waits[-1] == 9.0
    wire.feed(b"HELO plain.example\r\nNOOP\r\n")
    assert wire.waits[-2:] == [9.0, 2.0]


# -- reject / noehl ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["reject.example", "mx.noehl.example", "rejected-mail.example.org"])
def test_ehlo_reject_gets_502_and_stays_in_helo(name: str) -> None:
    wire = Wire()
    assert wire.feed(f"EHLO {name}\r\n".encode()) == b"502 Command not implemented\r\n"
    assert phase(wire) is Phase.HELO
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == (
        b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
    )
    assert wire.feed(f"HELO {name}\r\n".encode()) == b"250 badsmtp.test\r\n"  # the fallback works
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == b"250 OK\r\n"


def test_ehlo_reject_later_changes_nothing() -> None:
    wire = in_rcpt()
    assert wire.feed(b"EHLO reject.example\r\n") == b"502 Command not implemented\r\n"  # never enhanced
    assert wire.feed(b"RCPT TO:<more@example.com>\r\n") == RCPT_OK  # transaction and caps kept


# == HELO (RFC 5321 §4.1.1.1) =====================================================
def test_helo() -> None:
    wire = Wire()
    assert wire.feed(b"HELO client.example\r\n") == b"250 badsmtp.test\r\n"
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == b"250 OK\r\n"
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == (
        b"503 Bad sequence - MAIL not allowed in RCPT state\r\n"
    )


def test_helo_after_ehlo_switches_extensions_off() -> None:
    wire = greeted(b"EHLO size1000.example")
    assert wire.feed(b"HELO client.example\r\n") == b"250 badsmtp.test\r\n"
    assert wire.feed(b"NOOP\r\n") == b"250 OK\r\n"
    assert wire.feed(b"MAIL FROM:<us\xc3\xa9r@example.com> SIZE=5000\r\n") == (
        b"501 Syntax error in parameters\r\n"
    )
    assert wire.feed(b"MAIL FROM:<a@example.com> SIZE=5000\r\n") == b"250 OK\r\n"


@pytest.mark.parametrize("verb", [b"HELO", b"EHLO"])
def test_helo_without_argument_gets_501_never_enhanced(verb: bytes) -> None:
    wire = greeted()
    assert wire.feed(verb + b"\r\n") == b"501 Syntax error in parameters\r\n"
    assert wire.feed(b"NOOP\r\n") == OK  # still greeted, enhanced codes still on


# -- HELO/EHLO triggers (badsmtp(1), ERROR TRIGGERS) ----------------------------------
@pytest.mark.parametrize(
    "line, reply",
    [
        (b"EHLO helo500.example.com", b"500 Syntax error, command unrecognized\r\n"),
        (b"HELO ehlo550.example.com", b"550 Requested action not taken: mailbox unavailable\r\n"),
        (b"ehlo HELO554.x", b"554 Transaction failed\r\n"),
        (b"EHLO ehlo250.x", b"250 Unknown error\r\n"),
    ],
)
def test_helo_trigger(line: bytes, reply: bytes) -> None:
    wire = Wire()
    assert wire.feed(line + b"\r\n") == reply
    assert phase(wire) is Phase.HELO
    assert wire.feed(b"RCPT TO:<a@example.com>\r\n") == b"503 Bad sequence - RCPT not allowed in HELO state\r\n"
    assert wire.feed(b"EHLO client.example\r\n") == EHLO_REPLY  # may try again
    assert wire.feed(line + b"\r\n") == reply  # never enhanced
    log = wire.logs[-1]
    assert (log.level, log.message) == ("WARN", "SMTP error simulation triggered")
    assert log.fields["error_code"] == int(reply[:3]) and log.fields["smtp_stage"] == line[:4].upper().decode()


def test_helo_trigger_in_a_transaction_leaves_it_open() -> None:
    wire = in_rcpt()
    assert wire.feed(b"EHLO helo451.example\r\n") == b"451 Requested action aborted: local error in processing\r\n"
    assert wire.feed(b"RCPT TO:<second@example.com>\r\nDATA\r\nx\r\n.\r\n") == RCPT_OK + GO_AHEAD + ACCEPTED
    assert wire.messages[0][0].recipients == ("rcpt@example.com", "second@example.com")


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
def test_helo_trigger_421_closes(verb: bytes) -> None:
    wire = greeted()
    out = wire.feed(verb + b" helo421.x\r\nNOOP\r\n")
    assert out == b"421 Service not available, closing transmission channel\r\n"
    assert wire.closed and wire.session.closed
    assert wire.logs and wire.logs[-1].fields["error_code"] == 421
    assert wire.session.receive_data(b"NOOP\r\n") == []


@pytest.mark.parametrize("name", [b"helo5001.example.com", b"helo500example.com", b"helo50.example"])
def test_helo_lookalikes_are_not_triggers(name: bytes) -> None:
    wire = Wire()
    assert wire.feed(b"EHLO " + name + b"\r\n") == ehlo_list(*DEFAULT_LINES)
    assert wire.logs == []


# == repeated HELO/EHLO (RFC 5321 §4.1.4) =============================================
@pytest.mark.parametrize("line", [b"EHLO again.example", b"HELO again.example"])
def test_repeated_helo_resets_the_transaction_and_keeps_armed_triggers(line: bytes) -> None:
    wire = greeted()
    wire.feed(b"MAIL FROM:<noop550@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    out = wire.feed(line + b"\r\n")
    assert out.startswith(b"250")
    assert phase(wire) is Phase.MAIL
    esc = b"5.5.1 " if line.startswith(b"EHLO") else b""
    assert wire.feed(b"RCPT TO:<b@example.com>\r\n") == b"503 " + esc + b"Bad sequence - RCPT not allowed in MAIL state\r\n"
    assert wire.feed(b"NOOP\r\n") == b"550 Requested action not taken: mailbox unavailable\r\n"


def test_repeated_ehlo_aborts_bdat_content() -> None:
    wire = in_rcpt()
    assert wire.feed(b"BDAT 3\r\nabc") == OK
    assert wire.feed(b"EHLO again.example\r\n") == EHLO_REPLY
    assert wire.aborted == 1 and wire.messages == []
    assert wire.feed(b"BDAT 1 LAST\r\nx") == b"503 5.5.1 Bad sequence - BDAT not allowed in MAIL state\r\n"


def test_repeated_ehlo_keeps_authentication() -> None:
    wire = greeted()
    wire.feed(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + 'pw')}\r\n".encode())
    wire.feed(b"EHLO again.example\r\n")
    assert wire.feed(b"AUTH PLAIN\r\n") == b"503 5.5.1 Already authenticated\r\n"


# == how a connection opens: the listener's behaviour as actions (README "Quick tour") ==
def opening(**listener: object) -> Session:
    return Session(Context(), **listener)  # type: ignore[arg-type]


def test_a_normal_connection_opens_with_the_greeting() -> None:
    assert opening().greeting() == [Send(GREETING)]


@pytest.mark.parametrize("after, actions", [(0.0, [Close()]), (5.0, [Wait(5.0)])])
def test_a_drop_sends_nothing_and_closes(after: float, actions: list[Action]) -> None:
    session = opening(drop_after=after)
    assert session.greeting() == actions
    if after:
        assert session.waited() == [Close()]
    assert session.closed
    assert session.receive_data(b"EHLO x\r\n") == []  # nothing is ever read


def test_a_greeting_delay_is_a_wait_before_the_220() -> None:
    session = opening(greeting_delay=2.5)
    assert session.greeting() == [Wait(2.5)]
    assert session.receive_data(b"EHLO early.example\r\n") == []  # held until the greeting
    assert session.waited() == [Send(GREETING + EHLO_REPLY)]


def test_a_stop_during_the_greeting_delay_is_a_plain_421() -> None:
    session = opening(greeting_delay=990.0)
    assert session.greeting() == [Wait(990.0)]
    assert session.shutdown() == [Send(b"421 Service shutting down\r\n"), Close()]


def test_implicit_tls_opens_with_the_handshake_then_greets() -> None:
    session = opening(handshake_first=True, greeting_delay=1.0)
    assert session.greeting() == [StartTLS()]
    assert session.tls_started() == [Wait(1.0)]
    assert session.waited() == [Send(GREETING)]
    assert session.state.tls
    assert session.receive_data(b"EHLO x\r\n") == [Send(ehlo_list(*without("STARTTLS"), identity="badsmtp.test"))]


def test_a_failed_implicit_handshake_closes_without_a_greeting() -> None:
    session = opening(handshake_first=True)
    assert session.greeting() == [StartTLS()]
    assert session.receive_data(b"") == [Close()]
