"""The sans-IO session driver, ``Session``, driven with bytes: exact replies on
the wire, framing (command lines, DATA, BDAT, AUTH lines), pipelining,
STARTTLS, storage and authentication hand-offs.  No sockets.

Every framing test is fed three ways (h11's rule): whole, byte by
byte, and with trailing data that must then be read as the next command."""

from __future__ import annotations

import base64

import pytest
from fakeshell import (
    ENVELOPE,
    HOW,
    NO_RCPTS,
    SYNTAX,
    Wire,
    data_wire,
    ehlo_list,
    greeted,
    in_rcpt,
    phase,
    size_exceeded,
    without,
)
from helpers import b64
from wire import ACCEPTED, MAIL_OK, OK, RCPT_OK

from badsmtp import auth, replies
from badsmtp.actions import (
    Commit,
    Send,
    StartTLS,
    Verify,
    Write,
)
from badsmtp.protocol import Phase

BAD_SENDER = b"501 5.1.7 Syntax error in parameters\r\n"
TOO_LONG = b"500 5.5.2 Command too long\r\n"


# == BDAT (11) ===================================================================
@pytest.mark.parametrize(
    "stream, replies_, stored",
    [
        (b"BDAT 5 LAST\r\nhello", ACCEPTED, b"hello"),
        (b"BDAT 5\r\nhelloBDAT 6 LAST\r\n world", OK + ACCEPTED, b"hello world"),
        (b"BDAT 5\r\nhelloBDAT 0 LAST\r\n", OK + ACCEPTED, b"hello"),
        (b"BDAT 0 LAST\r\n", ACCEPTED, b""),
        (b"BDAT 0\r\nBDAT 0\r\nBDAT 2 last\r\nok", OK + OK + ACCEPTED, b"ok"),
        (b"BDAT +3 LAST\r\nabc", ACCEPTED, b"abc"),
        (b"BDAT 23 LAST\r\nMAIL FROM:<x@y>\r\nQUIT\r\n", ACCEPTED, b"MAIL FROM:<x@y>\r\nQUIT\r\n"),
        (b"BDAT 9 LAST\r\n\x00\xff\r\n.\r\n\n\r", ACCEPTED, b"\x00\xff\r\n.\r\n\n\r"),
        (b"BDAT 5\r\n\r\n.\r\nBDAT 3 LAST\r\n\r\n.", OK + ACCEPTED, b"\r\n.\r\n\r\n."),
        (b"BDAT 5 LAST\r\nhello\r\n", ACCEPTED, b"hello"),  # a CRLF after the chunk is ignored
        (b"BDAT 2\r\nab\r\nBDAT 1 LAST\r\nc\r\n", OK + ACCEPTED, b"abc"),
        (b"bdat 3 LAST extra\r\nxyz", ACCEPTED, b"xyz"),
    ],
)
@pytest.mark.parametrize("how", HOW)
def test_bdat(stream: bytes, replies_: bytes, stored: bytes, how: str) -> None:
    wire = data_wire()
    assert wire.feed_how(stream, how) == replies_
    assert wire.contents == [stored]
    assert wire.messages[0][0].size == len(stored)
    assert phase(wire) is Phase.MAIL and not wire.closed


def test_bdat_chunk_bytes_are_never_parsed() -> None:
    wire = data_wire()
    chunk = b"MAIL FROM:<x@y>\r\nQUIT\r\n"
    out = wire.feed(b"BDAT %d\r\n" % len(chunk) + chunk + b"BDAT 0 LAST\r\n")
    assert out == OK + ACCEPTED
    assert not wire.closed and wire.logs == []


def test_bdat_reply_waits_for_the_whole_chunk_only() -> None:
    wire = data_wire()
    assert wire.feed(b"BDAT 5 LAST\r\nhell") == b""
    assert phase(wire) is Phase.RCPT
    assert wire.feed(b"o") == ACCEPTED  # no extra bytes needed after the chunk


