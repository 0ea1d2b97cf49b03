"""Compliance findings in the pure core (README, What your client did
wrong): what a client did wrong, noted without changing a reply.  Each
finding reaches the session's recorder and leaves as one WARN ``Log`` in
its batch; a well-behaved conversation has none.  No sockets: the end-to-end
twins are in tests/test_findings_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest
from fakeshell import ENVELOPE, Wire
from wire import ACCEPTED, BYE, EHLO_REPLY, GO_AHEAD, MAIL_OK, OK, RCPT_OK

from badsmtp.actions import Log, StartTLS
from badsmtp.findings import CATALOGUE, LOG_MESSAGE, Finding
from badsmtp.protocol import Context
from badsmtp.session import Session

HELO_OK = b"250 badsmtp.test\r\n"
BODY = b"Subject: hi\r\n\r\nhello\r\n"


class Found:
    """A recorder that keeps only the findings."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def finding(self, finding: Finding) -> None:
        self.findings.append(finding)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def wire_for(**kwargs: Any) -> Wire:
    return Wire(recorder=Found(), **kwargs)


def findings(wire: Wire) -> list[Finding]:
    """The recorder's findings, checked against the batch's WARN records."""
    found: list[Finding] = wire.recorder.findings
    logged = [a for a in wire.actions if isinstance(a, Log) and a.message == LOG_MESSAGE]
    assert [(log.level, log.fields) for log in logged] == [("WARN", f.fields()) for f in found]
    return found


def codes(wire: Wire) -> list[str]:
    return [f.code for f in findings(wire)]


def ehlo(name: bytes = b"client.example", **kwargs: Any) -> Wire:
    wire = wire_for(**kwargs)
    wire.feed(b"EHLO " + name + b"\r\n")
    return wire


def one_at_a_time(wire: Wire, *commands: bytes) -> bytes:
    """Each command in a read of its own, as a client waiting for each reply."""
    return b"".join(wire.feed(command) for command in commands)


# -- the catalogue ------------------------------------------------------------------------
def test_every_code_cites_an_rfc_section_and_has_a_class() -> None:
    for code, (rfc, severity) in CATALOGUE.items():
        assert code == code.lower() and " " not in code
        assert rfc.startswith("RFC ") and "§" in rfc, code
        assert severity in ("error", "warning"), code


