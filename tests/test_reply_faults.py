"""Reply-framing faults (README, Breaking the replies; badsmtp(1), EHLO
KEYWORDS): splitreplies, bytereplies, lfreplies, longreplies, mixedreplies.
The pure core gives the exact octets and write boundaries of every reply;
end to end, smtplib and swaks are held to what they do with each (both
cope with all five), a client that does not cope fails visibly, and the
transcript shows the writes as sent (swaks: Debian package swaks)."""

from __future__ import annotations

import smtplib

import pytest
from fakeshell import Wire, greeted
from helpers import Client, serving
from test_interop import needs_swaks, swaks
from wire import EHLO_REPLY, GREETING, OK

import badsmtp
from badsmtp import BadSMTP
from badsmtp.actions import Send, SplitSend
from badsmtp.replyfaults import KEYWORDS, ReplyFaults, frame, reply_faults

NOOP_OK = b"250 2.0.0 OK\r\n"
MIXED_EHLO = EHLO_REPLY.replace(b"250-AUTH", b"251-AUTH")


def sends(wire: Wire) -> list[Send]:
    return [a for a in wire.actions if isinstance(a, Send)]


def last_send(wire: Wire) -> Send:
    return sends(wire)[-1]


# -- the keywords ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["client.example", "replies.example", "nopipelining.example"])
def test_names_without_a_keyword_have_no_faults(name: str) -> None:
    assert reply_faults(name) is None


def test_keywords_are_found_anywhere_and_combine_in_a_fixed_order() -> None:
    assert reply_faults("mx-lfreplies.splitreplies.example") == ReplyFaults(("splitreplies", "lfreplies"))
    assert str(reply_faults("longreplies.example")) == "longreplies"


# -- the pure framing of one reply ----------------------------------------------------------
def test_frame_splitreplies_cuts_the_first_line_in_two() -> None:
    assert frame(NOOP_OK, ReplyFaults(("splitreplies",)), False) == (NOOP_OK, (6,))


def test_frame_bytereplies_cuts_between_every_octet() -> None:
    assert frame(b"250 OK\r\n", ReplyFaults(("bytereplies", "splitreplies")), False) == (
        b"250 OK\r\n", (1, 2, 3, 4, 5, 6, 7),
    )  # fmt: skip


def test_frame_lfreplies_ends_lines_in_a_bare_lf() -> None:
    assert frame(b"250-a\r\n250 b\r\n", ReplyFaults(("lfreplies",)), False) == (b"250-a\n250 b\n", ())


def test_frame_longreplies_pads_every_line_to_2000_octets() -> None:
    wire, cuts = frame(b"250-a\r\n250 b\r\n", ReplyFaults(("longreplies",)), False)
    assert cuts == ()
    assert wire == b"250-a" + b" " * 1995 + b"\r\n" + b"250 b" + b" " * 1995 + b"\r\n"


def test_frame_mixedreplies_alters_the_ehlo_reply_only() -> None:
    faults = ReplyFaults(("mixedreplies",))
    assert frame(EHLO_REPLY, faults, True) == (MIXED_EHLO, ())
    assert frame(EHLO_REPLY, faults, False) == (EHLO_REPLY, ())
    # An EHLO reply without a capability line: its first line carries 251.
    assert frame(b"250-x\r\n250 OK\r\n", faults, True) == (b"251-x\r\n250 OK\r\n", ())


# -- in the session: from the reply to that EHLO on --------------------------------------------
def test_splitreplies_in_the_session() -> None:
    wire = greeted(b"EHLO splitreplies.example")
    assert sends(wire) == [Send(GREETING), SplitSend(EHLO_REPLY, (8,))]  # the greeting came before
    wire.feed(b"NOOP\r\n")
    assert last_send(wire) == SplitSend(NOOP_OK, (6,))
    assert last_send(wire).writes == (b"250 2.", b"0.0 OK\r\n")


def test_pipelined_replies_are_each_split_in_one_send() -> None:
    wire = greeted(b"EHLO splitreplies.example")
    assert wire.feed(b"NOOP\r\nNOOP\r\n") == NOOP_OK * 2
    assert last_send(wire).writes == (b"250 2.", b"0.0 OK\r\n250 2.", b"0.0 OK\r\n")