@pytest.mark.parametrize(
    "stream",
    [
        b"BDAT 5\r\nhelloBDAT 6 LAST\r\n world\r\nNOOP\r\n",
        b"BDAT 0\r\nBDAT 3\r\n\r\n.BDAT 0 LAST\r\nQUIT\r\n",
        b"BDAT 7 LAST\r\nBDAT 1\r\nNOOP\r\n",
    ],
)
def test_bdat_split_at_every_byte_boundary(stream: bytes) -> None:
    whole = data_wire()
    expected = whole.feed(stream)
    for cut in range(1, len(stream)):
        wire = data_wire()
        out = wire.feed(stream[:cut]) + wire.feed(stream[cut:])
        assert (out, wire.contents) == (expected, whole.contents), cut
    wire = data_wire()
    assert (wire.feed_bytewise(stream), wire.contents) == (expected, whole.contents)


@pytest.mark.parametrize("line", [b"BDAT x", b"BDAT -1", b"BDAT", b"BDAT 1e3", b"BDAT  "])
@pytest.mark.parametrize("how", HOW)
def test_bdat_syntax_errors(line: bytes, how: str) -> None:
    """No size: nothing can be read as a chunk, the next line is a command."""
    wire = data_wire()
    assert wire.feed_how(line + b"\r\n", how) == SYNTAX
    assert phase(wire) is Phase.RCPT and wire.begun == []


@pytest.mark.parametrize("line", [b"BDAT 5 FOO", b"BDAT 5 LASTX", b"BDAT +5 last!"])
@pytest.mark.parametrize("how", HOW)
def test_bdat_syntax_error_with_a_size_reads_the_chunk(line: bytes, how: str) -> None:
    wire = data_wire()
    assert wire.feed_how(line + b"\r\nQUIT\r", how) == SYNTAX
    assert not wire.closed and phase(wire) is Phase.RCPT and wire.begun == []


def test_bdat_before_recipients() -> None:
    wire = greeted()
    assert wire.feed(b"BDAT 3 LAST\r\nabc") == b"503 5.5.1 Bad sequence - BDAT not allowed in MAIL state\r\n"
    wire.feed(b"MAIL FROM:<a@example.com>\r\n")
    assert wire.feed(b"BDAT 3 LAST\r\nabc") == NO_RCPTS


@pytest.mark.parametrize("how", HOW)
def test_bdat_size_limit(how: str) -> None:
    wire = data_wire(b"EHLO size1000.example")
    chunk = b"QUIT\r\n" * 200  # 1200 octets of command-looking bytes
    out = wire.feed_how(b"BDAT 1200 LAST\r\n" + chunk, how)
    assert out == size_exceeded(1000)
    assert not wire.closed and wire.messages == []
    assert not any(isinstance(a, Commit) for a in wire.actions)
    assert sum(len(a.data) for a in wire.actions if isinstance(a, Write)) == 0
    assert phase(wire) is Phase.MAIL


def test_bdat_size_limit_over_several_chunks() -> None:
    wire = data_wire(b"EHLO size1000.example")
    assert wire.feed(b"BDAT 600\r\n" + b"a" * 600) == OK
    assert wire.feed(b"BDAT 400\r\n" + b"b" * 400) == OK  # exactly the limit so far
    out = wire.feed(b"BDAT 1\r\n" + b"c")
    assert out == size_exceeded(1000)
    assert wire.aborted == 1 and wire.messages == [] and phase(wire) is Phase.MAIL
    assert wire.feed(b"BDAT 0 LAST\r\n") == b"503 5.5.1 Bad sequence - BDAT not allowed in MAIL state\r\n"


def test_bdat_exactly_at_the_limit_is_accepted() -> None:
    wire = data_wire(b"EHLO size1000.example")
    assert wire.feed(b"BDAT 1000 LAST\r\n" + b"d" * 1000) == ACCEPTED


def test_bdat_size_reply_waits_for_the_chunk() -> None:
    wire = data_wire(b"EHLO size1000.example")
    assert wire.feed(b"BDAT 1001 LAST\r\n" + b"e" * 1000) == b""
    assert wire.feed(b"e") == size_exceeded(1000)


