"""Session transcripts (``server.sessions``): what a test can assert about a
client's conversation — on a real smtplib conversation, on a pipelined one,
on sessions cut by a 421 — and what is never recorded (secrets, content)."""

from __future__ import annotations

import base64
import smtplib
import socket
import ssl

import pytest
from helpers import Client, serving

from badsmtp import BadSMTP, Listener
from badsmtp import session as session_module
from badsmtp.transcript import CommandRecord, ContentRecord, ReplyRecord, TLSRecord

SECRET = "s3cret-Pa55word"
BODY_SECRET = "body-only-text-42"


def _greeted(server: BadSMTP) -> Client:
    client = Client(server.port)
    assert client.reply().startswith(b"220 ")
    return client


def _ehlo(client: Client, name: bytes = b"client.example.com") -> None:
    assert client.command(b"EHLO " + name).endswith(b"250 OK\r\n")


# -- a real client ------------------------------------------------------------------
def test_smtplib_conversation(server: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.sendmail("me@example.com", ["you@example.com"], f"Subject: hi\r\n\r\n{BODY_SECRET}\r\n")
    (t,) = server.wait_for_sessions(1)

    assert t.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert t.greeting is not None and t.greeting.code == 220
    assert t.codes == [220, 250, 250, 250, 354, 250, 221]
    assert t.reply_to("MAIL").line == "250 2.1.0 OK"
    assert t.reply_to("RCPT").code == 250
    data = t.exchange("DATA")
    assert [r.code for r in data.replies] == [354, 250]
    assert data.final is not None and data.final.text == "OK Message accepted for delivery"
    assert data.content is not None and data.content.size == server.messages[0].size
    assert t.waited_for(354) and t.waited_for(250)  # smtplib never pipelines
    assert t.pipelined == []
    assert t.closed_by == "server"  # QUIT, 221, the server closed
    assert (t.client_ip, t.port, t.role, t.tls) == ("127.0.0.1", server.port, "main", False)
    assert t.client_port > 0 and t.duration is not None
    times = [r.at for r in t.events]
    assert times == sorted(times) and 0 <= times[0] <= t.duration
    assert BODY_SECRET not in str(t)  # content is never recorded, only its size


def test_client_that_hangs_up_without_quit(server: BadSMTP) -> None:
    with _greeted(server) as client:
        _ehlo(client)
    (t,) = server.wait_for_sessions(1)
    assert t.commands == ["EHLO"]
    assert t.closed_by == "client"


def test_sessions_are_snapshots_in_connection_order(server: BadSMTP) -> None:
    for name in (b"first.example.com", b"second.example.com"):
        with _greeted(server) as client:
            _ehlo(client, name)
            client.command(b"QUIT")
        server.wait_for_sessions(1 if name.startswith(b"first") else 2)
    sessions = server.sessions
    assert [t.command_lines[0] for t in sessions] == [
        "EHLO first.example.com",
        "EHLO second.example.com",
    ]
    assert server.sessions is not sessions and server.sessions == sessions


# -- secrets ---------------------------------------------------------------------
def test_auth_initial_response_is_redacted(server: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo("authplain.example.com")
        client.login("alice", SECRET)
    (t,) = server.wait_for_sessions(1)
    assert t.command_lines[1] == "AUTH PLAIN [redacted]"
    assert t.reply_to("AUTH").code == 235
    assert SECRET not in str(t) and base64.b64encode(f"\0alice\0{SECRET}".encode()).decode() not in str(t)


def test_auth_continuation_lines_are_never_recorded(server: BadSMTP) -> None:
    password = base64.b64encode(SECRET.encode())
    with _greeted(server) as client:
        _ehlo(client)
        assert client.command(b"AUTH LOGIN").startswith(b"334 ")
        assert client.command(base64.b64encode(b"alice")).startswith(b"334 ")
        assert client.command(password).startswith(b"235 ")
        client.command(b"QUIT")
    (t,) = server.wait_for_sessions(1)
    assert t.commands == ["EHLO", "AUTH", "QUIT"]
    assert [r.code for r in t.exchange("AUTH").replies] == [334, 334, 235]
    assert password.decode() not in str(t) and "YWxpY2U=" not in str(t)


def test_bdat_records_the_command_not_the_chunk(server: BadSMTP) -> None:
    chunk = f"Subject: x\r\n\r\n{BODY_SECRET}\r\n".encode()
    with _greeted(server) as client:
        _ehlo(client)
        client.command(b"MAIL FROM:<a@example.com>")
        client.command(b"RCPT TO:<b@example.com>")
        client.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
        assert client.reply().startswith(b"250 ")
    (t,) = server.wait_for_sessions(1)
    assert t.command_lines[-1] == f"BDAT {len(chunk)} LAST"
    assert BODY_SECRET not in str(t)


# -- pipelining --------------------------------------------------------------------
def test_pipelined_commands_share_a_batch_and_the_client_waited_for_354(server: BadSMTP) -> None:
    with _greeted(server) as client:
        _ehlo(client)
        client.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            b"RCPT TO:<c@example.com>\r\nDATA\r\n"
        )
        assert [r[:3] for r in client.replies(4)] == [b"250", b"250", b"250", b"354"]
        assert client.command(b"Subject: x\r\n\r\nhi\r\n.").startswith(b"250 ")
    (t,) = server.wait_for_sessions(1)
    assert t.pipelined == [("MAIL", "RCPT", "RCPT", "DATA")]
    assert t.waited_for(354)
    assert t.exchange("DATA").content.batch > t.exchange("DATA").command.batch  # type: ignore[union-attr]
    assert t.waited_for(250)  # the first 250 answered EHLO: nothing was sent behind it


def test_content_sent_before_the_354_is_seen(server: BadSMTP) -> None:
    """The negative twin: a client that does not wait for the 354."""
    with _greeted(server) as client:
        _ehlo(client)
        client.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
            b"Subject: x\r\n\r\nhi\r\n.\r\n"
        )
        assert [r[:3] for r in client.replies(4)] == [b"250", b"250", b"354", b"250"]
    (t,) = server.wait_for_sessions(1)
    assert t.pipelined == [("MAIL", "RCPT", "DATA")]
    assert not t.waited_for(354)


