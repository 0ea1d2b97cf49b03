"""AUTH end to end (RFC 4954; badsmtp(1), EHLO KEYWORDS and LOGGING): real
clients (smtplib, swaks, curl) and exact bytes on the wire for what clients
rarely show."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest
from helpers import Client, b64b, needs_tool, serving

from badsmtp import BadSMTP

GOOD, BAD = "goodauth@example.com", "badauth@example.com"
PASSWORD = "s3cret-Passw0rd"
XOAUTH2_JSON_B64 = base64.b64encode(
    b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
)


def xoauth2(user: str, token: str = "tok") -> bytes:
    return b64b(f"user={user}\x01auth=Bearer {token}\x01\x01")


class RecordingSMTP(smtplib.SMTP):
    """smtplib with a record of every line it sent."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.sent: list[bytes] = []
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        self.sent.append(s if isinstance(s, bytes) else s.encode())
        super().send(s)


# -- smtplib -----------------------------------------------------------------------
# EHLO keyword → what smtplib.login() then uses (it prefers CRAM-MD5, PLAIN, LOGIN).
MECHS = [("authplain", b"AUTH PLAIN"), ("authlogin", b"AUTH LOGIN"), ("authcram", b"AUTH CRAM-MD5")]


@pytest.mark.parametrize("keyword,command", MECHS, ids=["PLAIN", "LOGIN", "CRAM-MD5"])
def test_smtplib_login_goodauth(server: BadSMTP, keyword: str, command: bytes) -> None:
    with RecordingSMTP("127.0.0.1", server.port) as smtp:
        smtp.ehlo(f"{keyword}.example.com")
        assert smtp.login(GOOD, PASSWORD) == (235, b"2.7.0 Authentication successful")
        assert next(line for line in smtp.sent if line.startswith(b"AUTH")).startswith(command)
        smtp.sendmail(GOOD, ["bob@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    [msg] = server.wait_for_messages(1)
    assert msg.user == GOOD


@pytest.mark.parametrize("keyword,command", MECHS, ids=["PLAIN", "LOGIN", "CRAM-MD5"])
def test_smtplib_login_badauth(server: BadSMTP, keyword: str, command: bytes) -> None:
    with RecordingSMTP("127.0.0.1", server.port) as smtp:
        smtp.ehlo(f"{keyword}.example.com")
        with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
            smtp.login(BAD, PASSWORD)
        assert (failed.value.smtp_code, failed.value.smtp_error) == (
            535, b"5.7.8 Authentication failed"
        )
        assert next(line for line in smtp.sent if line.startswith(b"AUTH")).startswith(command)
        # The session goes on, unauthenticated.
        assert smtp.noop() == (250, b"2.0.0 OK")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_smtplib_auth_forces_any_mechanism(server: BadSMTP, mechanism: str) -> None:
    """smtplib's auth() picks the mechanism itself, whatever EHLO offered."""
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.ehlo("authoauth.example.com")  # only XOAUTH2 advertised: accepted anyway
        smtp.user, smtp.password = GOOD, PASSWORD
        method = getattr(smtp, "auth_" + mechanism.lower().replace("-", "_"))
        assert smtp.auth(mechanism, method) == (235, b"2.7.0 Authentication successful")


def test_smtplib_noauth_hides_auth(server: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
        smtp.ehlo("noauth.example.com")
        assert not smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.login(GOOD, PASSWORD)


# -- what EHLO advertises (badsmtp(1), EHLO KEYWORDS) ---------------------------------
@pytest.mark.parametrize(
    "name,line",
    [
        ("client.example.com", b"250-AUTH PLAIN LOGIN CRAM-MD5 CRAM-SHA256 XOAUTH2\r\n"),
        ("authplain.example.com", b"250-AUTH PLAIN\r\n"),
        ("authlogin.example.com", b"250-AUTH LOGIN\r\n"),
        ("authcram.example.com", b"250-AUTH CRAM-MD5 CRAM-SHA256\r\n"),
        ("authoauth.example.com", b"250-AUTH XOAUTH2\r\n"),
        ("authplain-authoauth.example.com", b"250-AUTH XOAUTH2\r\n"),  # rightmost wins
        ("AUTHLOGIN.example.com", b"250-AUTH LOGIN\r\n"),
    ],
)
def test_ehlo_keyword_chooses_the_mechanisms(client: Client, name: str, line: bytes) -> None:
    reply = client.command(b"EHLO " + name.encode())
    assert reply.startswith(b"250-badsmtp.test\r\n" + line + b"250-8BITMIME\r\n")


@pytest.mark.parametrize("name", ["noauth.example.com", "noauth-authplain.example.com"])
def test_ehlo_noauth_beats_everything(client: Client, name: str) -> None:
    reply = client.command(b"EHLO " + name.encode())
    assert b"AUTH" not in reply
    assert reply.startswith(b"250-badsmtp.test\r\n250-8BITMIME\r\n")
    # Not advertised is not refused: the keywords change the advertisement only
    # (badsmtp(1), EHLO KEYWORDS).
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"235 2.7.0 Authentication successful\r\n"
    )


# -- swaks -------------------------------------------------------------------------------
needs_swaks = needs_tool("swaks", "swaks")


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("swaks") or "swaks", "--server", "127.0.0.1", "--port", str(port),
         "--timeout", "10", "--helo", "swaks.example", "--from", "alice@example.com",
         "--to", "bob@example.com", *args],
        check=False, capture_output=True, text=True, timeout=30,
    )


