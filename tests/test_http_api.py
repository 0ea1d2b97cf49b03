"""The inspection API (badsmtp(1), INSPECTION API) of an embedded server,
over real sockets with urllib: messages with storage off and on, sessions,
waiting without polling, deleting, reset, the bounds, and the errors."""

from __future__ import annotations

import smtplib
import threading
import time
from pathlib import Path

import pytest
from helpers import Client, serving, wait_until
from httpjson import call, get, send_mail

from badsmtp import BadSMTP
from badsmtp.config import ConfigError

CONTENT = b"Subject: Hello there\r\nX-Test: one\r\nX-Test: two\r\n\r\nbody line\r\n.dot\r\n"
RECEIVED = CONTENT  # smtplib dot-stuffs the line (RFC 5321 §4.5.2), the server unstuffs it


def test_a_message_with_storage_off_is_listed_and_its_content_kept_in_memory() -> None:
    with serving([0], http_port=0, capture=False) as server:
        base = str(server.http_url)
        assert base == f"http://127.0.0.1:{server.http_port}"
        send_mail(server.port, CONTENT, recipients=("bob@example.com", "carol@example.com"))
        listing = get(base, "/api/v1/messages?wait=10")
        assert (listing["total"], listing["count"]) == (1, 1)
        (summary,) = listing["messages"]
        assert summary["ID"].startswith("msg_") and len(summary["ID"]) == 28
        assert summary["SessionID"].startswith("sess_")
        assert summary["From"] == "alice@example.com"
        assert summary["To"] == ["bob@example.com", "carol@example.com"]
        assert summary["Size"] == len(RECEIVED)
        assert summary["Subject"] == "Hello there"
        assert summary["Created"].endswith("Z") and summary["Created"][10] == "T"

        detail = get(base, f"/api/v1/message/{summary['ID']}")
        assert {k: detail[k] for k in summary} == summary
        assert detail["Stored"] == "memory"
        assert detail["Headers"]["X-Test"] == ["one", "two"]
        assert (detail["ClientIP"], detail["TLS"], detail["User"]) == ("127.0.0.1", False, None)
        assert detail["Helo"]

        status, raw, headers = call(base, f"/api/v1/message/{summary['ID']}/raw")
        assert (status, raw) == (200, RECEIVED)
        assert headers["Content-Type"] == "message/rfc822"


def test_a_message_with_storage_on_is_read_from_its_maildir_file(tmp_path: Path) -> None:
    with serving([0], http_port=0, capture=False, mailbox_dir=str(tmp_path)) as server:
        base = str(server.http_url)
        send_mail(server.port, CONTENT)
        (summary,) = get(base, "/api/v1/messages?wait=10")["messages"]
        detail = get(base, f"/api/v1/message/{summary['ID']}")
        assert detail["Stored"] == "maildir"
        assert detail["Subject"] == "Hello there"
        assert detail["Headers"]["X-Test"] == ["one", "two"]
        assert "Received" not in detail["Headers"]  # badsmtp's prefix lines are not the message
        status, raw, _ = call(base, f"/api/v1/message/{summary['ID']}/raw")
        assert (status, raw) == (200, RECEIVED)
        # Gone from the maildir (a reader took it): the content is no longer kept.
        (stored,) = (tmp_path / "new").iterdir()
        assert stored.read_bytes().endswith(RECEIVED)
        stored.unlink()
        status, body, _ = call(base, f"/api/v1/message/{summary['ID']}/raw")
        assert (status, body["status"]) == (410, 410)


def test_the_session_detail_has_the_transcript() -> None:
    with serving([0], http_port=0) as server:
        base = str(server.http_url)
        with Client(server.port) as c:
            c.reply()
            c.command(b"EHLO client.example")
            c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            c.replies(3)
            c.send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
            c.reply()
            c.command(b"QUIT")
        listing = get(base, "/api/v1/sessions?wait=10&count=1")
        (summary,) = listing["sessions"]
        assert (summary["Open"], summary["ClosedBy"], summary["Role"]) == (False, "server", "main")
        assert (summary["Commands"], summary["Messages"], summary["Findings"]) == (5, 1, 0)
        assert summary["Port"] == server.port and summary["ClientIP"] == "127.0.0.1"
        assert summary["ImplicitTLS"] is False and summary["TLS"] is False
        assert isinstance(summary["Duration"], float)
        detail = get(base, f"/api/v1/session/{summary['ID']}")
        assert detail["Pipelined"] == [["MAIL", "RCPT", "DATA"]]
        types = [e["Type"] for e in detail["Events"]]
        assert types[:3] == ["reply", "command", "reply"]
        assert "content" in types
        greeting = detail["Events"][0]
        assert greeting["Code"] == 220 and greeting["Batch"] == 0
        mail = next(e for e in detail["Events"] if e["Type"] == "command" and e["Verb"] == "MAIL")
        assert mail["Line"] == "MAIL FROM:<a@example.com>" and mail["Discarded"] is False
        content = next(e for e in detail["Events"] if e["Type"] == "content")
        assert content["Size"] == len(b"Subject: x\r\n\r\nhi\r\n") and content["EndedAt"] >= content["At"]
        (message_id,) = detail["MessageIDs"]
        assert get(base, f"/api/v1/message/{message_id}")["SessionID"] == summary["ID"]
        assert detail["FindingsList"] == [] and detail["DiscardedOctets"] == 0