def test_a_retried_rcpt_is_counted(server: BadSMTP) -> None:
    with _greeted(server) as client:
        _ehlo(client)
        client.command(b"MAIL FROM:<a@example.com>")
        for _ in range(2):
            assert client.command(b"RCPT TO:<rcpt450@example.com>").startswith(b"450 ")
        client.command(b"QUIT")
    (t,) = server.wait_for_sessions(1)
    assert t.count("RCPT") == 2 and t.count("rcpt") == 2 and t.count("DATA") == 0
    assert [t.reply_to("RCPT", i).code for i in range(2)] == [450, 450]


# -- sessions cut by a 421 ---------------------------------------------------------
def test_commands_pipelined_after_a_421_are_recorded_as_discarded(server: BadSMTP) -> None:
    with _greeted(server) as client:
        _ehlo(client)
        assert client.command(b"MAIL FROM:<rset421@example.com>").startswith(b"250 ")
        client.send(b"RSET\r\nNOOP\r\nQUIT\r\n")
        assert client.read_to_eof().startswith(b"421 ")
    (t,) = server.wait_for_sessions(1)
    assert t.commands == ["EHLO", "MAIL", "RSET"]
    assert t.reply_to("RSET").code == 421 and t.codes[-1] == 421
    assert t.sent_after(code=421) == ["NOOP", "QUIT"]
    assert [c.verb for c in t.discarded] == ["NOOP", "QUIT"]
    assert all(c.discarded for c in t.discarded)
    assert t.pipelined == [("RSET", "NOOP", "QUIT")]
    assert t.closed_by == "server"


def test_a_client_that_stops_after_a_421(server: BadSMTP) -> None:
    """The twin: smtplib does not carry on after a 421 (it cannot: the
    server closed), so nothing was sent after it."""
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail("mail421@example.com", ["b@example.com"], "Subject: x\r\n\r\nx\r\n")
    (t,) = server.wait_for_sessions(1)
    assert t.commands == ["EHLO", "MAIL"]
    assert t.sent_after(421) == [] and t.discarded == []
    assert t.closed_by == "server"


def test_nothing_after_a_421_to_auth_is_parsed(server: BadSMTP) -> None:
    """What follows AUTH may be a password: after the 421 it is only counted."""
    secret = base64.b64encode(f"\0alice\0{SECRET}".encode())
    with _greeted(server) as client:
        _ehlo(client)
        client.command(b"MAIL FROM:<auth421@example.com>")
        client.command(b"RSET")
        client.send(b"AUTH PLAIN\r\n" + secret + b"\r\nQUIT\r\n")
        assert client.read_to_eof().startswith(b"421 ")
    (t,) = server.wait_for_sessions(1)
    assert t.reply_to("AUTH").code == 421
    assert t.discarded == [] and t.discarded_octets == len(secret) + 2 + 6
    assert secret.decode() not in str(t)


