"""STARTTLS (RFC 3207) and AUTH (RFC 4954) in the session, driven through
the fake shell: what was pipelined after STARTTLS is discarded and the session
reset after the handshake, and the SASL exchanges pause for the
authenticator's verdict, their continuation lines never read as commands.
No sockets."""

from __future__ import annotations

import base64

import pytest
from fakeshell import (
    HOW,
    SYNTAX,
    Wire,
    ehlo_list,
    greeted,
    in_rcpt,
    phase,
    without,
    without_findings,
)
from helpers import b64
from wire import MAIL_OK, OK

from badsmtp import auth
from badsmtp.actions import Send, StartTLS, Verify
from badsmtp.protocol import Phase


# == STARTTLS (RFC 3207 §4, §4.2) ================================================
@pytest.mark.parametrize("injected", [b"MAIL FROM:<evil@example.com>\r\n", b"QUIT\r\n", b"NOOP\r\nNOOP\r\n", b"x"])
def test_starttls_discards_pipelined_plain_text(injected: bytes) -> None:
    wire = greeted()
    actions = without_findings(wire.session.receive_data(b"STARTTLS\r\n" + injected))
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


# == AUTH (RFC 4954) =================================================================
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
    actions = without_findings(wire.session.receive_data(f"AUTH PLAIN {PLAIN_GOOD}\r\nNOOP\r\n".encode()))
    assert len(actions) == 1 and isinstance(actions[0], Verify)
    assert wire.session.receive_data(b"NOOP\r\n") == []
    user = auth.pattern_authenticate("goodauth@example.com", None)
    assert without_findings(wire.session.auth_done(user)) == [Send(b"235 2.7.0 Authentication successful\r\n" + OK + OK)]
