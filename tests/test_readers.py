"""The readers of :mod:`badsmtp.readers`, driven directly: exactly what
each one returns, fed whole, byte by byte, and with trailing data that it
must leave where it is (h11's rule).  Each positive has a negative twin.

The drivers below feed a reader the way :class:`badsmtp.framing.Framing`
does: the buffer grows by what arrives, the reader is called from where it
last stopped until it stops moving, and what it has passed is dropped."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from helpers import b64

from badsmtp import auth
from badsmtp.auth import Credentials
from badsmtp.framing import MAX_AUTH_LINE, MAX_LINE
from badsmtp.readers import AuthReader, ChunkReader, DataReader, LineReader, TooLong
from badsmtp.replies import Reply, ReplyError

HOW = ("whole", "bytewise", "trailing")
LIMIT = 32  # octets of a command line before its CR: small, so the boundaries stay readable
PARTIAL = b"RCPT TO:"  # trailing data for the line readers: not a line yet
TRAILER = b"NOOP\r\n"  # trailing data for DATA and BDAT: the next command, not content
CHALLENGE = "<1.2@badsmtp.test>"


def feeds(data: bytes, how: str, trailer: bytes) -> list[bytes]:
    if how == "whole":
        return [data]
    if how == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    return [data + trailer]


def left(how: str, trailer: bytes) -> bytes:
    """What must still be buffered once ``data`` is read: the trailing data."""
    return trailer if how == "trailing" else b""


# -- the drivers -------------------------------------------------------------------
Found = list[bytes | TooLong]


def read_lines(reader: LineReader, chunks: Sequence[bytes]) -> tuple[Found, bytes, int]:
    """The lines found, what is left buffered, and the most the buffer held
    between two feeds."""
    buf, found, held = b"", [], 0
    for chunk in chunks:
        buf += chunk
        pos = 0
        while True:
            after, line = reader(buf, pos)
            if line is not None:
                found.append(line)
            if after == pos:
                break
            pos = after
        buf = buf[pos:]
        held = max(held, len(buf))
    return found, buf, held


def read_data(reader: DataReader, chunks: Sequence[bytes]) -> tuple[bytes, bool, bytes, int]:
    """The content passed on, whether CRLF.CRLF ended it, what is left
    buffered, and the most the buffer held between two feeds before the end."""
    buf, pieces, ended, held = b"", [], False, 0
    for chunk in chunks:
        buf += chunk
        pos = 0
        while not ended:
            after, piece, ended = reader(buf, pos)
            pieces.append(piece)
            if after == pos and not ended:
                break
            pos = after
        buf = buf[pos:]
        if not ended:
            held = max(held, len(buf))
    return b"".join(pieces), ended, buf, held


def read_chunk(reader: ChunkReader, chunks: Sequence[bytes]) -> tuple[bytes, bytes]:
    """The chunk's octets taken, and what is left buffered."""
    buf, pieces = b"", []
    for chunk in chunks:
        buf += chunk
        pos = 0
        while True:
            after, piece = reader(buf, pos)
            pieces.append(piece)
            if after == pos:
                break
            pos = after
        buf = buf[pos:]
    return b"".join(pieces), buf


# == LineReader: command lines (RFC 5321 §2.3.8) ======================================
@pytest.mark.parametrize("how", HOW)
def test_lines_end_at_lf_and_keep_their_cr(how: str) -> None:
    found, rest, _ = read_lines(LineReader(LIMIT), feeds(b"EHLO a\r\nNOOP\r\n\r\n", how, PARTIAL))
    assert found == [b"EHLO a\r", b"NOOP\r", b"\r"]
    assert rest == left(how, PARTIAL)


@pytest.mark.parametrize("how", HOW)
def test_lines_end_at_a_bare_lf(how: str) -> None:
    found, rest, _ = read_lines(LineReader(LIMIT), feeds(b"EHLO a\nNOOP\n\n", how, PARTIAL))
    assert found == [b"EHLO a", b"NOOP", b""]
    assert rest == left(how, PARTIAL)


@pytest.mark.parametrize("how", ("whole", "bytewise"))
def test_no_line_without_its_lf(how: str) -> None:
    # Twin of the above: a CR alone ends nothing, and nothing is taken.
    data = b"EHLO a\rNOOP\r"
    reader = LineReader(LIMIT)
    found, rest, _ = read_lines(reader, feeds(data, how, b""))
    assert (found, rest) == ([], data)
    assert reader.mid_line(rest, 0) and reader.read_eof()