def test_bytereplies_in_the_session() -> None:
    wire = greeted(b"EHLO mx.bytereplies.example")
    assert last_send(wire) == SplitSend(EHLO_REPLY, tuple(range(1, len(EHLO_REPLY))))
    wire.feed(b"NOOP\r\n")
    assert last_send(wire).writes == tuple(bytes([octet]) for octet in NOOP_OK)


def test_lfreplies_in_the_session() -> None:
    wire = greeted(b"EHLO lfreplies.example")
    assert last_send(wire) == Send(EHLO_REPLY.replace(b"\r\n", b"\n"))
    assert wire.feed(b"NOOP\r\n") == b"250 2.0.0 OK\n"


def test_longreplies_in_the_session() -> None:
    wire = greeted(b"EHLO longreplies.example")
    lines = last_send(wire).data.split(b"\r\n")[:-1]
    assert [line.rstrip(b" ") + b"\r\n" for line in lines] == EHLO_REPLY.splitlines(keepends=True)
    assert {len(line) for line in lines} == {2000}
    assert wire.feed(b"NOOP\r\n") == b"250 2.0.0 OK".ljust(2000) + b"\r\n"


def test_mixedreplies_in_the_session() -> None:
    wire = greeted(b"EHLO mixedreplies.example")
    assert last_send(wire) == Send(MIXED_EHLO)
    assert wire.feed(b"NOOP\r\n") == NOOP_OK  # only the EHLO reply is mixed
    # With one capability line, that line; with none, the first line.
    off = b"noauth-no8bit-nosize-nopipelining-nostarttls-nochunking-nosmtputf8-mixedreplies.x"
    assert wire.feed(b"EHLO " + off + b"\r\n") == (
        b"250-badsmtp.test\r\n251-ENHANCEDSTATUSCODES\r\n250 OK\r\n"
    )
    assert wire.feed(b"EHLO noenhancedstatuscodes-" + off + b"\r\n") == b"251-badsmtp.test\r\n250 OK\r\n"


def test_faults_combine() -> None:
    wire = greeted(b"EHLO lfreplies-splitreplies.example")
    wire.feed(b"NOOP\r\n")
    assert last_send(wire).writes == (b"250 2.", b"0.0 OK\n")


@pytest.mark.parametrize("again", [b"EHLO client.example", b"HELO client.example"])
def test_a_new_ehlo_or_helo_without_the_keyword_ends_the_fault(again: bytes) -> None:
    wire = greeted(b"EHLO splitreplies.example")
    wire.feed(again + b"\r\n")
    assert type(last_send(wire)) is Send
    wire.feed(b"NOOP\r\n")
    assert last_send(wire) in (Send(OK), Send(b"250 OK\r\n"))  # HELO: no enhanced codes


def test_starttls_ends_the_fault_after_its_220() -> None:
    wire = greeted(b"EHLO splitreplies.example")
    wire.feed(b"STARTTLS\r\n")
    assert sends(wire)[-1] == SplitSend(b"220 2.0.0 Ready to start TLS\r\n", (14,))  # before the handshake
    assert wire.feed(b"NOOP\r\n") == b"250 OK\r\n"  # a new session: no EHLO yet
    assert last_send(wire) == Send(b"250 OK\r\n")


def test_a_rejected_ehlo_keeps_the_faults_in_force() -> None:
    wire = greeted(b"EHLO splitreplies.example")
    wire.feed(b"EHLO reject.example\r\n")
    assert last_send(wire) == SplitSend(b"502 Command not implemented\r\n", (13,))


