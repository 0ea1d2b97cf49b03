"""Correctness under pipelining and faults, over real sockets: a refused
BDAT never lets its chunk be read as commands (RFC 3030 §2), and a storage
failure is charged to the message it belongs to however far the client
pipelined ahead: stored if and only if acknowledged."""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from helpers import Client, serving, wait_until
from wire import ACCEPTED, BYE, GREETING, LOCAL_ERROR, MAIL_OK, OK, RCPT_OK

from badsmtp import BadSMTP, Listener, Message, StorageError
from badsmtp.config import Role

NO_RCPTS = b"503 5.5.1 Bad sequence of commands\r\n"
SYNTAX = b"501 5.5.4 Syntax error in parameters\r\n"
# A chunk that spells a whole transaction of its own: if a refused BDAT let
# these octets be parsed, a message the client never sent would be stored.
SMUGGLED = (
    b"MAIL FROM:<smuggler@example.net>\r\n"
    b"RCPT TO:<victim@example.org>\r\n"
    b"DATA\r\n"
    b"Subject: smuggled\r\n\r\nThis message was never sent by the client.\r\n"
    b".\r\n"
)


def replies_of(stream: bytes) -> list[bytes]:
    return [line + b"\r\n" for line in stream.split(b"\r\n") if line]


def pipelined(port: int, data: bytes, ehlo: bytes = b"client.example") -> list[bytes]:
    """Send ``data`` in one write after the greeting and EHLO, then QUIT;
    every reply line until the server closes."""
    with Client(port) as c:
        assert c.reply() == GREETING
        c.send(b"EHLO " + ehlo + b"\r\n")
        assert c.reply().startswith(b"250-badsmtp.test\r\n")
        c.send(data + b"QUIT\r\n")
        return replies_of(c.read_to_eof())