def test_a_call_returns_one_line_from_pos() -> None:
    reader = LineReader(LIMIT)
    buf = b"NOOP\r\nRSET\r\nQU"
    assert reader(buf, 0) == (6, b"NOOP\r")
    assert reader(buf, 6) == (12, b"RSET\r")
    assert reader(buf, 12) == (12, None)  # twin: the rest waits for its LF


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "data, line",
    [
        (b"x" * LIMIT + b"\r\n", b"x" * LIMIT + b"\r"),  # the limit, then its CR
        (b"x" * (LIMIT + 1) + b"\n", b"x" * (LIMIT + 1)),  # bare LF: room left for a CR
    ],
)
def test_a_line_at_the_limit_is_a_line(data: bytes, line: bytes, how: str) -> None:
    found, rest, _ = read_lines(LineReader(LIMIT), feeds(data, how, PARTIAL))
    assert found == [line]
    assert rest == left(how, PARTIAL)


# A TooLong reports the whole line's length (before its LF), however it came.
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("length", [LIMIT + 2, 10 * LIMIT])
def test_an_over_long_line_is_reported_once_at_its_lf(length: int, how: str) -> None:
    reader = LineReader(LIMIT)
    data = b"x" * (length - 1) + b"\r\nNOOP\r\n"
    found, rest, held = read_lines(reader, feeds(data, how, PARTIAL))
    assert found == [TooLong(length), b"NOOP\r"]
    assert rest == left(how, PARTIAL)
    assert held <= LIMIT + 1  # dropped as it arrives: never held whole
    assert reader.read_eof() and not reader.discarding


@pytest.mark.parametrize("how", ("whole", "bytewise"))
def test_an_over_long_line_without_its_lf_is_dropped_unreported(how: str) -> None:
    # Twin of the above: no report before its LF, but nothing of it is kept.
    reader = LineReader(LIMIT)
    found, rest, held = read_lines(reader, feeds(b"x" * (10 * LIMIT), how, b""))
    assert (found, rest) == ([], b"")
    assert held <= LIMIT + 1
    assert reader.discarding and not reader.read_eof()
    assert reader.mid_line(b"", 0)  # the shell still waits for the rest of a line
    assert read_lines(reader, [b"x\r\nNOOP\r\n"])[0] == [TooLong(10 * LIMIT + 2), b"NOOP\r"]


def test_read_eof_and_mid_line() -> None:
    reader = LineReader(LIMIT)
    assert reader.read_eof() and not reader.mid_line(b"", 0)
    assert reader.mid_line(b"NO", 0) and not reader.mid_line(b"NOOP\r\n", 6)
    reader(b"x" * (LIMIT + 2), 0)  # the start of an over-long line
    assert not reader.read_eof() and reader.mid_line(b"", 0)
    reader(b"\n", 0)
    assert reader.read_eof() and not reader.mid_line(b"", 0)


def test_each_reader_has_its_own_limit() -> None:
    # RFC 4954 §4: an AUTH line may be longer than a command line.
    data = b"x" * 5000 + b"\r\n"
    assert read_lines(LineReader(MAX_LINE), [data])[0] == [TooLong(5001)]
    plain = auth.exchange("PLAIN", None, CHALLENGE)
    assert read_lines(AuthReader(MAX_AUTH_LINE, "PLAIN", plain), [data])[0] == [data[:-1]]


# == DataReader: content up to CRLF.CRLF, dot-unstuffed (RFC 5321 §4.5.2) ===========
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "data, content, after",
    [
        (b"Subject: hi\r\n\r\nbody\r\n.\r\n", b"Subject: hi\r\n\r\nbody\r\n", b""),
        (b".\r\n", b"", b""),  # an empty message
        (b"\r\n.\r\n", b"\r\n", b""),
        (b"..one\r\nt..wo\r\n...three\r\n.\r\n", b".one\r\nt..wo\r\n..three\r\n", b""),
        (b"one\r\n.\r\ntwo\r\n.\r\n", b"one\r\n", b"two\r\n.\r\n"),  # the first one ends it
    ],
)
def test_data_ends_at_crlf_dot_crlf(data: bytes, content: bytes, after: bytes, how: str) -> None:
    got, ended, rest, held = read_data(DataReader(), feeds(data, how, TRAILER))
    assert (got, ended) == (content, True)
    assert rest == after + left(how, TRAILER)
    assert held <= 4  # only what may start the terminator waits: never the message whole


