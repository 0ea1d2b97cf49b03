"""Property-based fuzzing of the pure core (``Session`` and the dispatcher)
with hypothesis: SMTP-shaped sessions, garbage included, fed through the
fake shell of ``fakeshell`` (which runs every action as the server does).

For every input:
- no exception escapes the core;
- every reply line is well formed (three digits, ``-`` or space, CRLF), and a
  multi-line reply keeps one code;
- nothing is sent after a 421, and the session is then closed;
- the replies and the stored messages do not depend on how the input is split
  into reads;
- every ``250 … Message accepted`` corresponds to exactly one commit (and
  a storage failure to none).

The default run is bounded (a few seconds).  To fuzz for longer::

    python3 -m pytest tests/test_fuzz_core.py --hypothesis-profile=long

(``BADSMTP_FUZZ_EXAMPLES=N`` sets the number of examples of that profile,
20,000 unless told; ``--hypothesis-seed=N`` replays a run.  The profiles are
registered in ``conftest.py``.)
"""

from __future__ import annotations

import re

from fakeshell import Wire
from helpers import b64b
from hypothesis import given
from hypothesis import strategies as st

from badsmtp.protocol import Context

_LINE = re.compile(rb"(\d{3})([ -])[^\r\n]*\r\n")


# -- what a client may send -----------------------------------------------------------
NAMES = st.sampled_from([
    "client.example", "size1000.example", "nochunking-nopipelining.example",
    "noenhancedstatuscodes.example", "helo421.example", "helo550.example", "reject.example",
    "dlay1.example", "authplain.example", "nosmtputf8.example",
    # Not lfreplies, longreplies or mixedreplies: they break the reply shape
    # on purpose, which the checks below would report (test_reply_faults.py).
    "helo421x1.example", "splitreplies.example", "bytereplies.example",
    "certexpired.example", "tlsabort.example",
])  # fmt: skip
LOCALS = st.sampled_from([
    "alice", "bob", "mail452", "rcpt550", "rcpt550_5.1.1", "data554", "data451",
    "rset421", "noop451", "quit250", "starttls454", "auth535", "exists", "unknown",
    '"quoted"', '"a\\"b"', '"x\rX-Injected:yes"', "a\x00b", "jösé", "", "a..b",
    "rcpt451x2+t", "mail421x1", "data452x1+a", "noack", "noackx1", "slowack1",
    "dropafter0", "dropafter5", "dropafter3x1+z", "rcpt550x0", "noop451x999+q-_",
])  # fmt: skip
DOMAINS = st.sampled_from(["example.com", "Example.ORG", "[192.0.2.1]", "exämple.com", "", "x..y"])


@st.composite
def _address(draw: st.DrawFn) -> bytes:
    return f"{draw(LOCALS)}@{draw(DOMAINS)}".encode()


# A BDAT chunk that spells a transaction: it must never run (RFC 3030 §2),
# whatever the BDAT's verdict.  The rest of the generator keeps every other
# command line whole, so nothing else can make these octets a command.
SMUGGLED = (b"RSET\r\nMAIL FROM:<smuggler@example.net>\r\nRCPT TO:<victim@example.org>\r\n"
            b"DATA\r\nSubject: smuggled\r\n\r\n.\r\n")  # fmt: skip


def _content() -> st.SearchStrategy[bytes]:
    line = st.sampled_from([
        b"Subject: fuzz", b"", b".", b"..", b".leading", b"QUIT", b"NOOP", b"\x00\xff",
        b"x" * 1200,
    ])  # fmt: skip
    ends = st.sampled_from([b"\r\n", b"\n", b"\r"])
    return st.lists(st.tuples(line, ends), max_size=8).map(lambda ls: b"".join(a + b for a, b in ls))


