"""DATA in the session, driven through the fake shell (RFC 5321 §4.1.1.4,
§4.5.2): the end of data and dot-unstuffing fed whole, byte by byte, with
trailing data and split at every byte, the hand-offs to the message store
(Begin, Write, Commit, Abort) and their failures, the size limit, and what a
commit's result does to the transaction.  No sockets."""

from __future__ import annotations

import pytest
from fakeshell import ENVELOPE, HOW, data_wire, phase, size_exceeded, without_findings
from wire import ACCEPTED, BYE, GO_AHEAD, MAIL_OK, OK, RCPT_OK

from badsmtp import replies
from badsmtp.actions import Abort, Begin, Close, Commit, Envelope, Send, Write
from badsmtp.protocol import Phase
from badsmtp.replies import Reply


# == DATA (RFC 5321 §4.1.1.4) =============================================================
@pytest.mark.parametrize(
    "content, stored",
    [
        (b"Subject: hi\r\n\r\nbody\r\n", b"Subject: hi\r\n\r\nbody\r\n"),
        (b"", b""),
        (b"..hidden\r\n", b".hidden\r\n"),
        (b"..\r\n", b".\r\n"),
        (b"...\r\n", b"..\r\n"),
        (b"a\r\n..\r\n..b\r\n", b"a\r\n.\r\n.b\r\n"),
        (b"not.stuffed\r\n x.\r\n", b"not.stuffed\r\n x.\r\n"),
        (b"\r\n\r\n", b"\r\n\r\n"),
        (b"no final newline? no: CRLF needed\r\n", b"no final newline? no: CRLF needed\r\n"),
        (b"8bit \xe9\xff\x00 bytes\r\n", b"8bit \xe9\xff\x00 bytes\r\n"),
        (b"MAIL FROM:<x@y.example>\r\nQUIT\r\n", b"MAIL FROM:<x@y.example>\r\nQUIT\r\n"),
        (b"x" * 10_000 + b"\r\n", b"x" * 10_000 + b"\r\n"),
        (b"bare\nlf\r\n", b"bare\nlf\r\n"),
    ],
)
@pytest.mark.parametrize("how", HOW)
def test_data_content(content: bytes, stored: bytes, how: str) -> None:
    wire = data_wire()
    out = wire.feed_how(b"DATA\r\n" + content + b".\r\n", how)
    assert out == GO_AHEAD + ACCEPTED
    assert wire.contents == [stored]
    envelope = wire.messages[0][0]
    assert envelope == Envelope("sender@example.com", ("rcpt@example.com",), "client.example", False, None, len(stored))
    assert phase(wire) is Phase.MAIL and wire.session.state.messages == 1


@pytest.mark.parametrize(
    "content, stored",
    [
        # A "." ended by a bare LF (or CR) is content, not the end: only CRLF.CRLF
        # ends DATA (RFC 5321 §4.1.1.4), which closes the SMTP-smuggling hole.
        (b"a\r\n.\nMAIL FROM:<x@y.example>\r\nQUIT\r\n", b"a\r\n\nMAIL FROM:<x@y.example>\r\nQUIT\r\n"),
        (b"a\n.\nb\r\n", b"a\n\nb\r\n"),
        (b"a\n.\r\nb\r\n", b"a\n\r\nb\r\n"),
        (b"a\r\n.\rQUIT\r\n", b"a\r\n\rQUIT\r\n"),
        (b"a\r\n. \r\n", b"a\r\n \r\n"),
    ],
)
@pytest.mark.parametrize("how", HOW)
def test_only_crlf_dot_crlf_ends_data(content: bytes, stored: bytes, how: str) -> None:
    wire = data_wire()
    out = wire.feed_how(b"DATA\r\n" + content + b".\r\n", how)
    assert out == GO_AHEAD + ACCEPTED
    assert wire.contents == [stored]
    assert not wire.closed