REFUSED_BDAT = {
    # MAIL refused, so RCPT and BDAT are out of sequence (the case).
    "sequence": (
        b"MAIL FROM:<mail452@example.com>\r\nRCPT TO:<x@example.com>\r\n",
        b"BDAT %d LAST\r\n",
        [b"452 Requested action not taken: insufficient system storage\r\n",
         b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n",
         b"503 5.5.1 Bad sequence - BDAT not allowed in MAIL state\r\n"],
    ),
    "no valid recipients": (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<rcpt550@example.com>\r\n",
        b"BDAT %d LAST\r\n",
        [MAIL_OK, b"550 Requested action not taken: mailbox unavailable\r\n", NO_RCPTS],
    ),
    "syntax": (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
        b"BDAT %d LASTLY\r\n",
        [MAIL_OK, RCPT_OK, SYNTAX],
    ),
    "syntax mid-message": (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 3\r\nabc",
        b"BDAT %d LAST!\r\n",
        [MAIL_OK, RCPT_OK, OK, SYNTAX],
    ),
    "data trigger": (
        b"MAIL FROM:<data554@example.com>\r\nRCPT TO:<b@example.com>\r\n",
        b"BDAT %d LAST\r\n",
        [MAIL_OK, RCPT_OK, b"554 Transaction failed\r\n"],
    ),
    "size": (
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
        b"BDAT %d LAST\r\n",
        [MAIL_OK, RCPT_OK, b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"],
    ),
}


@pytest.mark.parametrize("reason", REFUSED_BDAT)
def test_a_refused_bdat_chunk_is_read_and_never_executed(tmp_path: Path, reason: str) -> None:
    before, bdat, expected = REFUSED_BDAT[reason]
    chunk = SMUGGLED + b"NOOP\r\n" * 200 if reason == "size" else SMUGGLED  # over 1000 octets
    with serving(ports=[0], mailbox_dir=tmp_path / "mb") as srv:
        got = pipelined(srv.port, before + bdat % len(chunk) + chunk, b"size1000.example")
        assert got == [*expected, BYE]  # no 250 or 354 for the smuggled commands
        assert srv.messages == []
    assert os.listdir(tmp_path / "mb" / "new") == []
    assert os.listdir(tmp_path / "mb" / "tmp") == []


def test_chunks_pipelined_after_a_refused_one_are_refused_too(server: BadSMTP) -> None:
    """RFC 3030 §2: the message failed; the rest of its chunks already in
    the pipeline are read and discarded, and none completes it."""
    got = pipelined(
        server.port,
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
        b"BDAT 4\r\nhead" b"BDAT 4 NOTLAST\r\nbody" b"BDAT 4 LAST\r\ntail",
    )
    assert got == [MAIL_OK, RCPT_OK, OK, SYNTAX,
                   b"503 5.5.1 Bad sequence - BDAT not allowed in MAIL state\r\n", BYE]
    assert server.messages == []


# -- a storage failure belongs to its own delivery (README, Storing messages) ---------
class _FailsOn:
    """A message store whose write raises for content containing ``marker``."""

    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.committed: list[Message] = []

    def begin(self, message: Message) -> _FailsOn:
        return self

    def write(self, data: bytes) -> None:
        if self.marker in data:
            raise StorageError("disk on fire")

    def commit(self, message: Message) -> None:
        self.committed.append(message)

    def abort(self) -> None:
        pass


ENVELOPE = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"


def _store_server(tmp_path: Path, store: _FailsOn) -> AbstractContextManager[BadSMTP]:
    return serving(ports=[0], message_store=store, mailbox_dir=tmp_path / "mb")


def test_a_failed_write_is_not_charged_to_the_next_pipelined_message(tmp_path: Path) -> None:
    store = _FailsOn(b"FAIL")
    with _store_server(tmp_path, store) as srv:
        got = pipelined(srv.port, ENVELOPE + b"BDAT 4\r\nFAIL" b"RSET\r\n" + ENVELOPE + b"BDAT 2 LAST\r\nok")
        # The failing chunk was not the last one: its 250 is right, and RSET
        # ends that message.  The second message is stored and says so.
        assert got == [MAIL_OK, RCPT_OK, OK, OK, MAIL_OK, RCPT_OK, ACCEPTED, BYE]
        assert [m.content for m in srv.messages] == [b"ok"]
    assert len(store.committed) == 1
    assert len(os.listdir(tmp_path / "mb" / "new")) == 1
    assert os.listdir(tmp_path / "mb" / "tmp") == []


def test_a_failed_write_is_answered_at_the_end_of_its_own_message(tmp_path: Path) -> None:
    store = _FailsOn(b"FAIL")
    with _store_server(tmp_path, store) as srv:
        got = pipelined(srv.port, ENVELOPE + b"BDAT 4\r\nFAIL" b"BDAT 2 LAST\r\nok" + ENVELOPE + b"BDAT 2 LAST\r\nok")
        assert got == [MAIL_OK, RCPT_OK, OK, LOCAL_ERROR, MAIL_OK, RCPT_OK, ACCEPTED, BYE]
        assert [m.content for m in srv.messages] == [b"ok"]
    assert len(os.listdir(tmp_path / "mb" / "new")) == 1
    assert os.listdir(tmp_path / "mb" / "tmp") == []


def test_a_message_after_a_failed_one_is_aborted_or_stored_never_orphaned(tmp_path: Path) -> None:
    """The issue's second variant: the next message's chunk is not LAST,
    then the client resets and sends a third message.  The second delivery
    is aborted (no tmp/ file left behind), the third stored."""
    store = _FailsOn(b"FAIL")
    with _store_server(tmp_path, store) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        assert c.command(b"EHLO client.example").startswith(b"250-")
        c.send(ENVELOPE + b"BDAT 4\r\nFAIL" b"RSET\r\n" + ENVELOPE + b"BDAT 2\r\nok")
        assert c.replies(7) == [MAIL_OK, RCPT_OK, OK, OK, MAIL_OK, RCPT_OK, OK]
        assert c.command(b"RSET") == OK
        c.send(ENVELOPE + b"BDAT 5 LAST\r\nthird")
        assert c.replies(3) == [MAIL_OK, RCPT_OK, ACCEPTED]
        assert [m.content for m in srv.messages] == [b"third"]
        assert len(os.listdir(tmp_path / "mb" / "new")) == 1
        assert os.listdir(tmp_path / "mb" / "tmp") == []
    assert len(store.committed) == 1


# -- every wait ends when the client leaves (badsmtp(1), --idle-timeout) --------------
LONG = 600.0  # a delay no test may sit out


def _ended_promptly(srv: BadSMTP) -> None:
    """The session is over on the server side, well before any long delay."""
    [transcript] = srv.wait_for_sessions(1, timeout=5)
    assert transcript.closed_by == "client"
    assert transcript.duration is not None and transcript.duration < 5


@pytest.mark.parametrize("role", [Role.GREETING_DELAY, Role.DROP])
def test_a_connection_delay_ends_when_the_client_closes(role: Role) -> None:
    with serving(ports=[Listener(0, role, LONG)]) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5):
            pass
        _ended_promptly(srv)


def test_a_dlay_session_with_pipelined_commands_ends_when_the_client_closes() -> None:
    """The issue's case: EHLO dlay605 + 100 NOOPs, then close: the session
    used to sit out 605 s per buffered command (~17 h)."""
    with serving(ports=[0]) as srv:
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            c.send(b"EHLO dlay605.example\r\n" + b"NOOP\r\n" * 100)
        _ended_promptly(srv)