@pytest.mark.parametrize("how", HOW)
def test_bdat_data_trigger_on_last(how: str) -> None:
    wire = greeted()
    wire.feed(b"MAIL FROM:<data554_5.6.0@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert wire.feed_how(b"BDAT 3\r\nabc", how) == OK  # non-final chunks are not affected
    out = wire.feed_how(b"BDAT 3 LAST\r\nQUI", how)
    assert out == b"554 5.6.0 Transaction failed\r\n"
    assert wire.messages == [] and wire.aborted == 1
    assert phase(wire) is Phase.RCPT
    assert wire.logs[-1].fields == {"error_code": 554, "trigger": "data554_5.6.0@example.com", "smtp_stage": "BDAT"}
    assert wire.feed(b"RCPT TO:<c@example.com>\r\n") == RCPT_OK
    assert wire.feed(b"BDAT 1 LAST\r\nx") == b"554 5.6.0 Transaction failed\r\n"  # still armed
    assert wire.feed(b"RSET\r\n") == OK


def test_bdat_data_trigger_421_closes() -> None:
    wire = greeted()
    wire.feed(b"MAIL FROM:<data421@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    out = wire.feed(b"BDAT 2 LAST\r\nhiNOOP\r\n")
    assert out == b"421 Service not available, closing transmission channel\r\n"
    assert wire.closed and wire.logs[-1].fields["error_code"] == 421


def test_rset_in_bdat_state() -> None:
    wire = data_wire()
    wire.feed(b"BDAT 3\r\nabc")
    assert phase(wire) is Phase.BDAT
    assert wire.feed(b"RSET\r\n") == OK
    assert wire.aborted == 1 and phase(wire) is Phase.MAIL
    wire.feed(ENVELOPE)
    assert wire.feed(b"BDAT 2 LAST\r\nxy") == ACCEPTED
    assert wire.contents == [b"xy"]


def test_bdat_store_failure() -> None:
    wire = data_wire(begin_error=replies.STORE_UNAVAILABLE)
    out = wire.feed(b"BDAT 2\r\nabBDAT 2 LAST\r\ncd")
    assert out == OK + b"550 5.2.1 Requested action not taken: mailbox unavailable\r\n"
    assert wire.messages == [] and phase(wire) is Phase.MAIL


# == STARTTLS (RFC 3207 §4, §4.2) ================================================
@pytest.mark.parametrize("injected", [b"MAIL FROM:<evil@example.com>\r\n", b"QUIT\r\n", b"NOOP\r\nNOOP\r\n", b"x"])
def test_starttls_discards_pipelined_plain_text(injected: bytes) -> None:
    wire = greeted()
    actions = wire.session.receive_data(b"STARTTLS\r\n" + injected)
    assert actions == [Send(b"220 2.0.0 Ready to start TLS\r\n"), StartTLS()]
    assert wire.session.receive_data(b"RSET\r\n") == []  # paused until the handshake
    assert wire.session.tls_started() == []
    assert wire.session.state.phase is Phase.HELO and wire.session.state.tls
    assert wire.feed(b"MAIL FROM:<a@example.com>\r\n") == b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
    assert wire.feed(b"EHLO client.example\r\n") == ehlo_list(*without("STARTTLS"))
    assert wire.feed(b"STARTTLS\r\n") == b"554 5.5.1 TLS already started\r\n"
    assert not wire.closed


def test_starttls_split_commands_after_the_handshake_are_read() -> None:
    # Twin: bytes that arrive after tls_started() are the encrypted session's.
    wire = greeted()
    assert wire.feed(b"STARTTLS\r\n") == b"220 2.0.0 Ready to start TLS\r\n"
    assert wire.handshakes == 1
    assert wire.feed(b"EHLO client.example\r\nMAIL FROM:<a@example.com>\r\n") == (
        ehlo_list(*without("STARTTLS")) + MAIL_OK
    )
    assert wire.session.state.tls


def test_starttls_resets_everything_learnt_in_plain_text() -> None:
    wire = greeted(b"EHLO size1000-dlay3.example")
    wire.feed(f"AUTH PLAIN {b64(chr(0) + 'alice' + chr(0) + 'pw')}\r\n".encode())
    wire.feed(b"MAIL FROM:<noop550@example.com>\r\nRSET\r\n")
    messages = wire.session.state.messages
    wire.feed(b"STARTTLS\r\n")
    state = wire.session.state
    assert (state.phase, state.helo_name, state.user, state.armed, state.caps.delay) == (Phase.HELO, "", None, None, None)
    assert state.caps.size_limit == 10485760 and not state.caps.enhanced and state.messages == messages
    assert wire.feed(b"NOOP\r\n") == b"250 OK\r\n"
    assert wire.feed(b"EHLO client.example\r\nAUTH PLAIN\r\n") == ehlo_list(*without("STARTTLS")) + b"334 \r\n"


def test_starttls_before_ehlo_and_with_arguments() -> None:
    wire = Wire()
    assert wire.feed(b"STARTTLS now\r\n") == b"220 Ready to start TLS\r\n"
    assert wire.handshakes == 1


def test_starttls_on_tls_connection() -> None:
    wire = greeted(tls=True)
    assert wire.feed(b"STARTTLS\r\n") == b"554 5.5.1 TLS already started\r\n"
    assert wire.handshakes == 0 and phase(wire) is Phase.MAIL


def test_starttls_handshake_failure_closes_silently() -> None:
    wire = greeted(handshake_ok=False)
    assert wire.feed(b"STARTTLS\r\n") == b"220 2.0.0 Ready to start TLS\r\n"
    assert wire.closed


# == AUTH (13) =====================================================================
PLAIN_GOOD = b64("\0goodauth@example.com\0password")
PLAIN_BAD = b64("\0badauth@example.com\0password")


@pytest.mark.parametrize("how", HOW)
def test_auth_plain_success_then_already_authenticated(how: str) -> None:
    wire = greeted()
    out = wire.feed_how(f"AUTH PLAIN {PLAIN_GOOD}\r\n".encode(), how)
    assert out == b"235 2.7.0 Authentication successful\r\n"
    assert wire.credentials == [auth.Credentials("PLAIN", "goodauth@example.com", "password")]
    assert wire.session.state.user == "goodauth@example.com"
    assert wire.feed(f"AUTH PLAIN {PLAIN_GOOD}\r\n".encode()) == b"503 5.5.1 Already authenticated\r\n"
    assert len(wire.credentials) == 1


@pytest.mark.parametrize("how", HOW)
def test_auth_plain_failure(how: str) -> None:
    wire = greeted()
    out = wire.feed_how(f"AUTH PLAIN {PLAIN_BAD}\r\n".encode(), how)
    assert out == b"535 5.7.8 Authentication failed\r\n"
    assert wire.session.state.user is None
    assert wire.feed(f"AUTH PLAIN {PLAIN_GOOD}\r\n".encode()) == b"235 2.7.0 Authentication successful\r\n"


def test_auth_inactive_user() -> None:
    wire = greeted(inactive=True)
    assert wire.feed(f"AUTH PLAIN {PLAIN_GOOD}\r\n".encode()) == b"535 5.7.8 Authentication failed: account inactive\r\n"
    assert wire.session.state.user is None


@pytest.mark.parametrize("how", HOW)
def test_auth_continuation_lines_are_never_commands(how: str) -> None:
    wire = greeted()
    out = wire.feed_how(b"AUTH LOGIN\r\n" + b64("goodauth").encode() + b"\r\nQUIT now\r\n", how)
    # "QUIT now" is the (undecodable) password, passed as absent: not a command.
    assert out == b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
    assert wire.credentials == [auth.Credentials("LOGIN", "goodauth", None)]
    assert not wire.closed


@pytest.mark.parametrize("how", HOW)
def test_auth_plain_without_initial_response(how: str) -> None:
    wire = greeted()
    assert wire.feed_how(b"AUTH PLAIN\r\n" + PLAIN_GOOD.encode() + b"  \r\n", how) == (
        b"334 \r\n235 2.7.0 Authentication successful\r\n"
    )


def test_auth_cancel_and_bad_base64() -> None:
    wire = greeted()
    assert wire.feed(b"AUTH PLAIN\r\n*\r\n") == b"334 \r\n501 5.7.0 Authentication cancelled\r\n"
    assert wire.feed(b"AUTH PLAIN\r\nQUIT!\r\n") == b"334 \r\n501 5.5.2 Cannot decode response\r\n"
    assert not wire.closed and wire.credentials == []


def test_auth_cram_uses_the_challenge() -> None:
    wire = greeted()
    out = wire.feed(b"AUTH CRAM-MD5\r\n" + b64("alice 0123456789abcdef").encode() + b"\r\n")
    assert out == f"334 {b64('<1.2@badsmtp.test>')}\r\n".encode() + b"235 2.7.0 Authentication successful\r\n"


def test_every_cram_exchange_gets_a_challenge_of_its_own() -> None:
    """RFC 2195 §2: challenges are never reused, within a connection either."""
    wire = greeted()
    challenges = []
    for user in ("badauth", "alice"):  # the first fails, so a second AUTH is allowed
        out = wire.feed(b"AUTH CRAM-MD5\r\n")
        challenges.append(base64.b64decode(out[4:].strip()).decode())
        wire.feed(b64(f"{user} 0123456789abcdef").encode() + b"\r\n")
    assert challenges == ["<1.2@badsmtp.test>", "<1.1.2@badsmtp.test>"]


def test_auth_xoauth2_failure_flow() -> None:
    wire = greeted()
    out = wire.feed(f"AUTH XOAUTH2 {b64(chr(1).join(['user=badauth@example.com', 'auth=Bearer t', '', '']))}\r\n".encode())
    assert out == f"334 {b64(auth.XOAUTH2_ERROR_JSON)}\r\n".encode()
    assert wire.feed(b"\r\n") == b"535 5.7.8 Authentication failed\r\n"


def test_auth_line_too_long() -> None:
    wire = greeted()
    out = wire.feed(b"AUTH PLAIN\r\n" + b"A" * 13000 + b"\r\nNOOP\r\n")
    assert out == b"334 \r\n500 5.5.6 Authentication exchange line too long\r\n" + OK


def test_auth_state_checks() -> None:
    wire = Wire()
    assert wire.feed(b"AUTH PLAIN\r\n") == b"503 Bad sequence - AUTH not allowed in HELO state\r\n"
    wire = in_rcpt()
    assert wire.feed(b"AUTH PLAIN\r\n") == b"503 5.5.1 Bad sequence - AUTH not allowed in RCPT state\r\n"
    wire = greeted()
    assert wire.feed(b"AUTH\r\n") == SYNTAX
    assert wire.feed(b"AUTH DIGEST-MD5\r\n") == b"504 5.5.4 Authentication mechanism not supported\r\n"
    wire = greeted(b"HELO x")
    assert wire.feed(f"AUTH PLAIN {PLAIN_GOOD}\r\n".encode()) == b"235 Authentication successful\r\n"


def test_auth_trigger() -> None:
    wire = greeted()
    wire.feed(b"MAIL FROM:<auth535_5.7.8@example.com>\r\nRSET\r\n")
    assert wire.feed(f"AUTH PLAIN {PLAIN_GOOD}\r\n".encode()) == b"535 5.7.8 Authentication failed\r\n"
    assert wire.credentials == [] and wire.session.state.user is None


def test_authentication_pauses_until_the_verdict() -> None:
    wire = greeted()
    actions = wire.session.receive_data(f"AUTH PLAIN {PLAIN_GOOD}\r\nNOOP\r\n".encode())
    assert len(actions) == 1 and isinstance(actions[0], Verify)
    assert wire.session.receive_data(b"NOOP\r\n") == []
    user = auth.pattern_authenticate("goodauth@example.com", None)
    assert wire.session.auth_done(user) == [Send(b"235 2.7.0 Authentication successful\r\n" + OK + OK)]