@pytest.mark.parametrize("how", HOW)
def test_crlf_dot_crlf_ends_data(how: str) -> None:
    wire = data_wire()  # twin of the above: here the "." line is the end
    out = wire.feed_how(b"DATA\r\na\r\n.\r\nQUIT\r\n", how)
    assert out == GO_AHEAD + ACCEPTED + BYE
    assert wire.contents == [b"a\r\n"] and wire.closed


@pytest.mark.parametrize("how", HOW)
def test_data_then_pipelined_commands(how: str) -> None:
    wire = data_wire()
    out = wire.feed_how(b"DATA\r\none\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                        b"DATA\r\ntwo\r\n.\r\n", how)
    assert out == GO_AHEAD + ACCEPTED + MAIL_OK + RCPT_OK + GO_AHEAD + ACCEPTED
    assert wire.contents == [b"one\r\n", b"two\r\n"]


@pytest.mark.parametrize(
    "stream",
    [
        b"DATA\r\nSubject: x\r\n\r\n..a\r\n.b\r\n\r\n.\r\n..\r\nline\n.\nend\r\n.\r\nNOOP\r\n",
        b"DATA\r\n.\r\nNOOP\r\n",
        b"DATA\r\n\r\n.\r\n\r\n.\r\n",
        b"DATA\r\n..\r\n.\r\n",
    ],
)
def test_data_split_at_every_byte_boundary(stream: bytes) -> None:
    whole = data_wire()
    expected = whole.feed(stream)
    assert whole.contents
    for cut in range(1, len(stream)):
        wire = data_wire()
        out = wire.feed(stream[:cut]) + wire.feed(stream[cut:])
        assert (out, wire.contents) == (expected, whole.contents), cut
    for cut in range(1, len(stream) - 1):  # and in three pieces
        wire = data_wire()
        out = wire.feed(stream[:cut]) + wire.feed(stream[cut : cut + 2]) + wire.feed(stream[cut + 2 :])
        assert (out, wire.contents) == (expected, whole.contents), cut
    wire = data_wire()
    assert (wire.feed_bytewise(stream), wire.contents) == (expected, whole.contents)


def test_data_content_streams_and_memory_stays_bounded() -> None:
    wire = data_wire()
    wire.feed(b"DATA\r\n")
    for _ in range(100):
        wire.feed(b"y" * 1000 + b"\r\n")
        assert len(wire.session._buf) <= 4
    assert wire.feed(b".\r\n") == ACCEPTED
    assert wire.contents == [(b"y" * 1000 + b"\r\n") * 100]


def test_data_without_storage_counts_only() -> None:
    wire = data_wire(stream=False)
    assert wire.feed(b"DATA\r\nhello\r\n.\r\n") == GO_AHEAD + ACCEPTED
    assert not any(isinstance(a, (Begin, Write, Abort)) for a in wire.actions)
    commits = [a for a in wire.actions if isinstance(a, Commit)]
    assert [c.envelope.size for c in commits] == [7]


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("ehlo", [b"EHLO size1000.example", b"EHLO size1000-noenhancedstatuscodes.example"])
def test_data_size_limit(how: str, ehlo: bytes) -> None:
    wire = data_wire(ehlo)
    enhanced = b"noenhanced" not in ehlo
    out = wire.feed_how(b"DATA\r\n" + b"x" * 999 + b"\r\n.\r\n", how)  # 1001 octets
    assert out == GO_AHEAD + size_exceeded(1000, enhanced)
    assert wire.messages == [] and wire.aborted == 1
    assert not any(isinstance(a, Commit) for a in wire.actions)
    assert phase(wire) is Phase.MAIL
    # Twin: exactly the limit is accepted.
    wire.feed(ENVELOPE)
    out = wire.feed_how(b"DATA\r\n" + b"x" * 998 + b"\r\n.\r\n", how)
    assert out == GO_AHEAD + (ACCEPTED if enhanced else b"250 OK Message accepted for delivery\r\n")
    assert wire.contents == [b"x" * 998 + b"\r\n"]


def test_data_size_counts_unstuffed_octets() -> None:
    wire = data_wire(b"EHLO size1000.example")
    assert wire.feed(b"DATA\r\n" + (b"." * 999 + b"\r\n")) == GO_AHEAD
    assert wire.feed(b".\r\n") == ACCEPTED  # 998 dots + CRLF after unstuffing


def test_data_oversize_keeps_reading_until_the_end() -> None:
    wire = data_wire(b"EHLO size1000.example")
    wire.feed(b"DATA\r\n")
    for _ in range(50):
        assert wire.feed(b"z" * 500 + b"\r\nQUIT\r\n") == b""
        assert len(wire.session._buf) <= 4
    writes = sum(len(a.data) for a in wire.actions if isinstance(a, Write))
    assert writes <= 1000
    assert wire.feed(b".\r\nNOOP\r\n") == size_exceeded(1000) + OK
    assert not wire.closed and wire.messages == []


def test_data_abort_on_client_eof() -> None:
    wire = data_wire()
    wire.feed(b"DATA\r\npartial content\r\n")
    assert wire.feed(b"") == b""
    assert wire.closed and wire.aborted == 1 and wire.messages == []
    assert isinstance(wire.actions[-1], Close)


def test_data_commit_error() -> None:
    wire = data_wire(commit_error=replies.STORE_UNAVAILABLE)
    out = wire.feed(b"DATA\r\nx\r\n.\r\nRCPT TO:<b@example.com>\r\n")
    assert out == GO_AHEAD + b"550 5.2.1 Requested action not taken: mailbox unavailable\r\n" + (
        b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n"
    )
    assert phase(wire) is Phase.MAIL and wire.session.state.messages == 0


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("failure", ["begin", "write"])
@pytest.mark.parametrize("error, reply", [
    (replies.STORE_FAILED, b"451 4.3.0 Requested action aborted: local error in processing\r\n"),
    (replies.STORE_QUOTA, b"452 4.2.2 Requested action not taken: insufficient system storage\r\n"),
])
def test_data_store_failure_answers_the_end_of_content(how: str, failure: str, error: Reply, reply: bytes) -> None:
    wire = data_wire(b"EHLO client.example", **{f"{failure}_error": error})
    out = wire.feed_how(b"DATA\r\nline one\r\nline two\r\n.\r\n", how)
    assert out == GO_AHEAD + reply
    assert wire.messages == [] and phase(wire) is Phase.MAIL
    # The next transaction starts clean.
    wire.begin_error = wire.write_error = None
    wire.feed(ENVELOPE)
    assert wire.feed(b"DATA\r\nok\r\n.\r\n") == GO_AHEAD + ACCEPTED
    assert wire.contents == [b"ok\r\n"]


def test_size_limit_wins_over_a_store_failure() -> None:
    wire = data_wire(b"EHLO size1000.example", begin_error=replies.STORE_FAILED)
    assert wire.feed(b"DATA\r\n" + b"q" * 2000 + b"\r\n.\r\n") == GO_AHEAD + size_exceeded(1000)


# == commit results (RFC 5321 §4.1.1.4) =========================================
def test_commit_done_with_an_error_ends_the_transaction() -> None:
    wire = data_wire()
    actions = wire.session.receive_data(b"DATA\r\nbody\r\n.\r\nNOOP\r\n")
    assert isinstance(actions[-1], Commit)
    assert wire.session.receive_data(b"RSET\r\n") == []  # paused: held until committed
    after = without_findings(wire.session.commit_done(replies.STORE_QUOTA))
    assert after == [Send(b"452 4.2.2 Requested action not taken: insufficient system storage\r\n" + OK + OK)]
    assert phase(wire) is Phase.MAIL and wire.session.state.messages == 0


def test_commit_done_success_counts_the_message() -> None:
    wire = data_wire()
    actions = wire.session.receive_data(b"DATA\r\nbody\r\n.\r\nNOOP\r\n")
    assert isinstance(actions[-1], Commit) and actions[-1].envelope.size == 6
    assert wire.session.commit_done(None) == [Send(ACCEPTED + OK)]
    assert wire.session.state.messages == 1 and wire.session.state.sender is None