def test_a_command_delay_ends_when_the_client_closes() -> None:
    with serving(ports=[Listener(0, Role.COMMAND_DELAY, LONG)]) as srv:
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            c.send(b"EHLO client.example\r\n")
        _ended_promptly(srv)


def test_what_a_client_sends_during_a_delay_is_answered_after_it() -> None:
    """Reading during a delay (to see a close) must not lose or reorder
    what the client pipelined meanwhile."""
    with serving(ports=[Listener(0, Role.COMMAND_DELAY, 0.3)]) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        c.send(b"NOOP\r\n")
        c.send(b"RSET\r\n")  # arrives while the NOOP's delay runs
        c.send(b"HELP\r\nQUIT\r\n")
        out = c.read_to_eof()
        assert out.startswith(b"250 OK\r\n250 OK\r\n214-BadSMTP")
        assert out.endswith(b"214 End of HELP\r\n221 Bye\r\n")


def test_what_a_client_sends_during_starttls_delay_is_discarded_not_held() -> None:
    """Octets read during a delay are kept for the session, but those sent
    after STARTTLS and before its 220 are discarded like the session's own
    buffer (RFC 3207 §4.2, CVE-2011-0411): never answered inside TLS."""
    with serving(ports=[Listener(0, Role.COMMAND_DELAY, 0.5)]) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        c.send(b"STARTTLS\r\n")
        threading.Event().wait(0.15)  # pacing: the injection arrives during STARTTLS's delay
        c.send(b"MAIL FROM:<evil@example.com>\r\n")
        assert c.reply() == b"220 Ready to start TLS\r\n"
        c.sock = srv.client_ssl_context().wrap_socket(c.sock, server_hostname="localhost")
        # Had the injected MAIL been kept, its 250 would come first.
        assert c.command(b"NOOP") == b"250 OK\r\n"
        [transcript] = srv.sessions
        assert transcript.commands == ["STARTTLS", "NOOP"]


def test_a_stop_still_ends_a_delay_with_421() -> None:
    with serving(ports=[0]) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        c.send(b"EHLO dlay605.example\r\n")
        wait_until(lambda: srv.sessions[0].commands == ["EHLO"], what="the EHLO's delay")
        began = time.monotonic()
        srv.stop()
        assert time.monotonic() - began < 3
        assert c.read_to_eof() == b"421 4.3.2 Service shutting down\r\n"


# -- the idle timeout is per command line and per reply write (badsmtp(1), --idle-timeout)
IDLE = 0.6


def test_a_client_trickling_a_command_line_is_timed_out() -> None:
    """One octet every 0.2 s never completes a line: the line's whole
    deadline passes, not the 0.6 s between two octets."""
    with serving(ports=[0], idle_timeout=IDLE) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        began = time.monotonic()
        got = b""
        for octet in b"NOOP " + b"x" * 40:
            c.send(bytes([octet]))
            c.sock.settimeout(0.2)  # the pace of the trickle: wait that long for a reply
            try:
                got = c.sock.recv(1024)
            except TimeoutError:
                continue
            break
        took = time.monotonic() - began
        assert got == b"421 Idle timeout, closing connection\r\n"
        assert IDLE <= took < IDLE + 1.0


def test_complete_lines_each_get_the_whole_timeout() -> None:
    """The negative twin: a slow client whose every line arrives within the
    timeout is never timed out, however long the session lasts."""
    with serving(ports=[0], idle_timeout=IDLE) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        pause = threading.Event()  # pacing a deliberately slow client
        for _ in range(4):  # 4 x 0.4 s: well past one timeout in all
            c.send(b"NO")
            pause.wait(0.2)
            c.send(b"OP\r\n")
            assert c.reply() == b"250 OK\r\n"
            pause.wait(0.2)


def test_a_client_that_reads_too_slowly_is_dropped_within_one_timeout() -> None:
    """A reply write is bounded as a whole: a client that keeps reading a
    few octets at a time cannot stretch one batch of replies over many
    timeouts."""
    with serving(ports=[0], idle_timeout=IDLE) as srv:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            sock.connect(("127.0.0.1", srv.port))
            sock.settimeout(5)
            greeting = b""
            while len(greeting) < len(GREETING):  # the session has begun
                greeting += sock.recv(len(GREETING) - len(greeting))
            assert greeting == GREETING
            [transcript] = srv.sessions
            # About 16 MB of replies: more than the socket buffers hold.
            sock.sendall(b"HELP\r\n" * 20_000)
            pause = threading.Event()  # pacing a deliberately slow reader
            began = time.monotonic()
            while not transcript.closed and time.monotonic() - began < 10:
                assert sock.recv(512)
                pause.wait(0.01)
            took = time.monotonic() - began
        assert took < IDLE + 2.0, f"the server kept writing for {took:.1f} s"
