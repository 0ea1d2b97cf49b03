"""Command-line framing in the session, driven through the fake shell:
pipelining and batching (one send per read), line ends, blanks and white space,
over-long lines with a bounded buffer, bad bytes, the command delay, and a whole
session split anywhere giving the same result.  No sockets.

Every framing test is fed three ways (h11's rule): whole, byte by
byte, and with trailing data that must then be read as the next command."""

from __future__ import annotations

import pytest
from fakeshell import ENVELOPE, HOW, SYNTAX, UNKNOWN, Wire, greeted, phase, without_findings
from helpers import b64
from wire import BYE, EHLO_REPLY, GO_AHEAD, MAIL_OK, OK, RCPT_OK

from badsmtp.actions import Begin, Close, Log, Send, StartTLS, Wait
from badsmtp.protocol import Phase
from badsmtp.session import MAX_LINE

BAD_SENDER = b"501 5.1.7 Syntax error in parameters\r\n"
TOO_LONG = b"500 5.5.2 Command too long\r\n"


# == command-line framing (RFC 5321 §2.3.8, §4.5.3.1.4) ================================
@pytest.mark.parametrize("how", HOW)
def test_pipelined_envelope(how: str) -> None:
    wire = Wire()
    out = wire.feed_how(b"EHLO client.example\r\n" + ENVELOPE, how)
    assert out == EHLO_REPLY + MAIL_OK + RCPT_OK


@pytest.mark.parametrize("how", HOW)
def test_bare_lf_command_lines_are_accepted(how: str) -> None:
    wire = Wire()
    out = wire.feed_how(b"EHLO client.example\nMAIL FROM:<a@example.com>\nRCPT TO:<b@example.com>\n", how)
    assert out == EHLO_REPLY + MAIL_OK + RCPT_OK


@pytest.mark.parametrize("how", HOW)
def test_empty_and_blank_lines_are_ignored(how: str) -> None:
    wire = greeted(command_delay=1.0)
    before = len(wire.waits)
    out = wire.feed_how(b"\r\n\n   \r\n\t \t\r\n\x0c\r\nNOOP\r\n\r\n", how)
    assert out == OK
    assert len(wire.waits) - before == (2 if how == "trailing" else 1)  # only NOOP(s) wait


@pytest.mark.parametrize("how", HOW)
def test_white_space_around_and_between_tokens(how: str) -> None:
    wire = greeted()
    out = wire.feed_how(b"  \tmail \t FROM:<a@example.com>   SIZE=5 \t\r\n\tRCPT\tTO:\t<b@example.com>\r\n", how)
    assert out == MAIL_OK + RCPT_OK


@pytest.mark.parametrize("line", [b"NOOP\xc2\xa0x", b"MAIL\x0bFROM:<a@example.com>", b"NOOP\x1fX"])
def test_only_spaces_and_tabs_separate_tokens(line: bytes) -> None:
    # Tokens are split at runs of spaces and tabs, nothing else (RFC 5321 §4.1.1).
    wire = greeted()
    assert wire.feed(line + b"\r\n") == UNKNOWN
    assert wire.feed(b"NOOP\tx\r\n") == OK  # twin


def test_pipelined_batch_gives_one_send() -> None:
    wire = Wire()
    batch = (b"EHLO client.example\r\n" + ENVELOPE + b"RCPT TO:<c@example.com>\r\nNOOP\r\nVRFY exists@example.com\r\n"
             b"RSET\r\nHELP\r\nXYZZY\r\nEXPN list\r\n")
    actions = without_findings(wire.session.receive_data(batch))
    assert len(actions) == 1 and isinstance(actions[0], Send)
    assert actions[0].data.startswith(EHLO_REPLY + MAIL_OK + RCPT_OK + RCPT_OK + OK)
    assert actions[0].data.endswith(b"214 2.0.0 End of HELP\r\n" + UNKNOWN + b"502 5.5.1 Command not implemented\r\n")


def test_synchronising_commands_flush() -> None:
    # Held replies leave before DATA's content is read, before a BDAT chunk
    # is read, with QUIT's reply before the close, before an AUTH exchange.
    wire = greeted()
    actions = wire.session.receive_data(ENVELOPE + b"DATA\r\n")
    assert actions[0] == Send(MAIL_OK + RCPT_OK + GO_AHEAD) and isinstance(actions[1], Begin)
    wire = greeted()
    actions = wire.session.receive_data(ENVELOPE + b"BDAT 2 LAST\r\nhi")
    assert actions[0] == Send(MAIL_OK + RCPT_OK) and isinstance(actions[1], Begin)
    wire = greeted()
    assert without_findings(wire.session.receive_data(b"NOOP\r\nQUIT\r\n")) == [Send(OK + BYE), Close()]
    wire = greeted()
    actions = without_findings(wire.session.receive_data(b"NOOP\r\nAUTH PLAIN\r\n"))
    assert actions == [Send(OK), Send(b"334 \r\n")]


