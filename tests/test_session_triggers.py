"""The address triggers (badsmtp(1), ERROR TRIGGERS) driven through the fake
shell: ``verb<code>[_x.y.z]`` in MAIL FROM or RCPT TO fails that command or a
later one, with or without enhanced codes, a 421 closes, and an armed trigger
lives until the transaction it belongs to ends.  No sockets."""

from __future__ import annotations

import pytest
from fakeshell import SYNTAX, Wire, greeted, phase, size_exceeded
from helpers import b64
from wire import GO_AHEAD, MAIL_OK, OK, RCPT_OK

from badsmtp import replies
from badsmtp.actions import Close
from badsmtp.protocol import Phase

# == address triggers over the wire (badsmtp(1), ERROR TRIGGERS) ==============================================
# verb, the commands after EHLO, the command that fires.
TRIGGER_CASES = {
    "mail": (b"", b"MAIL FROM:<mail{p}@example.com>"),
    "rcpt": (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<rcpt{p}@example.com>"),
    "rcpt-from-mail": (b"MAIL FROM:<rcpt{p}@example.com>\r\n", b"RCPT TO:<b@example.com>"),
    "data": (b"MAIL FROM:<data{p}@example.com>\r\nRCPT TO:<b@example.com>\r\n", b"DATA"),
    "rset": (b"MAIL FROM:<rset{p}@example.com>\r\n", b"RSET"),
    "noop": (b"MAIL FROM:<noop{p}@example.com>\r\n", b"NOOP"),
    "quit": (b"MAIL FROM:<quit{p}@example.com>\r\n", b"QUIT"),
    "starttls": (b"MAIL FROM:<starttls{p}@example.com>\r\nRSET\r\n", b"STARTTLS"),
    "auth": (b"MAIL FROM:<auth{p}@example.com>\r\nRSET\r\n", b"AUTH PLAIN " + b64("\0u\0p").encode()),
}


def trigger_wire(case: str, pattern: str, ehlo: bytes = b"EHLO client.example") -> tuple[Wire, bytes]:
    setup, fire = TRIGGER_CASES[case]
    wire = greeted(ehlo)
    if setup:
        wire.feed(setup.replace(b"{p}", pattern.encode()))
    return wire, fire.replace(b"{p}", pattern.encode()) + b"\r\n"


@pytest.mark.parametrize("case", TRIGGER_CASES)
def test_basic_trigger(case: str) -> None:
    wire, line = trigger_wire(case, "554")
    assert wire.feed(line) == b"554 Transaction failed\r\n"
    log = wire.logs[-1]
    assert (log.level, log.message, log.fields["error_code"]) == ("WARN", "SMTP error simulation triggered", 554)
    assert wire.handshakes == 0 and wire.credentials == []
    assert wire.closed is (case == "quit")


@pytest.mark.parametrize("case", TRIGGER_CASES)
def test_enhanced_trigger(case: str) -> None:
    wire, line = trigger_wire(case, "550_5.7.1")
    assert wire.feed(line) == b"550 5.7.1 Requested action not taken: mailbox unavailable\r\n"


@pytest.mark.parametrize("case", TRIGGER_CASES)
@pytest.mark.parametrize("ehlo", [b"HELO client.example", b"EHLO noenhancedstatuscodes.example"])
def test_enhanced_trigger_without_enhanced_codes(case: str, ehlo: bytes) -> None:
    wire, line = trigger_wire(case, "550_5.7.1", ehlo)
    assert wire.feed(line) == b"550 Requested action not taken: mailbox unavailable\r\n"


@pytest.mark.parametrize("case", TRIGGER_CASES)
@pytest.mark.parametrize("pattern", ["421", "421_4.3.2"])
def test_421_from_any_trigger_closes(case: str, pattern: str) -> None:
    wire, line = trigger_wire(case, pattern)
    out = wire.feed(line + b"NOOP\r\nQUIT\r\n")
    esc = b"4.3.2 " if "_" in pattern else b""
    assert out == b"421 " + esc + b"Service not available, closing transmission channel\r\n"
    assert wire.closed and wire.session.closed
    assert isinstance(wire.actions[-1], Close)
    assert wire.logs[-1].fields["error_code"] == 421  # logged before the close
    assert wire.session.receive_data(b"NOOP\r\n") == []
    assert wire.session.timeout() == [] and wire.session.shutdown() == []


def test_421_trigger_mid_batch_sends_earlier_replies_first() -> None:
    wire = greeted()
    out = wire.feed(b"NOOP\r\nMAIL FROM:<mail421@example.com>\r\nNOOP\r\n")
    assert out == OK + b"421 Service not available, closing transmission channel\r\n"


def test_data_trigger_keeps_the_transaction() -> None:
    wire, line = trigger_wire("data", "451")
    assert wire.feed(line) == b"451 Requested action aborted: local error in processing\r\n"
    assert phase(wire) is Phase.RCPT
    assert wire.feed(b"RCPT TO:<c@example.com>\r\n") == RCPT_OK
    assert wire.feed(b"DATA\r\n") == b"451 Requested action aborted: local error in processing\r\n"
    assert wire.begun == []


def test_rset_trigger_resets_nothing() -> None:
    wire, line = trigger_wire("rset", "450")
    for _ in range(2):
        assert wire.feed(line) == b"450 Requested mail action not taken: mailbox unavailable\r\n"
    assert wire.feed(b"RCPT TO:<b@example.com>\r\n") == RCPT_OK


def test_quit_trigger_closes_anyway() -> None:
    wire, line = trigger_wire("quit", "550")
    assert wire.feed(line + b"NOOP\r\n") == b"550 Requested action not taken: mailbox unavailable\r\n"
    assert wire.closed


def test_starttls_trigger_fires_inside_the_transaction() -> None:
    # RFC 3207 does not forbid STARTTLS there; the README promises 454.
    wire = greeted()
    wire.feed(b"MAIL FROM:<starttls454@example.com>\r\n")
    assert wire.feed(b"STARTTLS\r\n") == b"454 Command not implemented\r\n"
    assert phase(wire) is Phase.RCPT  # the transaction goes on
    assert wire.feed(b"RCPT TO:<b@example.com>\r\nSTARTTLS\r\n") == RCPT_OK + b"454 Command not implemented\r\n"
    assert wire.feed(b"RSET\r\nSTARTTLS\r\n") == OK + b"454 Command not implemented\r\n"
    assert wire.handshakes == 0


def test_starttls_without_its_trigger_and_auth_keep_their_503() -> None:
    wire = greeted()
    wire.feed(b"MAIL FROM:<auth535@example.com>\r\n")
    assert wire.feed(b"STARTTLS\r\n") == b"503 5.5.1 Bad sequence - STARTTLS not allowed in RCPT state\r\n"
    assert wire.feed(b"AUTH PLAIN\r\n") == b"503 5.5.1 Bad sequence - AUTH not allowed in RCPT state\r\n"
    wire = greeted()
    wire.feed(b"MAIL FROM:<starttls454@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert wire.feed(b"BDAT 3\r\nabcSTARTTLS\r\n") == OK + (
        b"503 5.5.1 Bad sequence - STARTTLS not allowed in BDAT state\r\n"  # mid-message
    )
    assert wire.handshakes == 0


def test_auth_trigger_needs_an_argument_first() -> None:
    wire, _ = trigger_wire("auth", "535")
    assert wire.feed(b"AUTH\r\n") == SYNTAX
    assert wire.feed(b"AUTH NOSUCHMECH\r\n") == b"535 Authentication failed\r\n"


def test_mail250_opens_no_transaction() -> None:
    wire = greeted()
    assert wire.feed(b"MAIL FROM:<mail250@example.com>\r\n") == b"250 Unknown error\r\n"
    assert wire.feed(b"RCPT TO:<b@example.com>\r\n") == b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n"
    assert wire.feed(b"MAIL FROM:<mail250_2.1.0@example.com>\r\n") == b"250 2.1.0 Unknown error\r\n"
    assert phase(wire) is Phase.MAIL


def test_ordinary_addresses_do_not_fire() -> None:
    wire = greeted()
    assert wire.feed(b"MAIL FROM:<550@example.com>\r\n") == MAIL_OK
    assert wire.feed(b"RCPT TO:<mail550@example.com>\r\nRCPT TO:<bdat550@example.com>\r\n") == RCPT_OK * 2
    assert wire.logs == []


# -- deferred trigger lifetime (badsmtp(1), ERROR TRIGGERS) ------------------------
def armed_noop() -> Wire:
    wire = greeted()
    assert wire.feed(b"MAIL FROM:<noop550@example.com>\r\n") == MAIL_OK
    return wire


NOOP_550 = b"550 Requested action not taken: mailbox unavailable\r\n"


def test_armed_trigger_fires_every_time_and_survives_rset_and_ehlo() -> None:
    wire = armed_noop()
    assert wire.feed(b"NOOP\r\nNOOP\r\nRSET\r\nNOOP\r\n") == NOOP_550 * 2 + OK + NOOP_550
    wire.feed(b"EHLO again.example\r\n")
    assert wire.feed(b"NOOP\r\n") == NOOP_550
    wire.feed(b"HELO again.example\r\n")
    assert wire.feed(b"NOOP\r\n") == NOOP_550


def test_accepted_message_disarms() -> None:
    wire = armed_noop()
    wire.feed(b"RCPT TO:<b@example.com>\r\nDATA\r\nhello\r\n.\r\n")
    assert wire.feed(b"NOOP\r\n") == OK


def test_accepted_bdat_message_disarms() -> None:
    wire = armed_noop()
    wire.feed(b"RCPT TO:<b@example.com>\r\nBDAT 1 LAST\r\nx")
    assert wire.feed(b"NOOP\r\n") == OK


@pytest.mark.parametrize("sender", [b"<plain@example.com>", b"<>", b"<rset451@example.com>"])
def test_new_mail_from_disarms_or_replaces(sender: bytes) -> None:
    wire = armed_noop()
    wire.feed(b"RSET\r\nMAIL FROM:" + sender + b"\r\n")
    assert wire.feed(b"NOOP\r\n") == OK


@pytest.mark.parametrize(
    "line",
    [b"MAIL FROM:<bad>", b"MAIL FROM:<mail550@example.com>", b"MAIL", b"MAIL FROM:<a@example.com> SIZE=99999999999"],
)
def test_rejected_mail_from_leaves_it_armed(line: bytes) -> None:
    wire = armed_noop()
    wire.feed(b"RSET\r\n")
    assert wire.feed(line + b"\r\n")[:1] in (b"5",)
    assert wire.feed(b"NOOP\r\n") == NOOP_550


def test_mail_from_out_of_sequence_leaves_it_armed() -> None:
    wire = armed_noop()
    assert wire.feed(b"MAIL FROM:<plain@example.com>\r\n") == (
        b"503 5.5.1 Bad sequence - MAIL not allowed in RCPT state\r\n"
    )
    assert wire.feed(b"NOOP\r\n") == NOOP_550


def test_size_failure_disarms() -> None:
    wire = greeted(b"EHLO size1000.example")
    wire.feed(b"MAIL FROM:<noop550@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert wire.feed(b"DATA\r\n" + b"x" * 1200 + b"\r\n.\r\n") == GO_AHEAD + size_exceeded(1000)
    assert wire.feed(b"NOOP\r\n") == OK


def test_storage_failure_disarms() -> None:
    wire = greeted(commit_error=replies.STORE_FAILED)
    wire.feed(b"MAIL FROM:<noop550@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert wire.feed(b"DATA\r\nx\r\n.\r\n") == GO_AHEAD + b"451 4.3.0 Requested action aborted: local error in processing\r\n"
    assert wire.feed(b"NOOP\r\n") == OK


def test_starttls_disarms() -> None:
    wire = armed_noop()
    wire.feed(b"RSET\r\nSTARTTLS\r\n")
    assert wire.handshakes == 1
    assert wire.feed(b"NOOP\r\n") == b"250 OK\r\n"
