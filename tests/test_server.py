"""The server over real loopback sockets: exact bytes on the wire, pipelining,
BDAT, load, garbage, half-closes, listener roles, shutdown and the error
boundary."""

from __future__ import annotations

import random
import selectors
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import (  # noqa: F401 (test_cli.py: wait_until)
    Client,
    free_port,
    posix_rlimit,
    serving,
    wait_until,
)
from wire import (
    ACCEPTED,
    BYE,
    EHLO_REPLY,
    GO_AHEAD,
    GREETING,
    MAIL_OK,
    OK,
    RCPT_OK,
    SHUTTING_DOWN,
    SHUTTING_DOWN_ENH,
)

from badsmtp import BadSMTP, Listener
from badsmtp.session import Session


class Connected:
    """An observer (README, Extending badsmtp) that hears a session begin:
    the server has accepted the connection and its handler runs."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def on_connect(self, ctx: object) -> None:
        self.event.set()


def ehlo(c: Client, name: bytes = b"client.example") -> None:
    assert c.command(b"EHLO " + name) == EHLO_REPLY


def open_transaction(c: Client, sender: bytes = b"alice@example.com") -> None:
    ehlo(c)
    assert c.command(b"MAIL FROM:<" + sender + b">") == MAIL_OK
    assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK


def send_one(port: int, body: bytes = b"Subject: twin\r\n\r\nhello\r\n") -> None:
    """A complete, ordinary transaction on a fresh connection."""
    with Client(port) as c:
        assert c.reply() == GREETING
        open_transaction(c)
        assert c.command(b"DATA") == GO_AHEAD
        c.send(body + b".\r\n")
        assert c.reply() == ACCEPTED
        assert c.command(b"QUIT") == BYE


@pytest.fixture
def bare_server() -> Iterator[BadSMTP]:
    """A server whose internal errors the test provokes and inspects itself
    (every other server here is the ``server`` fixture or ``serving``)."""
    srv = BadSMTP(ports=[0]).serve_in_thread()
    try:
        yield srv
    finally:
        srv.stop()


# -- greeting and a whole transaction --------------------------------------------------
def test_greeting_is_exact(server: BadSMTP) -> None:
    with Client(server.port) as c:
        assert c.reply() == GREETING
        assert c.buf == b""


def test_smtplib_sendmail_is_captured_exactly(server: BadSMTP) -> None:
    content = (
        b"From: Alice <alice@example.com>\r\n"
        b"To: bob@example.com, carol@example.org\r\n"
        b"Subject: Hello there\r\n"
        b"\r\n"
        b"line one\r\n"
        b".leading dot\r\n"
        b"..two dots\r\n"
        b".\r\n"
        b"\xc3\xa9t\xc3\xa9 8-bit\r\n"
        b"last\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.example", timeout=5) as smtp:
        refused = smtp.sendmail("alice@example.com", ["bob@example.com", "carol@Example.ORG"], content)
        assert refused == {}
        assert smtp.quit() == (221, b"2.0.0 Bye")
    [msg] = server.wait_for_messages(1, timeout=5)
    assert msg.sender == "alice@example.com"
    assert msg.recipients == ("bob@example.com", "carol@example.org")  # domain lower-cased (RFC 5321 §2.4)
    assert msg.content == content  # smtplib stuffed the dots; the server unstuffed them
    assert msg.size == len(content)
    assert msg.headers["Subject"] == "Hello there"
    assert msg.subject == "Hello there"
    assert msg.headers["To"] == "bob@example.com, carol@example.org"
    assert msg.email["Subject"] == "Hello there"
    assert msg.helo == "client.example"
    assert msg.client_ip == "127.0.0.1"
    assert msg.hostname == "badsmtp.test"
    assert msg.tls_used is False
    assert msg.user is None
    assert msg.timestamp.endswith("Z")


def test_null_sender_is_accepted(server: BadSMTP, client: Client) -> None:
    ehlo(client)
    assert client.command(b"MAIL FROM:<>") == MAIL_OK
    assert client.command(b"RCPT TO:<postmaster@example.com>") == RCPT_OK
    assert client.command(b"DATA") == GO_AHEAD
    client.send(b"Subject: bounce\r\n\r\nundeliverable\r\n.\r\n")
    assert client.reply() == ACCEPTED
    [msg] = server.wait_for_messages(1)
    assert msg.sender == ""
    assert msg.recipients == ("postmaster@example.com",)
    # ...and the null path is never a forward-path (its negative twin).
    assert client.command(b"MAIL FROM:<>") == MAIL_OK
    assert client.command(b"RCPT TO:<>") == b"501 5.5.4 Syntax error in parameters\r\n"


# -- pipelining (RFC 2920) -----------------------------------------------------------
def test_pipelined_batch_in_one_write_gets_every_reply_in_order(server: BadSMTP) -> None:
    with Client(server.port) as c:
        assert c.reply() == GREETING
        c.send(
            b"EHLO client.example\r\n"
            b"MAIL FROM:<alice@example.com>\r\n"
            b"RCPT TO:<bob@example.com>\r\n"
            b"RCPT TO:<carol@example.com>\r\n"
            b"DATA\r\n"
        )
        assert c.replies(5) == [EHLO_REPLY, MAIL_OK, RCPT_OK, RCPT_OK, GO_AHEAD]
        assert c.buf == b""
        c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert c.read_to_eof() == ACCEPTED + BYE
    [msg] = server.wait_for_messages(1)
    assert msg.recipients == ("bob@example.com", "carol@example.com")
    assert msg.content == b"Subject: piped\r\n\r\nbody\r\n"


def test_pipelined_mail_rcpt_then_waiting_gets_both_replies(client: Client) -> None:
    # A server that held its replies until DATA would deadlock here: what is
    # pending goes out once the input runs dry (RFC 2920 §3.2).
    ehlo(client)
    client.send(b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n")
    assert client.replies(2, timeout=2) == [MAIL_OK, RCPT_OK]
    client.send(b"NOOP\r\nRSET\r\nNOOP\r\n")
    assert client.replies(3, timeout=2) == [OK, OK, OK]


def test_pipelined_commands_split_across_writes_byte_by_byte(client: Client) -> None:
    ehlo(client)
    for byte in b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n":
        client.send(bytes([byte]))
    assert client.replies(2) == [MAIL_OK, RCPT_OK]


STUFFED_WIRE = b"Subject: dots\r\n\r\n..\r\n.x\r\n...y\r\n. \r\nz.\r\n.\r\n"
STUFFED_CONTENT = b"Subject: dots\r\n\r\n.\r\nx\r\n..y\r\n \r\nz.\r\n"


@pytest.mark.parametrize("mode", ["whole", "byte_by_byte", "with_data_command"])
def test_data_end_and_dot_unstuffing_however_the_bytes_arrive(
    server: BadSMTP, client: Client, mode: str
) -> None:
    open_transaction(client)
    if mode == "with_data_command":  # content sent before the 354 is content, not commands
        client.send(b"DATA\r\n" + STUFFED_WIRE)
        assert client.replies(2) == [GO_AHEAD, ACCEPTED]
    else:
        assert client.command(b"DATA") == GO_AHEAD
        if mode == "whole":
            client.send(STUFFED_WIRE)
        else:
            for byte in STUFFED_WIRE:
                client.send(bytes([byte]))
        assert client.reply() == ACCEPTED
    assert server.wait_for_messages(1)[0].content == STUFFED_CONTENT


def test_empty_message(server: BadSMTP, client: Client) -> None:
    open_transaction(client)
    assert client.command(b"DATA") == GO_AHEAD
    client.send(b".\r\n")
    assert client.reply() == ACCEPTED
    assert server.wait_for_messages(1)[0].content == b""


# -- BDAT (RFC 3030 §2) --------------------------------------------------------------
COMMANDISH = (
    b"MAIL FROM:<evil@example.com>\r\nQUIT\r\n\x00\x00\xff\xfe\r\n.\r\n"
    b"RSET\r\nBDAT 5 LAST\r\n\n\r\x00"
)


@pytest.mark.parametrize("mode", ["whole", "pipelined", "byte_by_byte"])
def test_bdat_chunks_are_stored_byte_for_byte(server: BadSMTP, client: Client, mode: str) -> None:
    open_transaction(client)
    first, second = COMMANDISH, bytes(range(256)) + b"QUIT\r\n"
    wire = [b"BDAT %d\r\n" % len(first) + first, b"BDAT %d LAST\r\n" % len(second) + second]
    if mode == "pipelined":
        client.send(b"".join(wire))
        assert client.replies(2) == [OK, ACCEPTED]
    elif mode == "whole":
        client.send(wire[0])
        assert client.reply() == OK
        client.send(wire[1])
        assert client.reply() == ACCEPTED
    else:
        for byte in b"".join(wire):
            client.send(bytes([byte]))
        assert client.replies(2) == [OK, ACCEPTED]
    assert client.command(b"NOOP") == OK  # nothing in the chunks was parsed as a command
    [msg] = server.wait_for_messages(1)
    assert msg.content == first + second
    assert msg.size == len(first) + len(second)
    assert msg.sender == "alice@example.com"


def test_bdat_reply_does_not_wait_for_a_crlf_after_the_chunk(server: BadSMTP, client: Client) -> None:
    open_transaction(client)
    client.send(b"BDAT 5\r\nhello")
    assert client.reply(timeout=2) == OK
    client.send(b"BDAT 6 LAST\r\n world")
    assert client.reply(timeout=2) == ACCEPTED
    # A CRLF some clients send after a chunk is an empty line: ignored.
    client.send(b"\r\nNOOP\r\n")
    assert client.reply() == OK
    assert client.buf == b""
    assert server.wait_for_messages(1)[0].content == b"hello world"


def test_bdat_zero_last(server: BadSMTP, client: Client) -> None:
    open_transaction(client)
    assert client.command(b"BDAT 0 LAST") == ACCEPTED
    assert server.wait_for_messages(1)[0].content == b""


def test_bdat_over_size_limit_reads_the_chunk_then_552(server: BadSMTP, client: Client) -> None:
    assert client.command(b"EHLO size1000.example").startswith(b"250-badsmtp.test\r\n")
    assert client.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
    assert client.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
    client.send(b"BDAT 1001 LAST\r\n" + b"QUIT\r\n" * 166 + b"NOOP\r")
    assert client.reply() == b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"
    assert client.command(b"NOOP") == OK
    assert server.messages == []


# -- load ----------------------------------------------------------------------------
def _raise_fd_limit(needed: int) -> tuple[int, int]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return soft, hard


class _Conn:
    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.buf = b""
        self.stage = "greeting"
        self.transcript = b""


@posix_rlimit
def test_a_thousand_concurrent_connections_each_send_a_message() -> None:
    count = 1000
    old = _raise_fd_limit(2 * count + 512)  # both ends of every connection are in this process
    conns: list[_Conn] = []
    sel = selectors.DefaultSelector()
    try:
        with serving(ports=[0]) as srv:
            for i in range(count):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                conns.append(_Conn(i, sock))
            for conn in conns:
                conn.sock.setblocking(False)
                sel.register(conn.sock, selectors.EVENT_READ, conn)
            greeted = 0
            done = 0
            deadline = time.monotonic() + 40
            while done < count:
                assert time.monotonic() < deadline, f"{done} of {count} finished"
                for key, _ in sel.select(timeout=1):
                    conn = key.data
                    data = conn.sock.recv(65536)
                    conn.buf += data
                    if conn.stage == "greeting" and conn.buf == GREETING:
                        conn.buf = b""
                        conn.stage = "waiting"
                        greeted += 1
                        if greeted == count:  # all 1000 sessions are open at once: go
                            for c in conns:
                                c.sock.sendall(
                                    b"EHLO load.example\r\nMAIL FROM:<sender%d@example.com>\r\n"
                                    b"RCPT TO:<sink@example.com>\r\nDATA\r\n" % c.index
                                )
                                c.stage = "envelope"
                    elif conn.stage == "envelope" and conn.buf.endswith(GO_AHEAD):
                        assert conn.buf == EHLO_REPLY + MAIL_OK + RCPT_OK + GO_AHEAD
                        conn.buf = b""
                        conn.stage = "content"
                        conn.sock.sendall(b"Subject: load %d\r\n\r\nbody\r\n.\r\nQUIT\r\n" % conn.index)
                    elif not data:
                        assert conn.stage == "content", (conn.index, conn.stage, conn.buf)
                        assert conn.buf == ACCEPTED + BYE
                        sel.unregister(conn.sock)
                        conn.sock.close()
                        done += 1
            messages = srv.wait_for_messages(count, timeout=10)
            assert len(messages) == count
            assert {m.sender for m in messages} == {f"sender{i}@example.com" for i in range(count)}
    finally:
        sel.close()
        for conn in conns:
            conn.sock.close()
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, old)


# -- garbage -------------------------------------------------------------------------
def _client_hello() -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="badsmtp.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16"  # a TLS handshake record
    return hello


GARBAGE = {
    "random": random.Random(1234).randbytes(8192),
    "nuls": b"\x00" * 1000 + b"\r\n" + b"\x00\r\n",
    "long_line": b"A" * 100_000,
    "invalid_utf8": b"\xc3\x28\xa0\xa1 \xff\xfe\r\nMAIL FROM:<\xff\xfe@example.com>\r\n\xed\xa0\x80\r\n",
    "tls_client_hello": _client_hello(),
}


EXACT = {
    "nuls": b"500 Command not recognised\r\n" * 2 + b"250 OK\r\n",
    "long_line": b"500 Command too long\r\n250 OK\r\n",  # once, then the next line (RFC 5321 §4.5.3.1.4)
    "invalid_utf8": b"500 Command not recognised\r\n"
    b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
    b"500 Command not recognised\r\n250 OK\r\n",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_does_not_break_the_session_or_the_server(server: BadSMTP, name: str) -> None:
    with Client(server.port) as c:
        assert c.reply() == GREETING
        c.send(GARBAGE[name])
        c.send(b"\r\nNOOP\r\n")
        c.read_until(lambda buf: buf.endswith(b"250 OK\r\n"), timeout=10)
        out, c.buf = c.buf, b""
        lines = out.split(b"\r\n")[:-2]
        assert lines, "the garbage was answered"
        assert set(lines) <= {
            b"500 Command not recognised",
            b"500 Command too long",
            b"503 Bad sequence - MAIL not allowed in HELO state",
        }, out[:300]
        if name in EXACT:
            assert out == EXACT[name]
        assert c.command(b"QUIT") == b"221 Bye\r\n"
    send_one(server.port)  # the server is as good as new
    assert len(server.wait_for_messages(1)) == 1


def test_deeply_nested_vrfy_is_a_501_not_an_internal_error(server: BadSMTP, client: Client) -> None:
    # The server fixture fails the test if the core raised (it would answer 421).
    assert client.command(b"VRFY " + b"(" * 2000 + b"exists@example.com") == (
        b"501 Syntax error in parameters\r\n"
    )
    assert client.command(b"VRFY Alice (" + b"(" * 2000 + b" <exists@example.com>") == (
        b"250 exists@example.com User exists\r\n"
    )


# -- half-closed clients -------------------------------------------------------------
def test_quit_then_shut_wr_still_gets_221(client: Client) -> None:
    client.send(b"QUIT\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.read_to_eof() == b"221 Bye\r\n"


def test_commands_then_shut_wr_get_their_replies_before_the_close(client: Client) -> None:
    client.send(b"EHLO client.example\r\nNOOP\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.read_to_eof() == EHLO_REPLY + OK


def test_shut_wr_mid_data_stores_nothing(server: BadSMTP, client: Client) -> None:
    open_transaction(client)
    assert client.command(b"DATA") == GO_AHEAD
    client.send(b"Subject: partial\r\n\r\nhalf a message\r\n.")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.read_to_eof() == b""  # no reply: the message never ended
    send_one(server.port, b"Subject: whole\r\n\r\nwhole\r\n")
    [msg] = server.wait_for_messages(1)
    assert msg.content == b"Subject: whole\r\n\r\nwhole\r\n"
    assert len(server.messages) == 1


# -- size limit ----------------------------------------------------------------------
@pytest.mark.parametrize("size,accepted", [(1000, True), (1001, False)])
def test_data_size_limit_from_ehlo_keyword(
    server: BadSMTP, client: Client, size: int, accepted: bool
) -> None:
    reply = client.command(b"EHLO size1000.example")
    assert b"250-SIZE 1000\r\n" in reply
    assert client.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
    assert client.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
    assert client.command(b"DATA") == GO_AHEAD
    content = b"x" * (size - 2) + b"\r\n"  # no line-length limit inside DATA
    client.send(content + b".\r\n")
    if accepted:
        assert client.reply() == ACCEPTED
        assert server.wait_for_messages(1)[0].content == content
    else:
        assert client.reply() == b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"
        # The transaction is over and the session goes on.
        assert client.command(b"RCPT TO:<bob@example.com>") == (
            b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n"
        )
        assert client.command(b"NOOP") == OK
        assert server.messages == []


def test_mail_size_parameter_over_limit_is_refused(client: Client) -> None:
    client.command(b"EHLO size1000.example")
    assert client.command(b"MAIL FROM:<alice@example.com> SIZE=1001") == (
        b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"
    )
    assert client.command(b"MAIL FROM:<alice@example.com> SIZE=1000") == MAIL_OK


def test_max_recipients() -> None:
    with serving(ports=[0], max_recipients=2) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        open_transaction(c)
        assert c.command(b"RCPT TO:<carol@example.com>") == RCPT_OK
        assert c.command(b"RCPT TO:<dave@example.com>") == b"452 4.5.3 Too many recipients\r\n"


# -- 421 closes ------------------------------------------------------------------------
def test_421_trigger_replies_then_closes(server: BadSMTP, client: Client) -> None:
    ehlo(client)
    client.send(b"MAIL FROM:<mail421@x.example>\r\n")
    assert client.read_to_eof() == b"421 Service not available, closing transmission channel\r\n"
    send_one(server.port)


def test_421_trigger_flushes_pipelined_replies_first(client: Client) -> None:
    ehlo(client)
    client.send(b"NOOP\r\nMAIL FROM:<mail421_4.3.2@x.example>\r\nNOOP\r\n")
    assert client.read_to_eof() == OK + (
        b"421 4.3.2 Service not available, closing transmission channel\r\n"
    )


# -- shutdown (badsmtp(1), SIGNALS) -----------------------------------------------------
def test_stop_with_idle_clients_sends_421_to_each_and_returns_quickly() -> None:
    # serving() stops the server again at the end: twice is harmless.
    with serving(ports=[0]) as srv, Client(srv.port) as before, Client(srv.port) as after:
        assert before.reply() == GREETING
        assert after.reply() == GREETING
        ehlo(after)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 1.0
        assert before.read_to_eof() == SHUTTING_DOWN
        assert after.read_to_eof() == SHUTTING_DOWN_ENH
        # Listeners are closed: new connections are refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_stop_mid_data_stores_nothing() -> None:
    with serving(ports=[0]) as srv:
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            open_transaction(c)
            assert c.command(b"DATA") == GO_AHEAD
            c.send(b"Subject: cut\r\n\r\nnever finished\r\n")
            t0 = time.monotonic()
            srv.stop()
            assert time.monotonic() - t0 < 1.0
            assert c.read_to_eof() == SHUTTING_DOWN_ENH
        assert srv.messages == []


def test_idle_timeout_before_ehlo() -> None:
    with serving(ports=[0], idle_timeout=0.3) as srv:
        t0 = time.monotonic()
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            assert c.read_to_eof(timeout=5) == b"421 Idle timeout, closing connection\r\n"
            elapsed = time.monotonic() - t0
        assert 0.3 <= elapsed < 2.0


def test_idle_timeout_after_ehlo_and_mid_data_is_enhanced_and_stores_nothing() -> None:
    with serving(ports=[0], idle_timeout=0.3) as srv:
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            open_transaction(c)
            assert c.command(b"DATA") == GO_AHEAD
            c.send(b"Subject: slow\r\n\r\n")
            t0 = time.monotonic()
            assert c.read_to_eof(timeout=5) == b"421 4.4.2 Idle timeout, closing connection\r\n"
            assert time.monotonic() - t0 < 2.0
        assert srv.messages == []


def test_two_servers_in_one_process_share_nothing() -> None:
    with serving(ports=[0]) as a, serving(ports=[0]) as b:
        assert a.port != b.port
        send_one(a.port, b"Subject: to a\r\n\r\na\r\n")
        assert a.wait_for_messages(1)[0].subject == "to a"
        assert b.messages == []
        send_one(b.port, b"Subject: to b\r\n\r\nb\r\n")
        assert [m.subject for m in b.wait_for_messages(1)] == ["to b"]
        assert [m.subject for m in a.messages] == ["to a"]


def test_serve_in_thread_on_a_busy_port_raises_and_leaves_nothing_listening() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        free = free_port()
        acceptors = sum(1 for t in threading.enumerate() if t.name == "badsmtp-acceptor")
        srv = BadSMTP(ports=[free, busy])
        with pytest.raises(OSError) as info:
            srv.serve_in_thread()
        assert str(busy) in str(info.value)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", free), timeout=2).close()
        assert sum(1 for t in threading.enumerate() if t.name == "badsmtp-acceptor") == acceptors
        srv.stop()  # harmless on a server that never started
    # The twin: once the port is free, the same request works.
    with serving(ports=[free, busy]) as srv:
        assert srv.ports == [free, busy]
        with Client(busy) as c:
            assert c.reply() == GREETING


def test_internal_error_gets_421_and_is_recorded_and_the_next_connection_works(
    bare_server: BadSMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Session.receive_data
    armed = threading.Event()
    armed.set()

    def broken(self: Session, data: bytes) -> list[object]:
        if armed.is_set() and b"NOOP" in data:
            armed.clear()
            raise RuntimeError("injected bug")
        return original(self, data)  # type: ignore[return-value]

    monkeypatch.setattr(Session, "receive_data", broken)
    with Client(bare_server.port) as c:
        assert c.reply() == GREETING
        c.send(b"NOOP\r\n")
        assert c.read_to_eof() == b"421 Service not available, closing transmission channel\r\n"
    send_one(bare_server.port)
    assert len(bare_server.wait_for_messages(1)) == 1
    [error] = bare_server.errors
    assert isinstance(error, RuntimeError) and str(error) == "injected bug"


# -- listener roles (badsmtp(1), PORT MAP) ---------------------------------------------
def test_greeting_delay() -> None:
    with serving(ports=[Listener(0, "greeting_delay", 0.3)]) as srv:
        t0 = time.monotonic()
        with Client(srv.port) as c:
            c.send(b"NOOP\r\n")  # waits in the socket buffer meanwhile
            assert c.reply(timeout=5) == GREETING
            assert time.monotonic() - t0 >= 0.3
            assert c.reply() == b"250 OK\r\n"


def test_no_greeting_delay_on_a_main_listener(server: BadSMTP) -> None:
    t0 = time.monotonic()
    with Client(server.port) as c:
        assert c.reply() == GREETING
    assert time.monotonic() - t0 < 0.3


def test_drop_delay_closes_without_sending() -> None:
    with serving(ports=[Listener(0, "drop_delay", 0.3)]) as srv:
        t0 = time.monotonic()
        with Client(srv.port) as c:
            assert c.read_to_eof(timeout=5) == b""
            elapsed = time.monotonic() - t0
        assert 0.3 <= elapsed < 2.0


def test_immediate_drop_closes_at_once() -> None:
    with serving(ports=[Listener(0, "immediate_drop")]) as srv:
        t0 = time.monotonic()
        with Client(srv.port) as c:
            assert c.read_to_eof(timeout=5) == b""
        assert time.monotonic() - t0 < 0.3


def test_command_delay_applies_to_every_command_but_not_the_greeting() -> None:
    with serving(ports=[Listener(0, "command_delay", 0.2)]) as srv:
        t0 = time.monotonic()
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            assert time.monotonic() - t0 < 0.2
            for line, expected in [
                (b"EHLO client.example", EHLO_REPLY),
                (b"NOOP", OK),
                (b"XYZZY", b"500 5.5.2 Command not recognised\r\n"),
            ]:
                t = time.monotonic()
                assert c.command(line) == expected
                assert time.monotonic() - t >= 0.2
            t = time.monotonic()
            c.send(b"NOOP\r\nNOOP\r\n")
            assert c.replies(2) == [OK, OK]
            assert time.monotonic() - t >= 0.4
            t = time.monotonic()
            c.send(b"QUIT\r\n")
            assert c.read_to_eof() == BYE
            assert time.monotonic() - t >= 0.2


@pytest.mark.parametrize("role", ["greeting_delay", "drop_delay"])
def test_stop_interrupts_a_long_delay(role: str) -> None:
    connected = Connected()
    with serving(ports=[Listener(0, role, 30)], observer=connected) as srv, Client(srv.port) as c:
        assert connected.event.wait(5), "the connection was never accepted"
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 1.0
        assert c.read_to_eof() == SHUTTING_DOWN  # attempted even on drop ports


# -- HELP --------------------------------------------------------------------------------
HELP_LINES = [
    b"BadSMTP - The Reliably Unreliable Mail Server",
    b"Errors: MAIL FROM:<mail550@example.com> makes MAIL fail with 550, and",
    b"mail550_5.1.1@example.com adds an enhanced code. The verbs rcpt, data,",
    b"rset, noop, quit, starttls and auth in MAIL FROM fail that later command;",
    b"RCPT TO:<rcpt550@example.com> fails that recipient alone.",
    b"EHLO helo500.example.com fails the EHLO itself.",
    b"Retries: rcpt451x2+tag@example.com fails twice on this server, then passes.",
    b"Transfer faults in MAIL FROM: dropafter<octets>@, noack@, slowack<seconds>@",
    b"Capabilities: words in the EHLO name switch them: noauth authplain",
    b"authlogin authcram authoauth no8bit nosize size<n> nopipelining",
    b"nostarttls nochunking nosmtputf8 noenhancedstatuscodes dlay<seconds> reject",
    b"TLS faults: EHLO certexpired, certfuture, certwronghost, certselfsigned or",
    b"tlsabort, then STARTTLS; implicit TLS: ports 25800-25804, in that order",
    b"Broken replies: splitreplies bytereplies lfreplies longreplies mixedreplies",
    b"Ports: 3000-3099 delay the greeting, 4000-4099 every command, and",
    b"5000-5099 close the connection, by (port - first port) x 10 s;",
    b"6000 closes at once; 25465 is implicit TLS; 25587 is for STARTTLS",
    b"End of HELP",
]


def _help(prefix: bytes) -> bytes:
    last = len(HELP_LINES) - 1
    return b"".join(
        b"214" + (b" " if i == last else b"-") + prefix + line + b"\r\n"
        for i, line in enumerate(HELP_LINES)
    )


def test_help_over_the_wire(client: Client) -> None:
    assert client.command(b"HELP") == _help(b"")
    assert client.command(b"HELP MAIL") == _help(b"")
    ehlo(client)
    assert client.command(b"help") == _help(b"2.0.0 ")
    assert client.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK  # HELP kept the state
    assert client.command(b"HELP") == _help(b"2.0.0 ")
    assert client.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
    assert client.command(b"EXPN staff") == b"502 5.5.1 Command not implemented\r\n"


# -- huge messages past the default SIZE: read to their end, never held whole, then 552 ------
HUGE = 12 * 1024 * 1024  # over the default 10485760


def _huge_data(c: Client) -> None:
    line = b"x" * 998 + b"\r\n"
    block = line * 1024  # 1 MiB
    for _ in range(HUGE // len(block)):
        c.send(block)
    c.send(b".\r\n")


@pytest.mark.parametrize("chunked", [False, True], ids=["DATA", "BDAT"])
def test_a_12_mib_message_gets_552_and_the_session_goes_on(server: BadSMTP, chunked: bool) -> None:
    with Client(server.port, timeout=30) as c:
        assert c.reply() == GREETING
        ehlo(c)
        assert c.command(b"MAIL FROM:<big@example.com>") == MAIL_OK
        assert c.command(b"RCPT TO:<r@example.com>") == RCPT_OK
        if chunked:
            c.send(b"BDAT %d LAST\r\n" % HUGE)
            c.send(b"y" * HUGE)  # read in full before the verdict (RFC 3030)
        else:
            assert c.command(b"DATA") == GO_AHEAD
            _huge_data(c)
        assert c.reply(timeout=30) == (
            b"552 5.3.4 Message size exceeds fixed maximum of 10485760 bytes\r\n"
        )
        # Nothing kept, and the same connection carries a normal message next.
        assert c.command(b"MAIL FROM:<small@example.com>") == MAIL_OK
        assert c.command(b"RCPT TO:<r@example.com>") == RCPT_OK
        assert c.command(b"DATA") == GO_AHEAD
        assert c.command(b"Subject: small\r\n\r\nok\r\n.") == ACCEPTED
    [message] = server.wait_for_messages(1)
    assert message.sender == "small@example.com"