def test_wait_returns_as_soon_as_the_message_arrives() -> None:
    with serving([0], http_port=0) as server:
        inbox = server._inbox
        assert inbox is not None

        def send_once_waiting() -> None:
            wait_until(lambda: inbox._waiting > 0, what="the request to wait")
            send_mail(server.port, CONTENT)

        sender = threading.Thread(target=send_once_waiting)
        sender.start()
        began = time.monotonic()
        try:
            listing = get(str(server.http_url), "/api/v1/messages?wait=60&count=1", timeout=90)
        finally:
            sender.join()
        assert listing["total"] == 1
        assert time.monotonic() - began < 30  # returned on arrival, not at the deadline


def test_wait_answers_408_when_nothing_arrives() -> None:
    with serving([0], http_port=0) as server:
        status, body, headers = call(str(server.http_url), "/api/v1/messages?wait=0.2&count=2")
        assert status == 408
        assert body["status"] == 408 and body["total"] == 0 and body["error"]
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        status, body, _ = call(str(server.http_url), "/api/v1/sessions?wait=0.1")
        assert (status, body["total"]) == (408, 0)


def test_a_stop_ends_a_waiting_request_at_once() -> None:
    server = BadSMTP([0], http_port=0).serve_in_thread()
    outcome: list[object] = []

    def wait_long() -> None:
        outcome.append(call(str(server.http_url), "/api/v1/messages?wait=600", timeout=60)[0])

    waiter = threading.Thread(target=wait_long)
    try:
        waiter.start()
        assert server._inbox is not None
        wait_until(lambda: server._inbox is not None and server._inbox._waiting > 0)
    finally:
        began = time.monotonic()
        server.stop()
    waiter.join(30)
    assert not waiter.is_alive() and time.monotonic() - began < 10
    assert outcome == [408]


def test_delete_forgets_messages_and_sessions(tmp_path: Path) -> None:
    with serving([0], http_port=0, mailbox_dir=str(tmp_path)) as server:
        base = str(server.http_url)
        send_mail(server.port, CONTENT)
        send_mail(server.port, CONTENT)
        get(base, "/api/v1/sessions?wait=10&count=2")
        status, body, _ = call(base, "/api/v1/messages", "DELETE")
        assert (status, body) == (200, {"deleted": 2})
        assert get(base, "/api/v1/messages")["total"] == 0
        assert len(list((tmp_path / "new").iterdir())) == 2  # the maildir files stay
        status, body, _ = call(base, "/api/v1/sessions", "DELETE")
        assert (status, body) == (200, {"deleted": 2})
        assert get(base, "/api/v1/sessions") == {"total": 0, "count": 0, "sessions": []}


def _refused(port: int) -> int:
    try:
        send_mail(port, CONTENT, recipients=("rcpt451x2@example.com",))
    except smtplib.SMTPRecipientsRefused as exc:
        return int(exc.recipients["rcpt451x2@example.com"][0])
    return 250


def test_reset_forgets_retry_counters_messages_and_sessions() -> None:
    with serving([0], http_port=0) as server:
        base = str(server.http_url)
        assert [_refused(server.port) for _ in range(3)] == [451, 451, 250]
        get(base, "/api/v1/sessions?wait=10&count=3")
        status, body, _ = call(base, "/api/v1/reset", "POST")
        assert (status, body) == (200, {"reset": True})
        assert get(base, "/api/v1/messages")["total"] == 0
        assert get(base, "/api/v1/sessions")["total"] == 0
        assert [_refused(server.port) for _ in range(3)] == [451, 451, 250]