@pytest.mark.parametrize("how", ("whole", "bytewise"))
@pytest.mark.parametrize(
    "data, content, rest",
    [
        (b"body\r\n.\r", b"body", b"\r\n.\r"),
        (b"body\r\n..\r\n", b"body\r\n", b"..\r\n"),  # the last four octets wait, whatever they are
        (b"body", b"", b"body"),
        (b"", b"", b""),
    ],
)
def test_data_without_its_end(data: bytes, content: bytes, rest: bytes, how: str) -> None:
    # Twin of the above: no end, and up to four octets that might start it wait.
    reader = DataReader()
    assert read_data(reader, feeds(data, how, b""))[:3] == (content, False, rest)
    assert not reader.read_eof()  # the end of the stream here cuts the message short


def test_the_terminator_split_across_feeds_at_every_position() -> None:
    data = b"one\r\n..two\r\n.\r\n" + TRAILER
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            chunks = [data[:i], data[i:j], data[j:]]
            got, ended, rest, held = read_data(DataReader(), chunks)
            assert (got, ended, rest) == (b"one\r\n.two\r\n", True, TRAILER), chunks
            assert held <= 4, chunks


# SMTP smuggling: a "." line ended by a bare LF or CR is content (only
# CRLF.CRLF ends DATA); its dot is unstuffed like any dot starting a line.
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "data, content",
    [
        (b"a\r\n.\nMAIL FROM:<x@y.example>\r\n.\r\n", b"a\r\n\nMAIL FROM:<x@y.example>\r\n"),
        (b"a\n.\nb\r\n.\r\n", b"a\n\nb\r\n"),
        (b"a\n.\r\nb\r\n.\r\n", b"a\n\r\nb\r\n"),
        (b"a\r\n.\rQUIT\r\n.\r\n", b"a\r\n\rQUIT\r\n"),
        (b"a\r.\r\nb\r\n.\r\n", b"a\r.\r\nb\r\n"),
    ],
)
def test_only_crlf_dot_crlf_ends_data(data: bytes, content: bytes, how: str) -> None:
    got, ended, rest, _ = read_data(DataReader(), feeds(data, how, TRAILER))
    assert (got, ended) == (content, True)
    assert rest == left(how, TRAILER)


@pytest.mark.parametrize("how", ("whole", "bytewise"))
@pytest.mark.parametrize("data", [b"a\n.\n", b"a\r\n.\n", b"a\n.\r\n", b"a\r.\r\n", b"a\r\n.\r"])
def test_a_bare_lf_or_cr_dot_line_is_not_the_end(data: bytes, how: str) -> None:
    assert read_data(DataReader(), feeds(data, how, b""))[1] is False


def test_a_call_returns_what_it_took() -> None:
    reader = DataReader()
    buf = b"xx..a\r\n.\r\nNOOP\r\n"
    assert reader(buf, 2) == (10, b".a\r\n", True)  # from pos; the dot starts a line
    reader = DataReader()
    assert reader(b"abcdef", 0) == (2, b"ab", False)  # four octets wait
    assert reader(b"cdef\r\n", 0) == (2, b"cd", False)
    assert reader(b"ef\r\n", 0) == (0, b"", False)  # twin: nothing to pass on yet


# == ChunkReader: exactly the octets of a BDAT chunk (RFC 3030 §2) ==================
CHUNK = b"QUIT\r\n.\r\nRSET\r\n"  # looks like commands and an end of DATA: it is neither


@pytest.mark.parametrize("how", HOW)
def test_a_chunk_takes_exactly_its_octets(how: str) -> None:
    reader = ChunkReader(len(CHUNK), last=False)
    got, rest = read_chunk(reader, feeds(CHUNK, how, TRAILER))
    assert (got, rest) == (CHUNK, left(how, TRAILER))
    assert reader.left == 0 and reader.read_eof() and not reader.last


@pytest.mark.parametrize("how", ("whole", "bytewise"))
def test_a_chunk_short_of_its_size(how: str) -> None:
    # Twin of the above: one octet short, the chunk is not complete.
    reader = ChunkReader(len(CHUNK) + 1, last=True)
    assert read_chunk(reader, feeds(CHUNK, how, b"")) == (CHUNK, b"")
    assert reader.left == 1 and not reader.read_eof()
    assert read_chunk(reader, [b"!" + TRAILER]) == (b"!", TRAILER)
    assert reader.left == 0 and reader.read_eof() and reader.last


