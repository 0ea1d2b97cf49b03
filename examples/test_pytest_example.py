# examples/test_pytest_example.py: the fixtures come with badsmtp, no conftest needed
import smtplib

import pytest

import badsmtp
from badsmtp import Listener


def send(port: int, sender: str, recipients: list[str]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.sendmail(sender, recipients, "Subject: hello\r\n\r\nHi!\r\n")


def test_message_is_delivered(badsmtp_server):
    send(badsmtp_server.port, "me@example.com", ["you@example.com"])
    (message,) = badsmtp_server.wait_for_messages(1)
    assert message.recipients == ("you@example.com",)


def test_refused_recipient(badsmtp_server):
    refused = badsmtp.address("rcpt", 550, "5.1.1")  # 'rcpt550_5.1.1@example.com'
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(badsmtp_server.port, "me@example.com", [refused])
    (session,) = badsmtp_server.wait_for_sessions(1)
    assert session.reply_to("RCPT").line == "550 5.1.1 Requested action not taken: mailbox unavailable"
    assert session.count("DATA") == 0  # the client did not go on to DATA
    assert session.closed_by == "server"  # it said QUIT and got its 221


def test_one_server_for_the_whole_run(badsmtp_session_server):
    with smtplib.SMTP("127.0.0.1", badsmtp_session_server.port) as client:
        code, capabilities = client.ehlo(badsmtp.ehlo_name(no=["pipelining"], size=100_000))
    assert code == 250 and b"SIZE 100000" in capabilities and b"PIPELINING" not in capabilities


def test_slow_greeting(badsmtp_factory):
    server = badsmtp_factory(ports=[Listener(0, "greeting_delay", 0.5)])
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        smtplib.SMTP("127.0.0.1", server.port, timeout=0.05)