# -- a well-behaved client has none --------------------------------------------------------
def test_a_waiting_client_has_no_findings() -> None:
    wire = wire_for()
    out = one_at_a_time(wire, b"EHLO client.example\r\n", b"MAIL FROM:<a@example.com>\r\n",
                        b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n", BODY + b".\r\n", b"QUIT\r\n")
    assert out == EHLO_REPLY + MAIL_OK + RCPT_OK + GO_AHEAD + ACCEPTED + BYE
    assert wire.closed and findings(wire) == []


def test_pipelining_as_rfc_2920_allows_has_no_findings() -> None:
    # The envelope and DATA in one group, the content and the next
    # transaction in the next, QUIT last (RFC 2920 §3.1).
    wire = ehlo()
    assert wire.feed(ENVELOPE + b"DATA\r\n") == MAIL_OK + RCPT_OK + GO_AHEAD
    assert wire.feed(BODY + b".\r\n" + ENVELOPE + b"RSET\r\nQUIT\r\n") == ACCEPTED + MAIL_OK + RCPT_OK + OK + BYE
    assert findings(wire) == []


def test_pipelined_bdat_chunks_have_no_findings() -> None:
    wire = ehlo()
    out = wire.feed(ENVELOPE + b"BDAT 5\r\nhello" + b"BDAT 2 LAST\r\n\r\n" + b"QUIT\r\n")
    assert out.endswith(BYE)
    assert findings(wire) == []


def test_starttls_then_ehlo_then_auth_has_no_findings() -> None:
    wire = ehlo()
    wire.feed(b"STARTTLS\r\n")
    assert wire.handshakes == 1
    one_at_a_time(wire, b"EHLO client.example\r\n", b"AUTH PLAIN AGdvb2RhdXRoQGV4YW1wbGUuY29tAHBhc3N3b3Jk\r\n",
                  b"QUIT\r\n")
    assert findings(wire) == []


def test_crlf_split_between_reads_is_not_bare() -> None:
    wire = ehlo()
    one_at_a_time(wire, b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n")
    wire.feed_bytewise(b"a\r\nb" * 300 + b"\r\n" + b"x" * 998 + b"\r\n.\r\n")
    assert findings(wire) == []


# -- pipelining (RFC 2920 §3.1) --------------------------------------------------------------
def test_pipelining_in_a_helo_session() -> None:
    wire = wire_for()
    wire.feed(b"HELO client.example\r\n")
    out = wire.feed(ENVELOPE + b"NOOP\r\n")
    assert out == b"250 OK\r\n250 OK\r\n250 OK\r\n"  # the replies are as ever
    [mail, rcpt] = findings(wire)
    assert (mail.code, mail.command, mail.rfc, mail.severity) == (
        "pipelining-not-advertised", "MAIL", "RFC 2920 §3.1", "error")
    assert mail.explanation == "34 octets followed MAIL before its reply and PIPELINING was not advertised"
    assert (rcpt.code, rcpt.command) == ("pipelining-not-advertised", "RCPT")


@pytest.mark.parametrize("first", [b"", b"EHLO nopipelining.example\r\n"])
def test_pipelining_not_advertised(first: bytes) -> None:
    # Before any EHLO, and after one that left PIPELINING out.
    wire = wire_for()
    if first:
        wire.feed(first)
    wire.feed(b"EHLO client.example\r\nNOOP\r\n")
    [found] = findings(wire)
    assert (found.code, found.command) == ("pipelining-not-advertised", "EHLO")


@pytest.mark.parametrize("verb, rfc", [
    (b"NOOP", "RFC 2920 §3.1"), (b"EHLO again.example", "RFC 2920 §3.1"),
    (b"VRFY exists@example.com", "RFC 2920 §3.1"), (b"STARTTLS", "RFC 2920 §3.1; RFC 3207 §4.2"),
    (b"AUTH PLAIN AGdvb2RhdXRoQGV4YW1wbGUuY29tAHBhc3N3b3Jk", "RFC 2920 §3.1; RFC 4954 §4"),
])  # fmt: skip
def test_pipelined_past_a_synchronisation_point(verb: bytes, rfc: str) -> None:
    wire = ehlo(b"nostarttls.example")
    wire.feed(verb + b"\r\nRSET\r\n")
    [found] = findings(wire)
    assert found.code == "pipelined-past-sync-point" and found.rfc == rfc
    assert found.explanation == f"6 octets followed {verb.split()[0].decode()} before its reply"


def test_content_sent_before_the_354() -> None:
    wire = ehlo()
    out = wire.feed(ENVELOPE + b"DATA\r\n" + BODY + b".\r\n")
    assert out == MAIL_OK + RCPT_OK + GO_AHEAD + ACCEPTED
    [found] = findings(wire)
    assert (found.code, found.command) == ("data-before-354", "DATA")
    assert found.explanation == f"{len(BODY) + 3} octets followed DATA before its 354"


def test_after_quit_one_finding_per_offending_command() -> None:
    wire = ehlo()
    assert wire.feed(b"QUIT\r\nNOOP\r\nNOOP\r\n") == BYE
    assert codes(wire) == ["after-quit"]


def test_after_a_421_the_client_was_not_allowed_to_pipeline() -> None:
    wire = wire_for()
    wire.feed(b"HELO client.example\r\n")
    wire.feed(b"MAIL FROM:<mail421@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert wire.closed
    [found] = findings(wire)
    assert (found.code, found.command) == ("after-421", "MAIL")


def test_after_a_421_under_pipelining_is_no_finding() -> None:
    wire = ehlo()
    wire.feed(b"MAIL FROM:<mail421@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    assert wire.closed and findings(wire) == []


def test_the_end_of_the_content_without_pipelining() -> None:
    wire = wire_for()
    one_at_a_time(wire, b"HELO client.example\r\n", b"MAIL FROM:<a@example.com>\r\n",
                  b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n")
    assert wire.feed(BODY + b".\r\nQUIT\r\n") == b"250 OK Message accepted for delivery\r\n221 Bye\r\n"
    [found] = findings(wire)
    assert (found.code, found.command) == ("pipelining-not-advertised", "DATA")


# -- command lines (RFC 5321 §2.3.8, §4.5.3.1.4) --------------------------------------------------
def test_bare_lf_and_bare_cr_in_commands_once_each() -> None:
    wire = ehlo()
    assert one_at_a_time(wire, b"NOOP\n", b"NOOP\n", b"NOOP x\ry\r\n", b"NOOP\r\r\n") == OK * 4
    bare_lf, bare_cr = findings(wire)
    assert (bare_lf.code, bare_lf.command, bare_lf.rfc) == ("bare-lf", "NOOP", "RFC 5321 §2.3.8")
    assert bare_cr.code == "bare-cr"


def test_a_command_line_over_512_octets() -> None:
    wire = ehlo()
    wire.feed(b"NOOP " + b"x" * 505 + b"\r\n")  # 512 with the CRLF
    assert findings(wire) == []
    wire.feed(b"NOOP " + b"x" * 506 + b"\r\n")
    [found] = findings(wire)
    assert (found.code, found.explanation) == ("command-too-long", "NOOP was 513 octets long")


def test_mail_parameters_and_auth_lines_may_be_longer() -> None:
    # Extensions lengthen MAIL and RCPT (RFC 1870 §3, RFC 4954 §5) and AUTH
    # lines (RFC 4954 §4): only the path counts.
    wire = ehlo()
    wire.feed(b"MAIL FROM:<a@example.com> ENVID=" + b"x" * 600 + b"\r\n")
    wire.feed(b"AUTH PLAIN " + b"A" * 1000 + b"\r\n")
    assert [c for c in codes(wire) if c == "command-too-long"] == []


def test_a_command_line_past_badsmtps_own_limit() -> None:
    wire = ehlo()
    assert wire.feed(b"NOOP " + b"x" * 5000 + b"\r\n") == b"500 5.5.2 Command too long\r\n"
    assert codes(wire) == ["command-too-long"]


# -- content (RFC 5321 §2.3.8, §4.5.3.1.6; RFC 6152) ---------------------------------------------
def in_data(ehlo_name: bytes = b"client.example", mail: bytes = b"MAIL FROM:<a@example.com>") -> Wire:
    wire = ehlo(ehlo_name)
    one_at_a_time(wire, mail + b"\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n")
    return wire


@pytest.mark.parametrize("content, code", [
    (b"a\nb\r\n", "bare-lf"), (b"a\rb\r\n", "bare-cr"), (b"x" * 999 + b"\r\n", "line-too-long"),
    (b"caf\xc3\xa9\r\n", "8bit-without-8bitmime"),
])  # fmt: skip
@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_content_findings_once_per_session(content: bytes, code: str, how: str) -> None:
    wire = in_data()
    feed = wire.feed if how == "whole" else wire.feed_bytewise
    assert feed(content * 3 + b".\r\n") == ACCEPTED  # accepted as ever
    one_at_a_time(wire, b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n")
    feed(content + b".\r\n")
    [found] = findings(wire)
    assert (found.code, found.command) == (code, "DATA")


def test_a_text_line_of_1000_octets_is_allowed() -> None:
    wire = in_data()
    wire.feed(b"x" * 998 + b"\r\n.\r\n")
    assert findings(wire) == []


@pytest.mark.parametrize("body", [b"8BITMIME", b"8bitmime"])
def test_8bit_content_declared(body: bytes) -> None:
    wire = in_data(mail=b"MAIL FROM:<a@example.com> BODY=" + body)
    wire.feed(b"caf\xc3\xa9\r\n.\r\n")
    assert findings(wire) == []


def test_binarymime_chunks_are_not_text() -> None:
    wire = ehlo()
    one_at_a_time(wire, b"MAIL FROM:<a@example.com> BODY=BINARYMIME\r\n", b"RCPT TO:<b@example.com>\r\n")
    wire.feed(b"BDAT 6 LAST\r\n\x00\n\r\xff\xfe\n")
    assert findings(wire) == []


def test_bdat_content_is_checked() -> None:
    wire = ehlo()
    one_at_a_time(wire, b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n")
    wire.feed(b"BDAT 4 LAST\r\na\nb\n")
    [found] = findings(wire)
    assert (found.code, found.command) == ("bare-lf", "BDAT")


# -- addresses (RFC 6531 §3.4) -------------------------------------------------------------------
def test_a_utf8_address_without_smtputf8() -> None:
    wire = ehlo()
    assert wire.feed("MAIL FROM:<δοκιμή@example.com>\r\n".encode()) == MAIL_OK
    [found] = findings(wire)
    assert (found.code, found.command, found.rfc) == ("utf8-address-without-smtputf8", "MAIL", "RFC 6531 §3.4")
    wire = ehlo()
    wire.feed(b"MAIL FROM:<a@example.com>\r\n")
    wire.feed("RCPT TO:<δοκιμή@example.com>\r\n".encode())
    assert codes(wire) == ["utf8-address-without-smtputf8"]


def test_a_utf8_address_with_smtputf8() -> None:
    wire = ehlo()
    wire.feed("MAIL FROM:<δοκιμή@example.com> SMTPUTF8\r\n".encode())
    wire.feed("RCPT TO:<δοκιμή@example.com>\r\n".encode())
    assert findings(wire) == []


# -- STARTTLS and AUTH (RFC 3207 §4.2, RFC 4954 §4) --------------------------------------------
@pytest.mark.parametrize("first, found", [
    (b"MAIL FROM:<a@example.com>", ["no-ehlo-after-starttls"]), (b"EHLO client.example", []),
    (b"HELO client.example", []), (b"QUIT", []),
])  # fmt: skip
def test_ehlo_again_after_starttls(first: bytes, found: list[str]) -> None:
    wire = ehlo()
    wire.feed(b"STARTTLS\r\n")
    wire.feed(first + b"\r\n")
    assert codes(wire) == found


@pytest.mark.parametrize("name, auth, found", [
    (b"client.example", b"AUTH PLAIN AGdvb2RhdXRoQGV4YW1wbGUuY29tAHBhc3N3b3Jk", ["auth-cleartext-without-tls"]),
    (b"client.example", b"AUTH LOGIN", ["auth-cleartext-without-tls"]),
    (b"client.example", b"AUTH CRAM-MD5", []),
    (b"nostarttls.example", b"AUTH LOGIN", []),
])  # fmt: skip
def test_cleartext_auth_while_starttls_was_offered(name: bytes, auth: bytes, found: list[str]) -> None:
    wire = ehlo(name)
    wire.feed(auth + b"\r\n")
    assert codes(wire) == found
    if found:
        [warning] = findings(wire)
        assert warning.severity == "warning" and warning.rfc == "RFC 4954 §4; RFC 4616 §6"


# -- SIZE (RFC 1870) ----------------------------------------------------------------------------
def test_more_than_the_declared_size() -> None:
    wire = in_data(mail=b"MAIL FROM:<a@example.com> SIZE=10")
    assert wire.feed(b"x" * 20 + b"\r\n.\r\n") == ACCEPTED
    [found] = findings(wire)
    assert (found.code, found.severity) == ("size-exceeds-declared", "warning")
    assert found.explanation == "the message was 22 octets, SIZE=10 was declared"


def test_more_than_the_advertised_size() -> None:
    wire = in_data(b"size1000.example")
    out = wire.feed((b"x" * 98 + b"\r\n") * 20 + b".\r\n")
    assert out == b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"  # as ever
    [found] = findings(wire)
    assert (found.code, found.command) == ("size-exceeds-advertised", "DATA")
    assert found.explanation == "the message was 2,000 octets, SIZE 1000 was advertised"


def test_size_not_advertised_is_no_finding() -> None:
    wire = in_data(b"size1000-nosize.example")
    wire.feed((b"x" * 98 + b"\r\n") * 20 + b".\r\n")
    assert findings(wire) == []


# -- closing (RFC 5321 §4.1.1.10) -----------------------------------------------------------------
def test_closed_without_quit() -> None:
    wire = ehlo()
    wire.feed(b"")
    assert wire.closed
    [found] = findings(wire)
    assert (found.code, found.command, found.rfc) == ("no-quit", "", "RFC 5321 §4.1.1.10")


def test_closed_after_quit_or_by_the_server_is_no_finding() -> None:
    wire = ehlo()
    wire.feed(b"QUIT\r\n")
    wire.feed(b"")
    wire2 = ehlo()
    wire2.feed(b"MAIL FROM:<mail421@example.com>\r\n")
    wire2.feed(b"")
    assert findings(wire) == [] and findings(wire2) == []


def test_a_failed_handshake_is_no_finding() -> None:
    wire = ehlo(handshake_ok=False)
    wire.feed(b"STARTTLS\r\n")
    assert wire.handshakes == 1 and wire.closed
    assert findings(wire) == []


def test_a_failed_implicit_tls_handshake_is_no_finding() -> None:
    found = Found()
    session = Session(Context(), handshake_first=True, recorder=found)
    assert session.greeting() == [StartTLS()]
    session.receive_data(b"")
    assert session.closed and found.findings == []


def test_a_close_during_a_server_wait_is_no_finding() -> None:
    wire = ehlo(command_delay=1.0)
    wire.session.receive_data(b"QUIT\r\n")  # the delay's Wait, never answered
    wire.session.receive_data(b"")
    assert wire.session.closed and findings(wire) == []
