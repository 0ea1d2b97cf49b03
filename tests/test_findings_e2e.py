"""Compliance findings over real sockets (README, What your client did
wrong): ``server.findings`` and ``transcript.findings`` after real clients,
and the CLI's WARN record.  Well-behaved clients (smtplib, with and without
STARTTLS; swaks with --pipeline) must have none: a false finding is worse
than a missed one."""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    Client,
    first_stderr_line,
    free_ranges,
    needs_tool,
    posix_signals,
    serving,
    terminate,
)

from badsmtp import BadSMTP, Finding

needs_swaks = needs_tool("swaks", "swaks")
MESSAGE = "From: me@example.com\r\nTo: you@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
def server() -> Iterator[BadSMTP]:
    with serving(ports=[0]) as srv:
        yield srv


def test_smtplib_sendmail_has_no_findings(server: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.sendmail("me@example.com", ["you@example.com"], MESSAGE)
        smtp.sendmail("me@example.com", ["you@example.com"], "Subject: two\r\n\r\n" + ("x" * 70 + "\r\n") * 100)
    (t,) = server.wait_for_sessions(1)
    assert t.commands[-1] == "QUIT"
    assert t.findings == [] and server.findings == []


def test_smtplib_starttls_ehlo_login_has_no_findings(server: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.starttls(context=server.ca_client_context())
        smtp.login("goodauth@example.com", "password")
        smtp.sendmail("me@example.com", ["you@example.com"], MESSAGE)
    (t,) = server.wait_for_sessions(1)
    assert t.commands == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]
    assert server.findings == []


@needs_swaks
@pytest.mark.parametrize("extra", [["--pipeline"], ["--pipeline", "-tls"], []])
def test_swaks_has_no_findings(server: BadSMTP, extra: list[str]) -> None:
    result = subprocess.run(
        [shutil.which("swaks") or "swaks", "--server", "127.0.0.1", "--port", str(server.port),
         "--timeout", "10", "--helo", "swaks.example", "--from", "alice@example.com",
         "--to", "bob@example.com", *extra],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (t,) = server.wait_for_sessions(1)
    assert t.pipelined == ([("MAIL", "RCPT", "DATA")] if extra else [])  # as RFC 2920 allows
    assert server.findings == [], result.stdout


def test_a_bare_lf_client_is_noted_and_answered_as_ever(server: BadSMTP) -> None:
    with Client(server.port) as client:
        assert client.reply().startswith(b"220 ")
        assert client.command(b"EHLO client.example").endswith(b"250 OK\r\n")
        client.send(b"NOOP\n")
        assert client.reply() == b"250 2.0.0 OK\r\n"
        assert client.command(b"QUIT") == b"221 2.0.0 Bye\r\n"
    (t,) = server.wait_for_sessions(1)
    assert t.findings == [
        Finding("bare-lf", "RFC 5321 §2.3.8", "NOOP", "NOOP ended with a bare LF, not CRLF", "error")
    ]
    assert server.findings == t.findings
    assert "bare-lf" in str(t)  # the transcript's text shows it where it happened


def test_pipelining_in_a_helo_session_and_no_quit(server: BadSMTP) -> None:
    with Client(server.port) as client:
        assert client.reply().startswith(b"220 ")
        assert client.command(b"HELO client.example") == b"250 badsmtp.test\r\n"
        client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        assert (client.reply(), client.reply()) == (b"250 OK\r\n", b"250 OK\r\n")
    (t,) = server.wait_for_sessions(1)
    assert [(f.code, f.command) for f in t.findings] == [
        ("pipelining-not-advertised", "MAIL"), ("no-quit", "")
    ]


def test_findings_list_every_session_in_connection_order(server: BadSMTP) -> None:
    for _ in range(2):
        with Client(server.port) as client:
            assert client.reply().startswith(b"220 ")
            client.send(b"QUIT\r\nNOOP\r\n")
            assert client.reply() == b"221 Bye\r\n"
    first, second = server.wait_for_sessions(2)
    assert [f.code for f in server.findings] == ["after-quit", "after-quit"]
    assert server.findings == first.findings + second.findings


# -- the CLI: one WARN record per finding (badsmtp(1), LOGGING) ----------------------------
@posix_signals
def test_the_cli_logs_one_warn_record_per_finding(tmp_path: Path) -> None:
    greeting, command, drop = free_ranges(3)
    port_file, log = tmp_path / "ports.json", tmp_path / "log.jsonl"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "badsmtp", "--port", "0", "--port-file", str(port_file),
             "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
             "--tls-fault-port-start", "0", "--greeting-delay-port-start", str(greeting),
             "--command-delay-port-start", str(command), "--drop-delay-port-start", str(drop)],
            stdout=out, stderr=subprocess.PIPE,
        )  # fmt: skip
    try:
        assert first_stderr_line(proc, timeout=30).startswith(b"badsmtp ")
        port = json.loads(port_file.read_text(encoding="utf-8"))["normal_port"]
        with Client(port) as client:
            assert client.reply().startswith(b"220 ")
            assert client.command(b"EHLO client.example").endswith(b"250 OK\r\n")
            client.send(b"NOOP\n")
            assert client.reply() == b"250 2.0.0 OK\r\n"
            assert client.command(b"QUIT") == b"221 2.0.0 Bye\r\n"
    finally:
        terminate(proc)
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    found = [r for r in records if r["message"] == "SMTP client protocol finding"]
    assert len(found) == 1 and found[0]["level"] == "WARN"
    fields = found[0]["fields"]
    assert fields["session_id"].startswith("sess_")
    assert {k: fields[k] for k in ("code", "rfc", "command", "explanation", "severity")} == {
        "code": "bare-lf", "rfc": "RFC 5321 §2.3.8", "command": "NOOP",
        "explanation": "NOOP ended with a bare LF, not CRLF", "severity": "error",
    }  # fmt: skip
