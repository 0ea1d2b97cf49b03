"""BDAT in the session, driven through the fake shell (RFC 3030): chunks
read in full before their verdict and never parsed, fed whole, byte by byte,
with trailing data and split at every byte; syntax errors, the size limit over
one or several chunks, triggers on the last chunk, RSET, store failures.
No sockets."""

from __future__ import annotations

import pytest
from fakeshell import ENVELOPE, HOW, NO_RCPTS, SYNTAX, data_wire, greeted, phase, size_exceeded
from wire import ACCEPTED, OK, RCPT_OK

from badsmtp import replies
from badsmtp.actions import Commit, Write
from badsmtp.protocol import Phase


# == BDAT (RFC 3030) ===============================================================
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