def test_shutdown_421_is_recorded(server: BadSMTP) -> None:
    with _greeted(server) as client:
        _ehlo(client)
        server.stop()
        assert client.read_to_eof().startswith(b"421 ")
    (t,) = server.sessions
    assert t.replies[-1].line == "421 4.3.2 Service shutting down"
    assert t.closed_by == "server"


def test_internal_error_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object) -> list[object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(session_module.Session, "greeting", broken)
    with BadSMTP(ports=[0]) as srv:  # not serving(): the internal error is the point
        with Client(srv.port) as client:
            assert client.read_to_eof().startswith(b"421 ")
        (t,) = srv.wait_for_sessions(1)
    assert [r.code for r in t.replies] == [421]
    assert t.closed_by == "server"
    assert len(srv.errors) == 1


# -- TLS -----------------------------------------------------------------------------
def test_starttls_and_what_was_pipelined_after_it(server: BadSMTP) -> None:
    context = server.client_ssl_context()
    with _greeted(server) as client:
        _ehlo(client)
        client.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n")
        assert client.reply().startswith(b"220 ")
        with context.wrap_socket(client.sock, server_hostname="localhost") as tls:
            client.sock = tls
            _ehlo(client)
            client.command(b"QUIT")
    (t,) = server.wait_for_sessions(1)
    assert t.commands == ["EHLO", "STARTTLS", "EHLO", "QUIT"]
    assert [c.line for c in t.discarded] == ["MAIL FROM:<injected@example.com>"]
    assert t.tls and not t.implicit_tls
    kinds = [type(r) for r in t.events]
    assert kinds.index(TLSRecord) < len(kinds) - 1


def test_implicit_tls_session() -> None:
    with serving(ports=[Listener(0, "tls")]) as srv:
        context = srv.client_ssl_context()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.recv(1024).startswith(b"220 ")
                tls.sendall(b"QUIT\r\n")
                assert tls.recv(1024).startswith(b"221 ")
        (t,) = srv.wait_for_sessions(1)
    assert t.tls and t.implicit_tls and t.role == "tls"
    assert t.commands == ["QUIT"]


# -- the rest ------------------------------------------------------------------------
def test_drop_port_connections_are_sessions_without_events() -> None:
    with serving(ports=[Listener(0, "immediate_drop")]) as srv:
        with Client(srv.port) as client:
            assert client.read_to_eof() == b""
        (t,) = srv.wait_for_sessions(1)
    assert t.role == "immediate_drop" and t.events == () and t.closed_by == "server"


def test_an_over_long_line_is_recorded_as_such(server: BadSMTP) -> None:
    with _greeted(server) as client:
        assert client.command(b"NOOP " + b"x" * 5000).startswith(b"500 ")
        client.command(b"QUIT")
    (t,) = server.wait_for_sessions(1)
    assert t.command_records[0].verb == ""
    assert "line too long" in t.command_records[0].line
    assert t.exchanges[0].reply.code == 500  # type: ignore[union-attr]


def test_lookups_that_find_nothing_say_what_there_was(server: BadSMTP) -> None:
    with _greeted(server) as client:
        client.command(b"QUIT")
    (t,) = server.wait_for_sessions(1)
    with pytest.raises(LookupError, match=r"no RCPT command #0.*\['QUIT'\]"):
        t.reply_to("RCPT")
    with pytest.raises(LookupError, match=r"no 421 reply.*\[220, 221\]"):
        t.sent_after(421)
    with pytest.raises(LookupError):
        t.waited_for(354)
    assert isinstance(t.events[0], ReplyRecord) and isinstance(t.events[1], CommandRecord)
    assert not any(isinstance(r, ContentRecord) for r in t.events)


def test_record_false_keeps_nothing() -> None:
    with serving(ports=[0], record=False) as srv:
        with smtplib.SMTP("127.0.0.1", srv.port) as client:
            client.noop()
        with pytest.raises(RuntimeError, match="record=False"):
            _ = srv.sessions
        with pytest.raises(RuntimeError, match="record=False"):
            srv.wait_for_sessions(1)
    assert srv._runtime is not None and srv._runtime.transcripts is None


def test_wait_for_sessions_times_out(server: BadSMTP) -> None:
    with _greeted(server):
        with pytest.raises(TimeoutError, match="0 of 1 sessions ended"):
            server.wait_for_sessions(1, timeout=0.05)
        (t,) = server.sessions
        assert not t.closed and t.closed_by is None
        with pytest.raises(TimeoutError, match="still open"):
            t.wait_closed(timeout=0.01)


def test_tls_context_is_real(server: BadSMTP) -> None:
    """Guard for the STARTTLS test above: the context verifies."""
    assert server.client_ssl_context().verify_mode is ssl.CERT_REQUIRED