def test_replies_before_starttls_are_flushed_first() -> None:
    wire = greeted()
    actions = without_findings(wire.session.receive_data(b"NOOP\r\nSTARTTLS\r\n"))
    assert actions == [Send(OK + b"220 2.0.0 Ready to start TLS\r\n"), StartTLS()]


def test_a_partial_line_is_answered_once_complete() -> None:
    wire = greeted()
    assert wire.feed(b"NOOP\r\nNO") == OK
    assert wire.feed(b"OP\r") == b""
    assert wire.feed(b"\n") == OK


# -- over-long lines (RFC 5321 §4.5.3.1.4) ------------------------------------------
@pytest.mark.parametrize("how", HOW)
def test_line_of_4096_octets_is_fine(how: str) -> None:
    wire = greeted()
    line = b"NOOP " + b"x" * (MAX_LINE - 5)
    assert len(line) == 4096
    assert wire.feed_how(line + b"\r\n", how) == OK


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("size, end", [(4097, b"\r\n"), (4097, b"\n"), (4098, b"\r\n"), (100_000, b"\r\n")])
def test_over_long_line_gets_500_once_and_the_session_continues(how: str, size: int, end: bytes) -> None:
    wire = greeted(command_delay=3.0)
    waits = len(wire.waits)
    line = b"MAIL FROM:<" + b"a" * (size - 11)
    assert len(line) == size
    out = wire.feed_how(line + end + b"NOOP\r\n", how)
    assert out == TOO_LONG + OK
    assert len(wire.waits) - waits == (2 if how == "trailing" else 1)  # no delay for the long line
    assert phase(wire) is Phase.MAIL


def test_over_long_line_in_pieces_keeps_the_buffer_bounded() -> None:
    wire = greeted()
    for _ in range(2000):
        assert wire.feed(b"x" * 97) == b""
        assert len(wire.session._buf) <= MAX_LINE + 2
    assert wire.feed(b"yyy\r\nNOOP\r\n") == TOO_LONG + OK


def test_over_long_line_byte_by_byte_keeps_the_buffer_bounded() -> None:
    wire = greeted()
    for _ in range(10_000):
        wire.session.receive_data(b"z")
        assert len(wire.session._buf) <= MAX_LINE + 2
    assert wire.feed(b"\nNOOP\n") == TOO_LONG + OK


def test_over_long_line_between_pipelined_commands() -> None:
    wire = greeted()
    out = wire.feed(b"NOOP\r\n" + b"A" * 5000 + b"\r\nNOOP\r\n" + b"B" * 4097 + b"\nRSET\r\n")
    assert out == OK + TOO_LONG + OK + TOO_LONG + OK


def test_over_long_line_before_any_ehlo_is_plain() -> None:
    wire = Wire()
    assert wire.feed(b"C" * 5000 + b"\r\n") == b"500 Command too long\r\n"


# -- bad bytes ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "line, reply",
    [
        (b"\x00", UNKNOWN),
        (b"\x00\x00\x00", UNKNOWN),
        (b"NOOP\x00", UNKNOWN),
        (b"\xff\xfe", UNKNOWN),
        (b"\xc3\x28", UNKNOWN),
        (b"MAIL FROM:<\xff@example.com>", SYNTAX),
        (b"MAIL FROM:<a\x00b@example.com>", BAD_SENDER),
        (b"MAIL FROM:<a@exa\xc3mple.com>", SYNTAX),
        (b'MAIL FROM:<"a\x00b"@example.com>', BAD_SENDER),
        (b'MAIL FROM:<"a\rX-Injected:yes"@example.com>', BAD_SENDER),
        (b'MAIL FROM:<"a\xc2\x85b"@example.com>', BAD_SENDER),  # U+0085, a C1 control
        (b"VRFY \xff@example.com", SYNTAX),
        (b"BDAT \xff", b"503 5.5.1 Bad sequence - BDAT not allowed in MAIL state\r\n"),
        (b"AUTH \xff\x00", b"504 5.5.4 Authentication mechanism not supported\r\n"),
    ],
)
def test_nul_and_invalid_utf8_never_raise(line: bytes, reply: bytes) -> None:
    wire = greeted()
    assert wire.feed(line + b"\r\nNOOP\r\n") == reply + OK