def test_only_the_newest_are_kept() -> None:
    with serving([0], http_port=0, http_keep=3) as server:
        base = str(server.http_url)
        for n in range(5):
            send_mail(server.port, b"Subject: number %d\r\n\r\nx\r\n" % n)
        sessions = get(base, "/api/v1/sessions?wait=10&count=3")
        assert sessions["total"] == 3
        listing = get(base, "/api/v1/messages")
        assert listing["total"] == 3
        assert [m["Subject"] for m in listing["messages"]] == ["number 4", "number 3", "number 2"]
        limited = get(base, "/api/v1/messages?limit=1")
        assert (limited["total"], limited["count"]) == (3, 1)
        assert limited["messages"][0]["Subject"] == "number 4"
        assert [s["ID"] for s in sessions["sessions"]] == [
            m["SessionID"] for m in listing["messages"]
        ]


def test_bodies_past_the_memory_cap_are_dropped() -> None:
    with serving([0], http_port=0, http_memory=0, capture=False) as server:
        base = str(server.http_url)
        send_mail(server.port, CONTENT)
        (summary,) = get(base, "/api/v1/messages?wait=10")["messages"]
        detail = get(base, f"/api/v1/message/{summary['ID']}")
        assert detail["Stored"] == "none" and detail["Subject"] == ""
        status, body, _ = call(base, f"/api/v1/message/{summary['ID']}/raw")
        assert (status, body["status"]) == (410, 410)


def test_the_page_and_its_assets() -> None:
    with serving([0], http_port=0) as server:
        base = str(server.http_url)
        status, page, headers = call(base, "/")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Content-Security-Policy"].startswith("default-src 'self';")
        assert b"<html" in page
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
            status, _, headers = call(base, f"/static/{name}")
            assert status == 200 and headers["Content-Type"].startswith(kind)
            assert headers["X-Content-Type-Options"] == "nosniff"
        status, body, _ = call(base, "/static/nothing.js")
        assert (status, body["status"]) == (404, 404)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nothing", 404),
        ("GET", "/api/v1/message/msg_000000000000000000000000", 404),
        ("GET", "/api/v1/message/msg_000000000000000000000000/raw", 404),
        ("GET", "/api/v1/session/sess_000000000000000000000000", 404),
        ("GET", "/api/v1/message/..%2F..%2Fetc%2Fpasswd/raw", 404),
        ("GET", "/static/..%2F__init__.py", 404),
        ("GET", "/static/%2e%2e%2fapi.py", 404),
        ("GET", "/api/v1/messages?wait=abc", 400),
        ("GET", "/api/v1/messages?count=-1&wait=1", 400),
        ("GET", "/api/v1/sessions?limit=1.5", 400),
        ("GET", "/api/v1/sessions?wait=nan", 400),
        ("GET", "/api/v1/messages?wait=inf", 400),
        ("POST", "/api/v1/messages", 405),
        ("GET", "/api/v1/reset", 405),
        ("PUT", "/api/v1/session/sess_1", 405),
    ],
)
def test_bad_requests_get_json_errors(method: str, path: str, status: int) -> None:
    with serving([0], http_port=0) as server:
        got, body, headers = call(str(server.http_url), path, method)
        assert got == status, body
        assert body["status"] == status and isinstance(body["error"], str) and body["error"]
        assert "\n" not in body["error"] and "Traceback" not in body["error"]
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        if status == 405:
            assert headers["Allow"]
        assert get(str(server.http_url), "/api/v1/messages")["total"] == 0  # still serving


def test_405_says_which_methods_are_allowed() -> None:
    with serving([0], http_port=0) as server:
        _, _, headers = call(str(server.http_url), "/api/v1/messages", "POST")
        assert headers["Allow"] == "DELETE, GET, HEAD"
        _, _, headers = call(str(server.http_url), "/api/v1/reset", "DELETE")
        assert headers["Allow"] == "POST"


def test_an_internal_error_is_a_json_500_and_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    from badsmtp import httproutes

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(httproutes, "session_summary", broken)
    server = BadSMTP([0], http_port=0).serve_in_thread()
    try:
        with Client(server.port) as c:
            c.reply()
        server.wait_for_sessions(1)
        status, body, _ = call(str(server.http_url), "/api/v1/sessions")
        assert (status, body) == (500, {"error": "internal error: RuntimeError", "status": 500})
        assert get(str(server.http_url), "/api/v1/messages")["total"] == 0  # still serving
    finally:
        server.stop()
    assert [type(e) for e in server.errors] == [RuntimeError]


@pytest.mark.parametrize(
    "settings",
    [{"http_port": 70000}, {"http_port": -1}, {"http_keep": 0}, {"http_memory": -1}],
)
def test_bad_settings_are_configuration_errors(settings: dict[str, int]) -> None:
    with pytest.raises(ConfigError) as caught:
        BadSMTP([0], **settings)
    assert "\n" not in str(caught.value)


