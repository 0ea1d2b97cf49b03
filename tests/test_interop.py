"""Real clients against the server: swaks (the SMTP swiss-army knife) and
smtplib's SMTPUTF8 path."""

from __future__ import annotations

import shutil
import smtplib
import subprocess
from email.message import EmailMessage

import pytest
from helpers import needs_tool

from badsmtp import BadSMTP

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
needs_swaks = needs_tool("swaks", "swaks")


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            SWAKS, "--server", "127.0.0.1", "--port", str(port), "--timeout", "10",
            "--to", "bob@example.com", "--helo", "swaks.example",
            "--header", "Subject: swaks test", "--body", "hello\n.dot line",
            *args,
        ],
        check=False, capture_output=True,
        text=True,
        timeout=30,
    )


@needs_swaks
def test_swaks_sends_a_message(server: BadSMTP) -> None:
    result = swaks(server.port, "--from", "alice@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 2.0.0 OK Message accepted for delivery" in result.stdout
    assert "<-  221 2.0.0 Bye" in result.stdout
    [msg] = server.wait_for_messages(1)
    assert msg.sender == "alice@example.com"
    assert msg.recipients == ("bob@example.com",)
    assert msg.helo == "swaks.example"
    assert msg.subject == "swaks test"
    assert msg.headers["From"] == "alice@example.com"
    # swaks stuffed the dot, the server unstuffed it.
    assert msg.content.split(b"\r\n\r\n", 1)[1].startswith(b"hello\r\n.dot line\r\n")


@needs_swaks
def test_swaks_sees_a_triggered_error(server: BadSMTP) -> None:
    result = swaks(server.port, "--from", "mail550_5.7.1@example.com")
    assert result.returncode == 23, result.stdout  # swaks: "error in MAIL transaction"
    assert "<** 550 5.7.1 Requested action not taken: mailbox unavailable" in result.stdout
    assert "<-  221 2.0.0 Bye" in result.stdout
    assert server.messages == []


@needs_swaks
def test_swaks_pipelining(server: BadSMTP) -> None:
    result = swaks(server.port, "--from", "alice@example.com", "--pipeline")
    assert result.returncode == 0, result.stdout + result.stderr
    # All three commands went out before the first reply came back.
    assert (
        " -> MAIL FROM:<alice@example.com>\n -> RCPT TO:<bob@example.com>\n -> DATA\n"
        "<-  250 2.1.0 OK\n<-  250 2.1.5 OK\n<-  354 End data with <CR><LF>.<CR><LF>\n"
    ) in result.stdout
    assert server.wait_for_messages(1)[0].subject == "swaks test"


@needs_swaks
def test_swaks_pipelining_twin_without_the_capability(server: BadSMTP) -> None:
    result = swaks(server.port, "--from", "alice@example.com", "--pipeline", "--helo", "nopipelining.example")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250-PIPELINING" not in result.stdout
    assert " -> MAIL FROM:<alice@example.com>\n<-  250 2.1.0 OK\n -> RCPT TO" in result.stdout
    assert server.wait_for_messages(1)[0].helo == "nopipelining.example"


def _utf8_message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "jösé@exämple.com"
    msg["To"] = "пример@example.com"
    msg["Subject"] = "Grüße"
    msg.set_content("Ünïcödé body\n")
    return msg


def test_smtplib_send_message_with_smtputf8_addresses(server: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.example", timeout=5) as smtp:
        assert smtp.send_message(_utf8_message()) == {}
        assert smtp.has_extn("smtputf8")
    [msg] = server.wait_for_messages(1)
    assert msg.sender == "jösé@exämple.com"
    assert msg.recipients == ("пример@example.com",)
    assert msg.email["Subject"] == "Grüße"
    assert msg.email.get_content() == "Ünïcödé body\r\n"  # line endings kept as sent


def test_smtplib_smtputf8_twin_without_the_capability(server: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", server.port, local_hostname="nosmtputf8.example", timeout=5) as smtp:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.send_message(_utf8_message())
        # And the server itself refuses a UTF-8 address without SMTPUTF8.
        smtp.send("MAIL FROM:<jösé@exämple.com>\r\n".encode())
        assert smtp.getreply() == (501, b"5.5.4 Syntax error in parameters")
    assert server.messages == []