@st.composite
def _command(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from([
        "ehlo", "helo", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "help",
        "auth", "garbage", "long", "empty", "mail", "rcpt", "bdat",
    ]))  # fmt: skip
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    if kind in ("ehlo", "helo"):
        return kind.upper().encode() + b" " + draw(NAMES).encode() + end
    if kind == "mail":
        size = draw(st.sampled_from([b"", b" SIZE=100", b" SIZE=99999999", b" BODY=8BITMIME"]))
        return b"MAIL FROM:<" + draw(_address()) + b">" + size + end
    if kind == "rcpt":
        return b"RCPT TO:<" + draw(_address()) + b">" + end
    if kind == "data":
        return b"DATA" + end + draw(_content()) + b".\r\n"
    if kind == "bdat":
        chunk = draw(st.binary(max_size=40) | _content() | st.just(SMUGGLED))
        # A size shorter than the chunk is a client's framing error: what is
        # left is read as commands (never the smuggled ones, sent exact).
        size = len(chunk) if chunk == SMUGGLED else draw(st.sampled_from([len(chunk), len(chunk) // 2, 0]))
        last = draw(st.sampled_from([b"", b" LAST", b" last", b" LASTX"]))
        return b"BDAT %d" % size + last + end + chunk + (end if size < len(chunk) else b"")
    if kind == "vrfy":
        return b"VRFY " + draw(st.sampled_from([b"exists@example.com", b"<unknown@x.org>", b"(" * 4000, b"\"A\" <ambiguous@x>"])) + end
    if kind == "auth":
        return draw(st.sampled_from([
            b"AUTH PLAIN " + b64b("\x00alice\x00pw") + end,
            b"AUTH PLAIN " + b64b("\x00badauth\x00pw") + end,
            b"AUTH LOGIN" + end + b64b("alice") + end + b64b("pw") + end,
            b"AUTH PLAIN" + end + b"*" + end,
            b"AUTH CRAM-MD5" + end + b"!!notbase64" + end,
            b"AUTH XOAUTH2 " + b64b("user=x\x01auth=Bearer t\x01\x01") + end + end,
        ]))  # fmt: skip
    if kind == "garbage":  # a whole line of it
        return draw(st.binary(max_size=30)).replace(b"\n", b"") + end
    if kind == "long":
        return b"NOOP " + b"y" * draw(st.sampled_from([4090, 4200, 13000])) + end
    if kind == "empty":
        return end
    return kind.upper().encode() + end


# QUIT and STARTTLS (whose handshake the fake shell fails) end a session:
# only ever last, so what comes before them is explored.
_LAST = st.sampled_from([b"", b"QUIT\r\n", b"STARTTLS\r\nNOOP\r\n"])
SESSIONS = st.builds(lambda cs, last: b"".join(cs) + last,
                     st.lists(_command(), min_size=1, max_size=14), _LAST)  # fmt: skip


# -- the shell ------------------------------------------------------------------------------
def _feed(data: bytes, cuts: list[int], fail_delivery: int | None) -> Wire:
    """``data`` fed in the pieces ``cuts`` makes, through a fake shell whose
    ``fail_delivery``-th delivery fails at its first write (the same delivery
    however the input is split)."""
    wire = Wire(ctx=Context(max_recipients=5), handshake_ok=False, fail_delivery=fail_delivery)
    last = 0
    for cut in [*sorted({c for c in cuts if 0 < c < len(data)}), len(data)]:
        wire.feed(data[last:cut])
        last = cut
    return wire


def _check_replies(sent: bytes) -> list[int]:
    """Every line well formed; one code per multi-line reply.  The codes."""
    codes: list[int] = []
    pos, open_code = 0, None
    while pos < len(sent):
        line = _LINE.match(sent, pos)
        assert line is not None, f"malformed reply at {pos}: {sent[pos:pos + 80]!r}"
        code = int(line.group(1))
        if open_code is not None:
            assert code == open_code, f"a multi-line reply changed its code: {sent!r}"
        open_code = code if line.group(2) == b"-" else None
        if open_code is None:
            codes.append(code)
        pos = line.end()
    assert open_code is None, "a multi-line reply never ended"
    return codes


@given(data=SESSIONS, cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=6),
       fail=st.none() | st.integers(min_value=1, max_value=3))  # fmt: skip
def test_the_core_holds_its_promises_on_any_input(data: bytes, cuts: list[int], fail: int | None) -> None:
    whole = _feed(data, [], fail)  # the fake shell asserts action order (nothing after Close)
    codes = _check_replies(whole.sent)
    if 421 in codes:  # a 421 is the last reply, and it closed the session
        assert codes.index(421) == len(codes) - 1 and whole.closed
    accepted = whole.sent.count(b"Message accepted for delivery\r\n")
    assert accepted == len(whole.messages), "acknowledged messages and commits differ"
    for envelope, _ in whole.messages:
        addresses = (envelope.sender, *envelope.recipients)
        assert not any(c in "\r\n\x00" for a in addresses for c in a), "header injection"
        assert "smuggler@example.net" not in addresses, "content was run as commands"
    step = 1 if len(data) < 3000 else 7  # byte by byte, or nearly
    for how in (cuts, list(range(step, len(data), step))):
        split = _feed(data, how, fail)
        assert split.sent == whole.sent
        assert split.messages == whole.messages