def test_without_http_port_there_is_no_api_and_recording_is_unbounded() -> None:
    with serving([0]) as server:
        assert server.http_port is None and server.http_url is None
        for _ in range(3):
            with Client(server.port) as c:
                c.reply()
        assert len(server.wait_for_sessions(3)) == 3


def test_the_http_port_in_use_is_a_bind_error() -> None:
    with serving([0], http_port=0) as first:
        with pytest.raises(OSError) as caught:
            BadSMTP([0], http_port=first.http_port).serve_in_thread()
        assert "HTTP" in str(caught.value)


def test_http_threads_end_with_the_server() -> None:
    before = {t.name for t in threading.enumerate()}
    with serving([0], http_port=0) as server:
        get(str(server.http_url), "/api/v1/messages")
    wait_until(lambda: not {t.name for t in threading.enumerate()} - before, what="threads to end")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\n\r\n", 505),
        (b"GET /api/v1/messages HTTP/1.0\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n", 414),
        (b"".join(b"X-%d: y\r\n" % n for n in range(150)).join([b"GET / HTTP/1.0\r\n", b"\r\n"]), 431),
        (b"BREW /api/v1/messages HTTP/1.0\r\n\r\n", 501),
        (b"POST /api/v1/reset HTTP/1.0\r\nContent-Length: 999999999\r\n\r\n", 413),
    ],
    ids=["garbage", "version", "huge-header", "huge-line", "many-headers", "method", "body"],
)
def test_garbage_gets_a_4xx_or_5xx_and_the_server_keeps_serving(request_bytes: bytes, status: int) -> None:
    from httpjson import raw_request

    with serving([0], http_port=0) as server:
        assert server.http_port is not None
        answer = raw_request(server.http_port, request_bytes)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split(b" ")[1] == b"%d" % status, answer[:200]
        assert b"application/json" in head
        assert b'"status": %d' % status in body and b"Traceback" not in body
        assert get(str(server.http_url), "/api/v1/messages")["total"] == 0


def test_a_client_that_never_sends_its_request_does_not_hold_up_a_stop() -> None:
    import socket

    server = BadSMTP([0], http_port=0).serve_in_thread()
    assert server.http_port is not None
    with socket.create_connection(("127.0.0.1", server.http_port)) as idle:
        idle.sendall(b"GET /api/v1/messages HTTP/1.0\r\n")  # and never the end of it
        get(str(server.http_url), "/api/v1/messages")  # the others are served meanwhile
        began = time.monotonic()
        server.stop()
        assert time.monotonic() - began < 5
        assert idle.recv(100) == b""


def test_a_long_session_keeps_its_first_records_and_every_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from badsmtp import api

    monkeypatch.setattr(api, "EVENTS_KEPT", 4)
    with serving([0], http_port=0) as server:
        with Client(server.port) as c:
            c.reply()
            for _ in range(99):  # the limit is checked every 64th receive
                assert c.command(b"NOOP")[:3] == b"250"
            c.send(b"NOOP\n")  # a bare LF: a finding, kept past the limit
            assert c.reply()[:3] == b"250"
            c.command(b"QUIT")
        (transcript,) = server.wait_for_sessions(1)
        assert 0 < len(transcript.events) <= 4 + 64 * 2
        assert transcript.truncated and transcript.closed_by == "server"
        assert [f.code for f in transcript.findings] == ["bare-lf"]
        detail = get(str(server.http_url), f"/api/v1/session/{transcript.id}")
        assert detail["Truncated"] is True
        assert len(detail["Events"]) == len(transcript.events)


def test_a_refused_message_leaves_nothing_in_the_next_one() -> None:
    with serving([0], http_port=0, capture=False) as server:
        with Client(server.port) as c:
            c.reply()
            c.command(b"EHLO size1000.example.com")
            too_big = b"x" * 998 + b"\r\n" + b"y" * 998 + b"\r\n"  # over SIZE 1000
            verdicts = []
            for content in (too_big, b"Subject: small\r\n\r\nok\r\n"):
                assert c.command(b"MAIL FROM:<a@example.com>")[:3] == b"250"
                assert c.command(b"RCPT TO:<b@example.com>")[:3] == b"250"
                assert c.command(b"DATA")[:3] == b"354"
                c.send(content + b".\r\n")
                verdicts.append(c.reply()[:3])
            assert verdicts == [b"552", b"250"]
            c.command(b"QUIT")
        (summary,) = get(str(server.http_url), "/api/v1/messages?wait=10")["messages"]
        status, raw, _ = call(str(server.http_url), f"/api/v1/message/{summary['ID']}/raw")
        assert (status, raw) == (200, b"Subject: small\r\n\r\nok\r\n")