@needs_swaks
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_auth_goodauth(server: BadSMTP, mechanism: str) -> None:
    result = swaks(server.port, "--auth", mechanism, "--auth-user", GOOD, "--auth-password", PASSWORD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f" -> AUTH {mechanism}" in result.stdout
    assert "<-  235 2.7.0 Authentication successful" in result.stdout
    [msg] = server.wait_for_messages(1)
    assert msg.user == GOOD


@needs_swaks
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_auth_badauth(server: BadSMTP, mechanism: str) -> None:
    result = swaks(server.port, "--auth", mechanism, "--auth-user", BAD, "--auth-password", PASSWORD)
    assert result.returncode == 28, result.stdout  # swaks: "authentication failed"
    assert f" -> AUTH {mechanism}" in result.stdout
    assert "<** 535 5.7.8 Authentication failed" in result.stdout
    assert server.messages == []


# -- curl -------------------------------------------------------------------------------
def _curl_has_smtp() -> bool:
    if shutil.which("curl") is None:
        return False
    out = subprocess.run(
        ["curl", "--version"], check=False, capture_output=True, text=True, timeout=30
    ).stdout
    return any(line.startswith("Protocols:") and " smtp" in line for line in out.splitlines())


needs_curl = needs_tool("curl", "curl", present=_curl_has_smtp())


def curl(port: int, tmp_path: Path, ehlo: str, *args: str) -> subprocess.CompletedProcess[str]:
    message = tmp_path / "message.eml"
    message.write_bytes(b"Subject: curl test\r\n\r\nhello from curl\r\n")
    # The URL's path is the name curl sends with EHLO: it picks the mechanism.
    return subprocess.run(
        ["curl", "-sS", "-v", "--max-time", "20", f"smtp://127.0.0.1:{port}/{ehlo}",
         "--mail-from", "alice@example.com", "--mail-rcpt", "bob@example.com",
         "--upload-file", str(message), *args],
        check=False, capture_output=True, text=True, timeout=30,
    )


@needs_curl
@pytest.mark.parametrize(
    "ehlo,mechanism",
    [("authplain.example.com", "PLAIN"), ("authlogin.example.com", "LOGIN"),
     ("authcram.example.com", "CRAM-MD5")],
)
def test_curl_user_goodauth(server: BadSMTP, tmp_path: Path, ehlo: str, mechanism: str) -> None:
    result = curl(server.port, tmp_path, ehlo, "--user", f"{GOOD}:{PASSWORD}")
    assert result.returncode == 0, result.stderr
    assert f"> AUTH {mechanism}" in result.stderr
    assert "< 235 2.7.0 Authentication successful" in result.stderr
    [msg] = server.wait_for_messages(1)
    assert (msg.user, msg.subject) == (GOOD, "curl test")


@needs_curl
def test_curl_user_badauth(server: BadSMTP, tmp_path: Path) -> None:
    result = curl(server.port, tmp_path, "authplain.example.com", "--user", f"{BAD}:{PASSWORD}")
    assert result.returncode == 67, result.stderr  # CURLE_LOGIN_DENIED
    assert "< 535 5.7.8 Authentication failed" in result.stderr
    assert server.messages == []


@needs_curl
def test_curl_xoauth2_goodauth(server: BadSMTP, tmp_path: Path) -> None:
    result = curl(server.port, tmp_path, "client.example.com", "--oauth2-bearer", "TOKEN",
                  "--user", GOOD)
    assert result.returncode == 0, result.stderr
    assert "> AUTH XOAUTH2" in result.stderr
    assert "< 235 2.7.0 Authentication successful" in result.stderr
    assert server.wait_for_messages(1)[0].user == GOOD


@needs_curl
def test_curl_xoauth2_badauth(server: BadSMTP, tmp_path: Path) -> None:
    result = curl(server.port, tmp_path, "client.example.com", "--oauth2-bearer", "TOKEN",
                  "--user", BAD)
    assert result.returncode == 67, result.stderr
    # Google's error challenge; what curl does next depends on its version.
    assert "< 334 " + XOAUTH2_JSON_B64.decode() in result.stderr
    assert server.messages == []


# -- exact bytes ------------------------------------------------------------------------
def test_cram_sha256_raw(client: Client) -> None:
    assert client.command(b"EHLO authcram.example.com").endswith(b"250 OK\r\n")
    client.send(b"AUTH CRAM-SHA256\r\n")
    reply = client.reply()
    m = re.fullmatch(rb"334 ([A-Za-z0-9+/=]+)\r\n", reply)
    assert m, reply
    challenge = base64.b64decode(m.group(1), validate=True)
    # RFC 2195 shape, unique: <random+sequence.unix_time.pid@identity>
    assert re.fullmatch(rb"<\d+\.\d+\.\d+@badsmtp\.test>", challenge), challenge
    digest = hmac.new(PASSWORD.encode(), challenge, hashlib.sha256).hexdigest()
    assert client.command(b64b(f"{GOOD} {digest}")) == b"235 2.7.0 Authentication successful\r\n"
    assert client.command(b"AUTH CRAM-SHA256") == b"503 5.5.1 Already authenticated\r\n"


def test_cram_sha256_raw_badauth(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    assert client.command(b"AUTH CRAM-SHA256").startswith(b"334 ")
    assert client.command(b64b(f"{BAD} 0123abcd")) == b"535 5.7.8 Authentication failed\r\n"
    # A CRAM answer without "user SP digest" is malformed.
    assert client.command(b"AUTH CRAM-MD5").startswith(b"334 ")
    assert client.command(b64b(GOOD)) == b"535 5.7.8 Authentication failed\r\n"


def test_xoauth2_error_flow_raw(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    client.send(b"AUTH XOAUTH2 " + xoauth2(BAD) + b"\r\n")
    assert client.reply() == b"334 " + XOAUTH2_JSON_B64 + b"\r\n"
    assert client.command(b"") == b"535 5.7.8 Authentication failed\r\n"
    assert client.command(b"NOOP") == b"250 2.0.0 OK\r\n"
    # Without an initial response: the empty challenge first.
    assert client.command(b"AUTH XOAUTH2") == b"334 \r\n"
    assert client.command(xoauth2(BAD)) == b"334 " + XOAUTH2_JSON_B64 + b"\r\n"
    assert client.command(b"") == b"535 5.7.8 Authentication failed\r\n"
    # Its positive twin.
    assert client.command(b"AUTH XOAUTH2 " + xoauth2(GOOD)) == (
        b"235 2.7.0 Authentication successful\r\n"
    )


def test_xoauth2_error_flow_without_enhanced_codes(client: Client) -> None:
    client.command(b"HELO client.example.com")
    assert client.command(b"AUTH XOAUTH2 " + xoauth2(BAD)) == b"334 " + XOAUTH2_JSON_B64 + b"\r\n"
    assert client.command(b"") == b"535 Authentication failed\r\n"


@pytest.mark.parametrize(
    "start,prompt",
    [(b"AUTH LOGIN", b"334 VXNlcm5hbWU6\r\n"), (b"AUTH PLAIN", b"334 \r\n"),
     (b"AUTH XOAUTH2", b"334 \r\n")],
)
def test_star_cancels(client: Client, start: bytes, prompt: bytes) -> None:
    client.command(b"EHLO client.example.com")
    assert client.command(start) == prompt
    assert client.command(b"*") == b"501 5.7.0 Authentication cancelled\r\n"
    assert client.command(b"NOOP") == b"250 2.0.0 OK\r\n"  # back to commands


def test_star_cancels_at_the_password_prompt(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    assert client.command(b"AUTH LOGIN " + b64b(GOOD)) == b"334 UGFzc3dvcmQ6\r\n"
    assert client.command(b"*") == b"501 5.7.0 Authentication cancelled\r\n"
    # Cancelled is not authenticated: a new AUTH is allowed.
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"235 2.7.0 Authentication successful\r\n"
    )


def test_auth_twice(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"235 2.7.0 Authentication successful\r\n"
    )
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"503 5.5.1 Already authenticated\r\n"
    )
    assert client.command(b"AUTH NOSUCH") == b"503 5.5.1 Already authenticated\r\n"


def test_auth_twice_negative_twin_after_failure(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{BAD}\0pw")) == (
        b"535 5.7.8 Authentication failed\r\n"
    )
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"235 2.7.0 Authentication successful\r\n"
    )


def test_auth_during_a_transaction(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    assert client.command(b"MAIL FROM:<alice@example.com>") == b"250 2.1.0 OK\r\n"
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"503 5.5.1 Bad sequence - AUTH not allowed in RCPT state\r\n"
    )
    assert client.command(b"RSET") == b"250 2.0.0 OK\r\n"
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"235 2.7.0 Authentication successful\r\n"
    )


