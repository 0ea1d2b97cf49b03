"""TLS through the running server with real clients (RFC 3207; badsmtp(1), the TLS options):
openssl s_client, swaks and smtplib with certificate verification on, each with
a twin proving that verification fails for a client not given the certificate
or asking for a name it does not carry; the RFC 3207 state reset and the
command-injection rule; SNI; protocol floor; load and hostile clients; the
handshake timeout; user-supplied certificate files.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import smtplib
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from helpers import Client, needs_tool, serving
from wire import GREETING, MAIL_OK, OK

from badsmtp import BadSMTP, Listener
from badsmtp.config import Role
from badsmtp.tls import TLSSetupError

READY = b"220 2.0.0 Ready to start TLS\r\n"
ALREADY = b"554 5.5.1 TLS already started\r\n"
SELF_SIGNED = 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
IP_MISMATCH = 64  # X509_V_ERR_IP_ADDRESS_MISMATCH


@pytest.fixture
def srv(caplog: pytest.LogCaptureFixture) -> Iterator[BadSMTP]:
    """A plain (STARTTLS-capable) listener first and an implicit TLS one.  The
    test fails if the server recorded an internal error or logged a traceback."""
    caplog.set_level(logging.INFO, logger="badsmtp")
    with serving(ports=[0, Listener(0, Role.TLS)]) as server:
        yield server
    # The negative tests fail handshakes: a client's failure is a WARN, so
    # anything at ERROR is a server bug.
    tracebacks = [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == []


def tls_port(server: BadSMTP) -> int:
    return server.port_for(Role.TLS)


@pytest.fixture
def cafile(srv: BadSMTP, tmp_path: Path) -> Path:
    path = tmp_path / "badsmtp.pem"
    path.write_text(srv.certificate_pem())
    return path


def ehlo(c: Client, name: bytes = b"client.example") -> bytes:
    reply = c.command(b"EHLO " + name)
    assert reply.startswith(b"250-badsmtp.test\r\n") and reply.endswith(b"250 OK\r\n"), reply
    return reply


def starttls(c: Client, context: ssl.SSLContext, server_hostname: str | None = "localhost") -> None:
    assert c.command(b"STARTTLS") == READY
    assert c.buf == b""
    c.sock = context.wrap_socket(c.sock, server_hostname=server_hostname)


def tls_client(
    port: int, context: ssl.SSLContext, server_hostname: str | None = "localhost"
) -> Client:
    c = Client(port)
    try:
        c.sock = context.wrap_socket(c.sock, server_hostname=server_hostname)
    except BaseException:
        c.close()
        raise
    return c


def message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@example.com"
    msg["To"] = "bob@example.com"
    msg["Subject"] = subject
    msg.set_content("hello over TLS\n")
    return msg


def no_verification() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# -- openssl s_client (verifiable with the PEM of badsmtp(1), --write-tls-cert) ------
def s_client(
    *args: str, stdin: bytes = b"EHLO client.example\nQUIT\n"
) -> subprocess.CompletedProcess[bytes]:
    # -ign_eof: keep reading until the server closes after QUIT's 221;
    # -nocommands: a line starting with Q or R is SMTP here, not an s_client command.
    argv = ["openssl", "s_client", "-crlf", "-ign_eof", "-nocommands", *args]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=20, check=False)


def test_openssl_s_client_implicit_tls_verifies(srv: BadSMTP, cafile: Path) -> None:
    done = s_client(
        "-connect",
        f"127.0.0.1:{tls_port(srv)}",
        "-CAfile",
        str(cafile),
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
    )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "Verification: OK" in out and "Verify return code: 0 (ok)" in out
    assert "Verified peername: localhost" in out
    assert "220 badsmtp.test ESMTP BadSMTP" in out
    assert "250-STARTTLS" not in out  # the session is encrypted from the start
    assert "221 2.0.0 Bye" in out


def test_openssl_s_client_starttls_verifies(srv: BadSMTP, cafile: Path) -> None:
    done = s_client(
        "-connect",
        f"127.0.0.1:{srv.port}",
        "-starttls",
        "smtp",
        "-CAfile",
        str(cafile),
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
    )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert "Verification: OK" in out and "Verify return code: 0 (ok)" in out
    assert "250-STARTTLS" not in out  # our EHLO after the handshake (RFC 3207 §4.2)
    assert "221 2.0.0 Bye" in out


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_openssl_s_client_without_the_certificate_sees_self_signed_error(
    srv: BadSMTP, tmp_path: Path, mode: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    where = ["-connect", f"127.0.0.1:{tls_port(srv)}"]
    if mode == "starttls":
        where = ["-connect", f"127.0.0.1:{srv.port}", "-starttls", "smtp"]
    # An empty CA directory and no default paths: nothing on this machine is trusted.
    done = s_client(
        *where,
        "-CApath",
        str(empty),
        "-no-CAfile",
        "-no-CAstore",
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
    )
    both = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0
    assert "self-signed certificate" in both or "self signed certificate" in both
    assert "221 2.0.0 Bye" not in both


# -- swaks (a real SMTP client sending a message) -------------------------------------
swaks = needs_tool("swaks", "swaks")


@swaks
@pytest.mark.parametrize("mode", ["--tls", "--tlsc"])
def test_swaks_sends_a_message_over_tls_with_verification(
    srv: BadSMTP, cafile: Path, mode: str
) -> None:
    port = srv.port if mode == "--tls" else tls_port(srv)
    done = subprocess.run(
        [
            "swaks",
            "--server",
            "127.0.0.1",
            "--port",
            str(port),
            mode,
            "--tls-verify",
            "--tls-ca-path",
            str(cafile),
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.com",
            "--header",
            f"Subject: swaks {mode}",
            "--body",
            "hello from swaks",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out + done.stderr.decode(errors="replace")
    [msg] = srv.wait_for_messages(1)
    assert msg.tls_used and msg.subject == f"swaks {mode}"
    assert msg.sender == "alice@example.com" and msg.recipients == ("bob@example.com",)
    if mode == "--tls":
        assert (
            "<-  220 2.0.0 Ready to start TLS" in out and "<~  250 2.0.0 OK Message accepted" in out
        )


@swaks
def test_swaks_without_the_certificate_fails_verification(srv: BadSMTP, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [
            "swaks",
            "--server",
            "127.0.0.1",
            "--port",
            str(tls_port(srv)),
            "--tlsc",
            "--tls-verify",
            "--tls-ca-path",
            str(empty),
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.com",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert srv.messages == []


# -- smtplib with verification on, and its failing twins ---------------------------------
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_smtplib_smtp_ssl_verifies_and_sends(srv: BadSMTP, host: str) -> None:
    with smtplib.SMTP_SSL(host, tls_port(srv), context=srv.client_ssl_context(), timeout=5) as smtp:
        code, _ = smtp.ehlo("client.example")
        assert code == 250 and not smtp.has_extn("starttls")
        assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[union-attr]
        smtp.send_message(message("implicit"))
    [msg] = srv.wait_for_messages(1)
    assert msg.tls_used and msg.subject == "implicit" and msg.helo == "client.example"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_smtplib_starttls_verifies_and_sends(srv: BadSMTP, host: str) -> None:
    with smtplib.SMTP(host, srv.port, timeout=5) as smtp:
        smtp.ehlo("client.example")
        assert smtp.has_extn("starttls")
        code, text = smtp.starttls(context=srv.client_ssl_context())
        assert (code, text) == (220, b"2.0.0 Ready to start TLS")
        smtp.ehlo("client.example")
        assert not smtp.has_extn("starttls")
        smtp.send_message(message("starttls"))
    [msg] = srv.wait_for_messages(1)
    assert msg.tls_used and msg.subject == "starttls"


def test_smtplib_smtp_ssl_default_context_sees_self_signed_error(srv: BadSMTP) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        smtplib.SMTP_SSL(
            "localhost", tls_port(srv), context=ssl.create_default_context(), timeout=5
        )
    assert info.value.verify_code == SELF_SIGNED
    assert srv.messages == []


def test_smtplib_starttls_default_context_sees_self_signed_error(srv: BadSMTP) -> None:
    with smtplib.SMTP("localhost", srv.port, timeout=5) as smtp:
        smtp.ehlo("client.example")
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            smtp.starttls(context=ssl.create_default_context())
        assert info.value.verify_code == SELF_SIGNED


def test_ip_address_the_certificate_does_not_carry_fails_verification(srv: BadSMTP) -> None:
    # An IP address is never sent as SNI, so the server presents its default
    # certificate, trusted here; it carries 127.0.0.1 and ::1 but not 127.0.0.2.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        tls_client(tls_port(srv), srv.client_ssl_context(), server_hostname="127.0.0.2").close()
    assert info.value.verify_code == IP_MISMATCH


def test_name_the_default_certificate_does_not_carry_fails_verification(srv: BadSMTP) -> None:
    # "other_example" is no DNS name, so it gets the default certificate,
    # trusted here: the chain verifies, the host name does not.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        tls_client(tls_port(srv), srv.client_ssl_context(), server_hostname="other_example").close()
    assert info.value.verify_code == HOSTNAME_MISMATCH


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1", "::1", "badsmtp.test"])
def test_every_default_name_verifies_with_the_default_certificate(
    srv: BadSMTP, server_hostname: str
) -> None:
    with tls_client(tls_port(srv), srv.client_ssl_context(), server_hostname) as c:
        assert c.reply() == GREETING


# -- SNI (RFC 6066 §3) -----------------------------------------------------------------
@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_sni_name_gets_its_own_certificate(srv: BadSMTP, mode: str) -> None:
    context = srv.client_ssl_context("mx.example.org")
    if mode == "implicit":
        c = tls_client(tls_port(srv), context, "mx.example.org")
    else:
        c = Client(srv.port)
        assert c.reply() == GREETING
        ehlo(c)
        starttls(c, context, "mx.example.org")
    with c:
        cert = c.sock.getpeercert()  # type: ignore[attr-defined]
        assert dict(x[0] for x in cert["subject"])["commonName"] == "mx.example.org"
        assert ("DNS", "mx.example.org") in cert["subjectAltName"]
        der = c.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        assert (
            ssl.DER_cert_to_PEM_cert(der).strip() == srv.certificate_pem("mx.example.org").strip()
        )
        if mode == "implicit":
            assert c.reply() == GREETING
        ehlo(c)
        assert c.command(b"QUIT") == b"221 2.0.0 Bye\r\n"


def test_sni_name_does_not_verify_against_the_default_certificate(srv: BadSMTP) -> None:
    # The twin: trusting only the default certificate, SNI "other.example" gets
    # a certificate made for that name, which this client was not given.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        tls_client(tls_port(srv), srv.client_ssl_context(), "other.example").close()
    assert info.value.verify_code == SELF_SIGNED


# -- STARTTLS on the wire (RFC 3207 §4, §4.2) --------------------------------------------
def test_after_starttls_ehlo_drops_starttls_and_a_second_one_is_refused(srv: BadSMTP) -> None:
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        assert b"250-STARTTLS\r\n" in ehlo(c)
        starttls(c, srv.client_ssl_context())
        assert c.command(b"MAIL FROM:<a@example.com>") == (
            b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
        )  # state reset; no enhanced codes until the next EHLO (RFC 3207 §4.2)
        assert b"STARTTLS" not in ehlo(c)
        assert c.command(b"STARTTLS") == ALREADY
        assert c.command(b"NOOP") == OK  # still a working TLS session
        assert c.command(b"QUIT") == b"221 2.0.0 Bye\r\n"


def test_starttls_before_any_ehlo_is_accepted(srv: BadSMTP) -> None:
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        assert c.command(b"STARTTLS") == b"220 Ready to start TLS\r\n"
        c.sock = srv.client_ssl_context().wrap_socket(c.sock, server_hostname="localhost")
        assert c.command(b"STARTTLS") == b"554 TLS already started\r\n"


def test_bytes_pipelined_after_starttls_are_discarded(srv: BadSMTP) -> None:
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        c.send(b"STARTTLS\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<evil@x>\r\n")
        assert c.reply() == READY
        assert c.buf == b""  # no reply to the injected commands in plain text
        c.sock = srv.client_ssl_context().wrap_socket(c.sock, server_hostname="localhost")
        # Had the injected MAIL survived, this would be a 250 for evil@x.
        assert c.command(b"MAIL FROM:<good@example.com>") == (
            b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
        )
        ehlo(c)
        assert c.command(b"MAIL FROM:<good@example.com>") == MAIL_OK
        assert c.command(b"NOOP") == OK  # the next reply is NOOP's: nothing else queued
        assert c.command(b"QUIT") == b"221 2.0.0 Bye\r\n"
        assert c.read_to_eof() == b""
    assert srv.messages == []


def test_pipelined_starttls_twin_plain_mail_is_accepted(srv: BadSMTP) -> None:
    # The twin: the same MAIL pipelined after a NOOP is of course processed.
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        c.send(b"NOOP\r\nMAIL FROM:<evil@x>\r\n")
        assert c.replies(2) == [OK, MAIL_OK]


def test_starttls454_trigger_refuses_tls_every_time_until_disarmed(srv: BadSMTP) -> None:
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        assert c.command(b"MAIL FROM:<starttls454@example.com>") == MAIL_OK
        assert c.command(b"RSET") == OK
        assert c.command(b"STARTTLS") == b"454 Command not implemented\r\n"
        assert c.command(b"STARTTLS") == b"454 Command not implemented\r\n"
        assert c.command(b"NOOP") == OK  # still plain text: no TLS was started
        # A MAIL FROM without a trigger disarms it; then STARTTLS works.
        assert c.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
        assert c.command(b"RSET") == OK
        starttls(c, srv.client_ssl_context())
        ehlo(c)
    assert srv.messages == []


def test_starttls454_trigger_fires_inside_the_transaction(srv: BadSMTP) -> None:
    # The README's sequence: MAIL FROM:<starttls454@…> then STARTTLS gives 454
    # (RFC 3207 does not forbid STARTTLS there); the transaction goes on in
    # plain text.  Without the trigger STARTTLS keeps its 503 (the twin).
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        assert c.command(b"MAIL FROM:<starttls454@example.net>") == MAIL_OK
        assert c.command(b"STARTTLS") == b"454 Command not implemented\r\n"
        assert c.command(b"RCPT TO:<bob@example.com>") == b"250 2.1.5 OK\r\n"
        assert c.command(b"STARTTLS") == b"454 Command not implemented\r\n"
        assert c.command(b"DATA").startswith(b"354 ")
        assert c.command(b"Subject: plain\r\n\r\nstill plain\r\n.") == (
            b"250 2.0.0 OK Message accepted for delivery\r\n"
        )
        assert c.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
        assert c.command(b"STARTTLS") == (
            b"503 5.5.1 Bad sequence - STARTTLS not allowed in RCPT state\r\n"
        )
    [stored] = srv.wait_for_messages(1)
    assert stored.sender == "starttls454@example.net" and stored.tls_used is False


def test_tls_session_ends_with_close_notify(srv: BadSMTP) -> None:
    # RFC 8446 §6.1: a closed TLS connection without close_notify looks
    # truncated to OpenSSL 3 (s_client: "unexpected eof while reading").
    context = srv.client_ssl_context()
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    with tls_client(tls_port(srv), context) as c:
        assert c.reply() == GREETING
        assert c.command(b"QUIT") == b"221 Bye\r\n"
        assert c.sock.recv(100) == b""  # a clean TLS EOF, not SSLEOFError


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_stop_sends_421_inside_tls_then_close_notify(srv: BadSMTP, mode: str) -> None:
    context = srv.client_ssl_context()
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if mode == "implicit":
        c = tls_client(tls_port(srv), context)
        assert c.reply() == GREETING
    else:
        c = Client(srv.port)
        assert c.reply() == GREETING
        ehlo(c)
        starttls(c, context)
    with c:
        ehlo(c)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 1.0
        assert c.read_to_eof() == b"421 4.3.2 Service shutting down\r\n"


# -- the implicit TLS port (badsmtp(1), PORT MAP) -------------------------------------------
def test_implicit_port_greets_only_after_the_handshake(srv: BadSMTP) -> None:
    with Client(tls_port(srv)) as c:
        c.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            c.sock.recv(1)  # nothing in plain text before the handshake
        c.sock = srv.client_ssl_context().wrap_socket(c.sock, server_hostname="localhost")
        assert c.reply() == GREETING
        reply = ehlo(c)
        assert b"STARTTLS" not in reply and b"250-PIPELINING\r\n" in reply
        assert c.command(b"STARTTLS") == ALREADY
        assert c.command(b"QUIT") == b"221 2.0.0 Bye\r\n"


@pytest.mark.skipif(not ssl.HAS_TLSv1_1, reason="TLS 1.1 not compiled in")
@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_tls11_is_refused_and_tls12_is_accepted(srv: BadSMTP, mode: str) -> None:
    def legacy(maximum: ssl.TLSVersion) -> ssl.SSLContext:
        context = no_verification()
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client itself offer TLS 1.1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = maximum
        return context

    def connect(context: ssl.SSLContext) -> Client:
        if mode == "implicit":
            return tls_client(tls_port(srv), context)
        c = Client(srv.port)
        try:
            assert c.reply() == GREETING
            assert c.command(b"STARTTLS") == b"220 Ready to start TLS\r\n"
            c.sock = context.wrap_socket(c.sock, server_hostname="localhost")
        except BaseException:
            c.close()
            raise
        return c

    with pytest.raises(ssl.SSLError) as info:
        connect(legacy(ssl.TLSVersion.TLSv1_1)).close()
    assert info.value.reason in {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"}
    with connect(legacy(ssl.TLSVersion.TLSv1_2)) as c:
        assert c.sock.version() == "TLSv1.2"  # type: ignore[attr-defined]
        if mode == "implicit":
            assert c.reply() == GREETING
        assert c.command(b"NOOP") == b"250 OK\r\n"


def test_plain_smtp_on_the_tls_port_is_closed_quietly(srv: BadSMTP) -> None:
    with Client(tls_port(srv)) as c:
        c.send(b"EHLO x\r\n")
        data = c.read_to_eof(timeout=5)
    assert b"220" not in data and b"250" not in data
    # The listener is unharmed.
    with tls_client(tls_port(srv), srv.client_ssl_context()) as c:
        assert c.reply() == GREETING


# -- load and hostile clients ---------------------------------------------------------------
def _transaction(port: int, context: ssl.SSLContext, subject: str) -> None:
    with smtplib.SMTP_SSL("localhost", port, context=context, timeout=20) as smtp:
        smtp.send_message(message(subject))


def test_200_concurrent_tls_handshakes_each_complete_a_transaction(srv: BadSMTP) -> None:
    count = 200
    context = srv.client_ssl_context()
    gate = threading.Barrier(count, timeout=20)
    failures: list[BaseException] = []

    def one(n: int) -> None:
        try:
            gate.wait()
            _transaction(tls_port(srv), context, f"load {n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    messages = srv.wait_for_messages(count, timeout=30)
    assert sorted(m.subject or "" for m in messages) == sorted(f"load {n}" for n in range(count))
    assert all(m.tls_used for m in messages)


def test_junk_and_silent_clients_do_not_delay_a_good_tls_client(srv: BadSMTP) -> None:
    port = tls_port(srv)
    hostile: list[socket.socket] = []
    try:
        for n in range(50):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            hostile.append(sock)
            if n % 3 == 0:
                sock.sendall(os.urandom(300))  # garbage: that handshake fails at once
            elif n % 3 == 1:
                sock.sendall(
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                )  # a ClientHello cut short
            # else: silent, the handshake waits for it
        t0 = time.monotonic()
        _transaction(port, srv.client_ssl_context(), "good client")
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, f"a good client took {elapsed:.2f} s among 50 bad ones"
    finally:
        for sock in hostile:
            sock.close()
    _transaction(port, srv.client_ssl_context(), "after")  # the listener keeps serving
    assert [m.subject for m in srv.wait_for_messages(2)] == ["good client", "after"]


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_silent_tls_client_is_closed_by_the_handshake_timeout(mode: str) -> None:
    with serving(ports=[0, Listener(0, Role.TLS)], idle_timeout=0.5) as server:
        port = server.port_for(Role.TLS) if mode == "implicit" else server.port
        with Client(port) as c:
            if mode == "starttls":
                assert c.reply() == GREETING
                assert c.command(b"STARTTLS") == b"220 Ready to start TLS\r\n"
            t0 = time.monotonic()
            assert c.read_to_eof(timeout=5) == b""  # then says nothing, gets closed
            elapsed = time.monotonic() - t0
        assert 0.5 - 0.02 <= elapsed < 1.5, f"closed after {elapsed:.2f} s"
        # The handler is free again: a good client is served.
        with tls_client(server.port_for(Role.TLS), server.client_ssl_context()) as c:
            assert c.reply() == GREETING


def test_stop_during_a_tls_handshake_returns_quickly() -> None:
    with serving(ports=[Listener(0, Role.TLS), 0]) as server, Client(server.port) as silent:
        with Client(server.ports[1]) as probe:  # accepted before this one was greeted
            assert probe.reply() == GREETING
        t0 = time.monotonic()
        server.stop()
        assert time.monotonic() - t0 < 1.0
        # No SMTP reply can be sent before the handshake: at most a TLS alert, then the close.
        data = silent.read_to_eof(timeout=2)
        assert data == b"" or data.startswith(b"\x15\x03"), data


# -- user-supplied certificate files (badsmtp(1), --tls-cert-file) -------------------------
def make_cert_files(tmp_path: Path, name: str = "localhost") -> tuple[Path, Path, int]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert.serial_number


def test_user_certificate_files_are_presented(tmp_path: Path) -> None:
    cert_path, key_path, serial = make_cert_files(tmp_path)
    settings = {"tls_cert_file": str(cert_path), "tls_key_file": str(key_path)}
    with serving(ports=[0, Listener(0, Role.TLS)], **settings) as server:
        assert server.certificate_pem().strip() == cert_path.read_text().strip()
        trusting = ssl.create_default_context(cafile=str(cert_path))  # independent of badsmtp
        with smtplib.SMTP_SSL(
            "localhost", server.port_for(Role.TLS), context=trusting, timeout=5
        ) as smtp:
            assert int(smtp.sock.getpeercert()["serialNumber"], 16) == serial  # type: ignore[union-attr]
            smtp.send_message(message("files implicit"))
        with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as smtp:
            smtp.starttls(context=server.client_ssl_context())
            assert int(smtp.sock.getpeercert()["serialNumber"], 16) == serial  # type: ignore[union-attr]
            smtp.send_message(message("files starttls"))
        # Files are presented for every SNI name, so another name is a host-name mismatch.
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            tls_client(server.port_for(Role.TLS), trusting, "other.example").close()
        assert info.value.verify_code == HOSTNAME_MISMATCH
        assert [m.subject for m in server.wait_for_messages(2)] == [
            "files implicit",
            "files starttls",
        ]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "case", ["missing cert", "missing key", "garbage cert", "other key", "only cert", "only key"]
)
def test_bad_certificate_files_fail_start_up_clearly(tmp_path: Path, case: str) -> None:
    cert_path, key_path, _ = make_cert_files(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key, _ = make_cert_files(tmp_path / "other")
    settings: dict[str, str | None] = {
        "tls_cert_file": str(cert_path),
        "tls_key_file": str(key_path),
    }
    named = str(cert_path)
    if case == "missing cert":
        settings["tls_cert_file"] = named = str(tmp_path / "nope.pem")
    elif case == "missing key":
        settings["tls_key_file"] = named = str(tmp_path / "nope-key.pem")
    elif case == "garbage cert":
        settings["tls_cert_file"] = named = _write(tmp_path / "garbage.pem", "not a certificate\n")
    elif case == "other key":
        settings["tls_key_file"] = named = str(other_key)
    elif case == "only cert":
        settings["tls_key_file"] = None
    else:
        settings["tls_cert_file"] = None
        named = str(key_path)
    acceptors = sum(1 for t in threading.enumerate() if t.name == "badsmtp-acceptor")
    with pytest.raises(TLSSetupError) as info:
        BadSMTP(ports=[0, Listener(0, Role.TLS)], **settings).serve_in_thread()
    text = str(info.value)
    assert named in text and "\n" not in text
    assert sum(1 for t in threading.enumerate() if t.name == "badsmtp-acceptor") == acceptors