def test_without_a_keyword_no_send_is_cut() -> None:
    wire = greeted()
    wire.feed(b"NOOP\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    assert {type(send) for send in sends(wire)} == {Send}


# -- builders --------------------------------------------------------------------------------
def test_ehlo_name_builds_the_keywords() -> None:
    assert badsmtp.ehlo_name(replies="split") == "splitreplies.example.com"
    assert badsmtp.ehlo_name(replies=["lf", "longreplies"], no=["auth"]) == (
        "noauth-lfreplies-longreplies.example.com"
    )
    assert {badsmtp.ehlo_name(replies=k).split(".")[0] for k in KEYWORDS} == set(KEYWORDS)
    with pytest.raises(ValueError, match="^unknown reply fault 'splt'; expected one of split, byte"):
        badsmtp.ehlo_name(replies="splt")
    with pytest.raises(ValueError, match="holds an EHLO keyword of its own"):
        badsmtp.ehlo_name(domain="lfreplies.org")


# -- end to end with smtplib -------------------------------------------------------------------
def _send_with_smtplib(server: BadSMTP, keyword: str) -> smtplib.SMTP:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname=f"{keyword}.example", timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], "Subject: framed\r\n\r\nhello\r\n")
    return client


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_smtplib_copes_with_every_reply_fault(keyword: str) -> None:
    """smtplib reads replies with ``readline`` (any write boundaries, a bare
    LF), strips each line's text (the padding), accepts lines of up to
    ``smtplib._MAXLINE`` (8,192) octets, and takes a multiline reply's code
    from its last line (251 in the middle goes unnoticed)."""
    with serving(ports=[0]) as server:
        client = _send_with_smtplib(server, keyword)
        [message] = server.wait_for_messages(1, timeout=5)
        [session] = server.wait_for_sessions(1, timeout=5)
    assert message.email["Subject"] == "framed"
    assert client.has_extn("auth") and client.has_extn("size")  # the EHLO reply was read in full
    ehlo = session.reply_to("EHLO")
    assert ehlo.faults == keyword
    assert session.reply_to("MAIL").faults == keyword
    assert session.greeting is not None and session.greeting.faults == ""
    writes = {"splitreplies": 2, "bytereplies": len(ehlo.wire)}.get(keyword, 1)
    assert len(ehlo.writes) == writes
    expected = {
        "lfreplies": EHLO_REPLY.replace(b"\r\n", b"\n"),
        "longreplies": b"".join(line.ljust(2000) + b"\r\n" for line in EHLO_REPLY.split(b"\r\n")[:-1]),
        "mixedreplies": MIXED_EHLO,
    }.get(keyword, EHLO_REPLY)
    assert ehlo.wire == expected
    shown = " + ".join(map(repr, ehlo.writes)) if writes <= 4 else repr(ehlo.wire)
    assert f"S! {keyword}: {writes} write(s): {shown}\n" in str(session)


def test_the_client_reads_exactly_the_framed_octets() -> None:
    with serving(ports=[0]) as server, Client(server.port) as client:
        assert client.reply() == GREETING
        client.send(b"EHLO lfreplies-bytereplies.example\r\nNOOP\r\nQUIT\r\n")
        got = client.read_to_eof()
    assert got == EHLO_REPLY.replace(b"\r\n", b"\n") + b"250 2.0.0 OK\n221 2.0.0 Bye\n"


def test_a_client_that_allows_only_512_octet_lines_fails_on_longreplies(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 5321 §4.5.3.1.5's 512 octets: smtplib with that limit gives up on
    the EHLO reply, visibly."""
    monkeypatch.setattr(smtplib, "_MAXLINE", 510)
    with (
        serving(ports=[0]) as server,
        smtplib.SMTP("127.0.0.1", server.port, local_hostname="longreplies.example", timeout=10) as client,
        pytest.raises(smtplib.SMTPResponseException) as caught,
    ):
        client.ehlo()
    assert (caught.value.smtp_code, caught.value.smtp_error) == (500, "Line too long.")


def test_a_strict_parser_sees_two_codes_in_the_mixed_ehlo_reply() -> None:
    with serving(ports=[0]) as server, Client(server.port) as client:
        assert client.reply() == GREETING
        reply = client.command(b"EHLO mixedreplies.example")
    codes = {line[:3] for line in reply.splitlines()}
    assert codes == {b"250", b"251"}  # RFC 5321 §4.2.1: one code for every line


@needs_swaks
@pytest.mark.parametrize("keyword", KEYWORDS)
def test_swaks_copes_with_every_reply_fault(keyword: str) -> None:
    """swaks (Net::SMTP-style line reading) delivers under every fault and
    prints the lines as it read them."""
    with serving(ports=[0]) as server:
        result = swaks(server.port, "--from", "alice@example.com", "--helo", f"{keyword}.example")
        [message] = server.wait_for_messages(1, timeout=5)
    assert result.returncode == 0, result.stdout + result.stderr
    assert message.helo == f"{keyword}.example"
    read = [line.rstrip(" ") for line in result.stdout.splitlines() if line.startswith("<-  ")]
    assert "<-  250 2.0.0 OK Message accepted for delivery" in read
    second = "251" if keyword == "mixedreplies" else "250"
    assert f"<-  {second}-AUTH PLAIN LOGIN CRAM-MD5 CRAM-SHA256 XOAUTH2" in read