def test_auth_before_helo(client: Client) -> None:
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"503 Bad sequence - AUTH not allowed in HELO state\r\n"
    )


def test_unknown_mechanism(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    assert client.command(b"AUTH DIGEST-MD5") == b"504 5.5.4 Authentication mechanism not supported\r\n"


def test_auth_trigger(client: Client) -> None:
    """``auth<code>`` is deferred: armed by MAIL FROM, fired by AUTH after RSET
    (README, Asking for errors)."""
    client.command(b"EHLO client.example.com")
    assert client.command(b"MAIL FROM:<auth535_5.7.0@example.com>") == b"250 2.1.0 OK\r\n"
    assert client.command(b"RSET") == b"250 2.0.0 OK\r\n"
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"535 5.7.0 Authentication failed\r\n"
    )
    # Still armed, before the mechanism is even looked at; 501 for no argument first.
    assert client.command(b"AUTH NOSUCH") == b"535 5.7.0 Authentication failed\r\n"
    assert client.command(b"AUTH") == b"501 5.5.4 Syntax error in parameters\r\n"
    # A plain MAIL FROM disarms it.
    client.command(b"MAIL FROM:<alice@example.com>")
    client.command(b"RSET")
    assert client.command(b"AUTH PLAIN " + b64b(f"\0{GOOD}\0pw")) == (
        b"235 2.7.0 Authentication successful\r\n"
    )