@pytest.mark.parametrize("how", HOW)
def test_a_chunk_of_zero_octets_takes_nothing(how: str) -> None:
    reader = ChunkReader(0, last=True)
    assert reader.read_eof()  # complete before anything arrives
    assert read_chunk(reader, feeds(b"", how, TRAILER)) == (b"", left(how, TRAILER))
    assert reader(TRAILER, 0) == (0, b"") and reader.left == 0


def test_a_call_takes_from_pos() -> None:
    reader = ChunkReader(3, last=False)
    assert reader(b"abcdef", 1) == (4, b"bcd")
    assert reader(b"abcdef", 4) == (4, b"")  # twin: complete, it takes no more
    reader = ChunkReader(3, last=False)
    assert reader(b"ab", 0) == (2, b"ab") and reader.left == 1


# == AuthReader: the lines of a SASL exchange (RFC 4954 §4) ==========================
def auth_reader(mechanism: str, initial: str | None = None) -> AuthReader:
    return AuthReader(MAX_AUTH_LINE, mechanism, auth.exchange(mechanism, initial, CHALLENGE))


def answer(reader: AuthReader, data: bytes, how: str) -> Reply | Credentials | None:
    """Read one line of ``data`` as the session does and step the exchange with it."""
    found, rest, _ = read_lines(reader, feeds(data, how, PARTIAL))
    assert len(found) == 1 and rest == left(how, PARTIAL)
    line = found[0]
    assert isinstance(line, bytes)
    return reader.step(line.rstrip())


def failure(reader: AuthReader, data: bytes, how: str) -> bytes:
    with pytest.raises(ReplyError) as caught:
        answer(reader, data, how)
    return caught.value.reply.render(True)


@pytest.mark.parametrize("how", HOW)
def test_auth_plain_after_an_empty_challenge(how: str) -> None:
    reader = auth_reader("PLAIN")
    challenge = reader.step(None)
    assert isinstance(challenge, Reply) and challenge.render(False) == b"334 \r\n"
    line = b64("\0user\0secret").encode() + b"\r\n"
    assert answer(reader, line, how) == Credentials("PLAIN", "user", "secret")


def test_auth_plain_with_an_initial_response() -> None:
    reader = auth_reader("PLAIN", b64("\0user\0secret"))
    assert reader.step(None) == Credentials("PLAIN", "user", "secret")  # no challenge at all


@pytest.mark.parametrize("how", HOW)
def test_auth_login_prompts_twice(how: str) -> None:
    reader = auth_reader("LOGIN")
    prompt = reader.step(None)
    assert isinstance(prompt, Reply) and prompt.render(False) == b"334 VXNlcm5hbWU6\r\n"
    prompt = answer(reader, b64("user").encode() + b"\r\n", how)
    assert isinstance(prompt, Reply) and prompt.render(False) == b"334 UGFzc3dvcmQ6\r\n"
    done = answer(reader, b64("secret").encode() + b"\r\n", how)
    assert done == Credentials("LOGIN", "user", "secret")


@pytest.mark.parametrize("how", HOW)
def test_auth_cancelled_by_a_star(how: str) -> None:
    reader = auth_reader("PLAIN")
    reader.step(None)
    assert failure(reader, b"*\r\n", how) == b"501 5.7.0 Authentication cancelled\r\n"


@pytest.mark.parametrize("how", HOW)
def test_auth_star_at_the_second_prompt_cancels_too(how: str) -> None:
    reader = auth_reader("LOGIN")
    reader.step(None)
    assert isinstance(answer(reader, b64("user").encode() + b"\r\n", how), Reply)
    assert failure(reader, b"*\r\n", how) == b"501 5.7.0 Authentication cancelled\r\n"


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("line", [b"AHVzZXIAc2VjcmV0=", b"AHVzZXIAc2VjcmV0!", b"**"])
def test_auth_bad_base64(line: bytes, how: str) -> None:
    # The twin is the PLAIN success above: b64("\0user\0secret") is "AHVzZXIAc2VjcmV0".
    assert b64("\0user\0secret") == "AHVzZXIAc2VjcmV0"
    reader = auth_reader("PLAIN")
    reader.step(None)
    assert failure(reader, line + b"\r\n", how) == b"501 5.5.2 Cannot decode response\r\n"