def test_invalid_utf8_helo_name_is_accepted() -> None:
    wire = Wire()
    assert wire.feed(b"EHLO \xff\xfe.example\r\n") == EHLO_REPLY


@pytest.mark.parametrize("blob", [bytes(range(256)), bytes(range(256)) * 20, b"\r\n".join([bytes([i]) * 3 for i in range(256)])])
def test_random_bytes_never_raise(blob: bytes) -> None:
    for ehlo in (None, b"EHLO client.example"):
        wire = greeted(ehlo) if ehlo else Wire()
        wire.feed(blob + b"\r\n")
        wire.feed_bytewise(blob + b"\r\n")


# == command delay (badsmtp(1), PORT MAP) ========================================
def test_command_delay_applies_to_every_command_but_not_content() -> None:
    wire = Wire(command_delay=4.0)
    wire.feed(b"EHLO x\r\n" + ENVELOPE + b"DATA\r\nline\r\nmore\r\n.\r\n" + ENVELOPE + b"BDAT 1\r\n")
    assert wire.waits == [4.0] * 7
    wire.feed(b"xQUIT\r\n")  # a chunk octet, then a command
    assert wire.waits == [4.0] * 8


def test_command_delay_flushes_held_replies_first() -> None:
    wire = greeted(command_delay=1.0)
    actions = wire.session.receive_data(b"NOOP\r\nNOOP\r\n")
    assert actions == [Wait(1.0)]
    assert without_findings(wire.session.waited()) == [Send(OK), Wait(1.0)]


def test_shutdown_during_a_command_delay_finds_the_command_unprocessed() -> None:
    wire = greeted(command_delay=1.0)
    assert wire.session.receive_data(b"QUIT\r\n") == [Wait(1.0)]
    # The QUIT was not handled: the shutdown 421 is sent, not 221 Bye.
    assert wire.session.shutdown() == [Send(b"421 4.3.2 Service shutting down\r\n"), Close()]


# == framing under arbitrary splits ===============================================
SESSION_SCRIPT = (
    b"EHLO client.example\r\n"
    b"MAIL FROM:<a@example.com> SIZE=100\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<rcpt550@example.com>\r\n"
    b"DATA\r\nSubject: t\r\n\r\n..one\r\n.\n.\rtwo\r\n\r\n..\r\n.\r\n"
    b"AUTH LOGIN\r\n" + b64("carol").encode() + b"\r\n" + b64("pw").encode() + b"\r\n"
    b"MAIL FROM:<>\r\nRCPT TO:<c@example.com>\r\n"
    b"BDAT 12\r\nQUIT\r\nNOOP\r\nBDAT 0\r\n\r\nBDAT 3 LAST\r\n\x00\xff.\r\n"
    b"\r\nVRFY exists@example.com\r\n" + b"L" * 5000 + b"\nNOOP\nRSET\r\nQUIT\r\nNOOP\r\n"
)


def test_a_whole_session_split_anywhere_gives_the_same_result() -> None:
    import random

    whole = Wire()
    expected = whole.feed(SESSION_SCRIPT)
    assert whole.closed and len(whole.contents) == 2
    assert whole.contents[1] == b"QUIT\r\nNOOP\r\n\x00\xff."
    assert expected.endswith(BYE)
    rng = random.Random(20250103)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(SESSION_SCRIPT)), rng.randint(1, 40)))
        wire = Wire()
        out = b"".join(wire.feed(SESSION_SCRIPT[a:b]) for a, b in zip([0, *cuts], [*cuts, len(SESSION_SCRIPT)]))
        assert (out, wire.contents, wire.credentials) == (expected, whole.contents, whole.credentials), cuts
    wire = Wire()
    assert (wire.feed_bytewise(SESSION_SCRIPT), wire.contents) == (expected, whole.contents)


def test_auth_line_in_pieces_keeps_the_buffer_bounded() -> None:
    wire = greeted()
    assert wire.feed(b"AUTH PLAIN\r\n") == b"334 \r\n"
    for _ in range(500):
        assert wire.feed(b"Q" * 100) == b""
        assert len(wire.session._buf) <= 12288 + 2
    assert wire.feed(b"\r\nNOOP\r\n") == b"500 5.5.6 Authentication exchange line too long\r\n" + OK


def test_pipelined_replies_keep_their_order_around_a_trigger() -> None:
    wire = greeted()
    actions = wire.session.receive_data(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<rcpt550@example.com>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n")
    sent = b"".join(a.data for a in actions if isinstance(a, Send))
    assert sent == MAIL_OK + b"550 Requested action not taken: mailbox unavailable\r\n" + RCPT_OK + OK
    assert [a.fields["error_code"] for a in actions if isinstance(a, Log)] == [550]