def test_auth_trigger_421_closes(client: Client) -> None:
    client.command(b"EHLO client.example.com")
    client.command(b"MAIL FROM:<auth421@example.com>")
    client.command(b"RSET")
    client.send(b"AUTH LOGIN\r\n")
    assert client.read_to_eof() == b"421 Service not available, closing transmission channel\r\n"


def test_inactive_user(tmp_path: Path) -> None:
    from badsmtp import User

    def authenticate(username: str, password: str | None) -> User:
        return User(id=username, username=username, active="inactive" not in username)

    with serving(ports=[0], authenticator=authenticate) as srv, Client(srv.port) as c:
        c.reply()
        c.command(b"EHLO client.example.com")
        assert c.command(b"AUTH PLAIN " + b64b("\0inactive@example.com\0pw")) == (
            b"535 5.7.8 Authentication failed: account inactive\r\n"
        )
        assert c.command(b"AUTH PLAIN " + b64b("\0active@example.com\0pw")) == (
            b"235 2.7.0 Authentication successful\r\n"
        )


# -- secrets never logged (badsmtp(1), LOGGING) ---------------------------------------------
def _everything_logged(records: list[logging.LogRecord]) -> str:
    out = []
    for r in records:
        out.append(r.getMessage())
        out.append(repr(r.__dict__))
        if r.exc_info:
            out.append(logging.Formatter().formatException(r.exc_info))
    return "\n".join(out)


def test_auth_secrets_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    initial = b64b(f"\0{GOOD}\0{PASSWORD}")
    login_user, login_password = b64b(BAD), b64b(PASSWORD)
    with caplog.at_level(logging.DEBUG):
        with serving(ports=[0]) as srv, Client(srv.port) as c:
            c.reply()
            c.command(b"EHLO client.example.com")
            assert c.command(b"AUTH PLAIN " + initial) == b"235 2.7.0 Authentication successful\r\n"
            c.command(b"QUIT")
        with serving(ports=[0]) as srv, Client(srv.port) as c:
            c.reply()
            c.command(b"EHLO client.example.com")
            c.command(b"AUTH LOGIN")
            c.command(login_user)
            assert c.command(login_password) == b"535 5.7.8 Authentication failed\r\n"
            c.command(b"QUIT")
    logged = _everything_logged(caplog.records)
    for secret in (initial.decode(), PASSWORD, login_password.decode()):
        assert secret not in logged
    # The base64 minus its padding, in case something strips it.
    assert initial.decode().rstrip("=") not in logged
