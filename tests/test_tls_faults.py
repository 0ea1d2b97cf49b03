"""badssl for SMTP (README, TLS faults; badsmtp(1), TLS FAULTS): the EHLO
keyword and the listener option that select a TLS fault, through the pure
core (no sockets, no clock); then each fault against real clients: a
verifying ``ssl`` client fails for the fault's own reason, one with
verification off completes a transaction, and ``tlsabort`` gives
``openssl s_client`` the 220 and then nothing."""

from __future__ import annotations

import json
import logging
import signal
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeshell import greeted
from helpers import Client, needs_tool, posix_signals, serving

from badsmtp import BadSMTP, Listener
from badsmtp.actions import Log, Send, StartTLS
from badsmtp.config import TLS_FAULTS, ConfigError, Role
from badsmtp.protocol import Context
from badsmtp.session import Session
from badsmtp.triggers import ehlo_capabilities

READY = b"220 2.0.0 Ready to start TLS\r\n"
CERT_FAULTS = ("certexpired", "certfuture", "certwronghost", "certselfsigned")
# What OpenSSL says for each (ssl.SSLCertVerificationError.verify_message), by
# the host name the client checks; OpenSSL 1.1 spells "self signed" without the hyphen.
REASONS = {
    "certexpired": ("certificate has expired",),
    "certfuture": ("certificate is not yet valid",),
    "certwronghost": (
        "Hostname mismatch, certificate is not valid for 'badsmtp.test'.",
        "IP address mismatch, certificate is not valid for '127.0.0.1'.",
    ),
    "certselfsigned": ("self-signed certificate", "self signed certificate"),
}


# == the core: which fault a session asks the shell for ==========================
@pytest.mark.parametrize("fault", TLS_FAULTS)
def test_the_ehlo_keyword_selects_the_fault(fault: str) -> None:
    caps = ehlo_capabilities(f"{fault}.example.com", False, "badsmtp.test")
    assert caps.tls_fault == fault
    assert ehlo_capabilities(f"X-{fault.upper()}-1.example", False, "badsmtp.test").tls_fault == fault


def test_no_keyword_no_fault_and_none_once_encrypted() -> None:
    assert ehlo_capabilities("client.example", False, "badsmtp.test").tls_fault is None
    assert ehlo_capabilities("certexpired.example", True, "badsmtp.test").tls_fault is None


def test_of_several_keywords_the_rightmost_wins() -> None:
    assert ehlo_capabilities("certexpired-tlsabort.example", False, "x").tls_fault == "tlsabort"
    assert ehlo_capabilities("tlsabort-certfuture.example", False, "x").tls_fault == "certfuture"


def test_the_keyword_leaves_the_ehlo_reply_alone() -> None:
    plain = greeted(b"EHLO client.example").sent.split(b"\r\n", 1)[1]
    assert greeted(b"EHLO certexpired.example").sent.split(b"\r\n", 1)[1] == plain


@pytest.mark.parametrize("fault", CERT_FAULTS)
def test_starttls_hands_the_certificate_fault_to_the_shell(fault: str) -> None:
    wire = greeted(f"EHLO {fault}.example.com".encode())
    actions = wire.session.receive_data(b"STARTTLS\r\n")
    assert Send(READY) in actions and actions[-1] == StartTLS(fault)
    logs = [a for a in actions if isinstance(a, Log)]
    assert [(log.message, log.fields["tls_fault"]) for log in logs] == [("TLS fault triggered", fault)]


def test_starttls_tlsabort_is_the_220_then_close_without_a_handshake() -> None:
    wire = greeted(b"EHLO tlsabort.example.com")
    assert wire.feed(b"STARTTLS\r\nNOOP\r\n") == READY
    assert wire.closed and wire.handshakes == 0
    assert not any(isinstance(a, StartTLS) for a in wire.actions)


def test_rset_keeps_the_fault_and_a_new_ehlo_replaces_it() -> None:
    wire = greeted(b"EHLO certfuture.example")
    wire.feed(b"RSET\r\n")
    assert wire.session.state.caps.tls_fault == "certfuture"
    wire.feed(b"EHLO client.example\r\n")
    actions = wire.session.receive_data(b"STARTTLS\r\n")
    assert actions == [Send(READY), StartTLS()]


@pytest.mark.parametrize("fault", TLS_FAULTS)
def test_an_implicit_tls_listener_fault_opens_the_session(fault: str) -> None:
    session = Session(Context(), handshake_first=True, tls_fault=fault)
    opening = session.greeting()
    assert opening[-1] == StartTLS(fault)
    assert [a.fields["tls_fault"] for a in opening if isinstance(a, Log)] == [fault]
    assert Session(Context(), handshake_first=True).greeting() == [StartTLS()]


def test_the_listener_option() -> None:
    listener = Listener(0, "tls", tls_fault="certexpired")
    assert (listener.role, listener.tls, listener.tls_fault) == (Role.TLS_FAULT, True, "certexpired")
    assert Listener(0, tls_fault="tlsabort").at(2600) == Listener(2600, "tls_fault", tls_fault="tlsabort")
    assert Listener(0, "tls").tls_fault is None
    with pytest.raises(ConfigError, match="not one of"):
        Listener(0, "tls", tls_fault="certbroken")
    with pytest.raises(ConfigError, match="implicit TLS"):
        Listener(0, "starttls", tls_fault="certexpired")
    with pytest.raises(ConfigError, match="needs tls_fault="):
        Listener(0, "tls_fault")


# == real clients ================================================================
@pytest.fixture(scope="module")
def srv() -> Iterator[BadSMTP]:
    """A plain listener (STARTTLS with the EHLO keywords) and one implicit TLS
    listener per fault, in the order of TLS_FAULTS."""
    listeners = [Listener(0, "tls", tls_fault=fault) for fault in TLS_FAULTS]
    with serving(ports=[0, *listeners]) as server:
        yield server


def unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fault_port(server: BadSMTP, fault: str) -> int:
    return server.ports[1 + TLS_FAULTS.index(fault)]


@pytest.mark.parametrize("host", ["badsmtp.test", "127.0.0.1"])
@pytest.mark.parametrize("fault", CERT_FAULTS)
def test_starttls_fault_fails_a_verifying_client_for_its_own_reason(srv: BadSMTP, fault: str, host: str) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port, timeout=5) as smtp:
        smtp._host = host  # the name smtplib checks the certificate against  # type: ignore[attr-defined]
        smtp.ehlo(f"{fault}.example.com")
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            smtp.starttls(context=srv.ca_client_context())
    assert caught.value.verify_message in REASONS[fault]


@pytest.mark.parametrize("fault", CERT_FAULTS)
def test_implicit_tls_fault_fails_a_verifying_client_for_its_own_reason(srv: BadSMTP, fault: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        smtplib.SMTP_SSL("127.0.0.1", fault_port(srv, fault), context=srv.ca_client_context(), timeout=5)
    assert caught.value.verify_message in REASONS[fault]


@pytest.mark.parametrize("fault", CERT_FAULTS)
def test_each_fault_passes_with_verification_off(srv: BadSMTP, fault: str) -> None:
    before = len(srv.messages)
    with smtplib.SMTP("127.0.0.1", srv.port, timeout=5) as smtp:
        smtp.ehlo(f"{fault}.example.com")
        smtp.starttls(context=unverified())
        smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: starttls\r\n\r\nhi\r\n")
    with smtplib.SMTP_SSL("127.0.0.1", fault_port(srv, fault), context=unverified(), timeout=5) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: implicit\r\n\r\nhi\r\n")
    assert len(srv.wait_for_messages(before + 2)) == before + 2


def test_the_default_certificate_still_verifies_with_the_ca_context(srv: BadSMTP) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port, timeout=5) as smtp:
        smtp.ehlo("client.example")
        smtp.starttls(context=srv.ca_client_context())
        assert smtp.noop()[0] == 250


def test_a_client_trusting_only_the_default_certificate_rejects_a_ca_issued_one(srv: BadSMTP) -> None:
    # certwronghost's only fault is its name; without the CA it is untrusted too.
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        smtplib.SMTP_SSL("127.0.0.1", fault_port(srv, "certwronghost"), context=srv.client_ssl_context(), timeout=5)
    assert caught.value.verify_message == "unable to get local issuer certificate"


def test_the_ca_is_one_per_server_and_a_ca(srv: BadSMTP) -> None:
    from cryptography import x509

    assert srv.ca_pem() == srv.ca_pem()
    ca = x509.load_pem_x509_certificate(srv.ca_pem().encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with BadSMTP(ports=[0]) as other:
        assert other.ca_pem() != srv.ca_pem()


def test_starttls_tlsabort_smtplib_sees_the_220_then_the_end(srv: BadSMTP) -> None:
    with Client(srv.port) as client:
        client.reply()
        client.command(b"EHLO tlsabort.example.com\r\n")
        client.send(b"STARTTLS\r\n")
        assert client.read_to_eof() == READY


def test_implicit_tlsabort_closes_after_the_client_hello(srv: BadSMTP) -> None:
    with (
        socket.create_connection(("127.0.0.1", fault_port(srv, "tlsabort")), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        unverified().wrap_socket(raw, server_hostname="badsmtp.test")


@needs_tool("openssl", "openssl")
def test_openssl_s_client_starttls_tlsabort_sees_220_then_eof(srv: BadSMTP) -> None:
    # -debug dumps what s_client reads in plain text: the 220 to STARTTLS.
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{srv.port}", "-starttls", "smtp",
            "-name", "tlsabort.example.com", "-crlf", "-debug"]  # fmt: skip
    done = subprocess.run(argv, input=b"", capture_output=True, timeout=20, check=False)
    out = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0, out
    assert "220 2.0.0 Ready " in out  # the hex dump's text column, 16 octets a line
    assert "no peer certificate available" in out
    assert "Cipher is (NONE)" in out and "BEGIN CERTIFICATE" not in out


# == the port plan (badsmtp(1), PORT MAP) ========================================
def test_the_default_plan_ends_with_the_five_fault_ports() -> None:
    from badsmtp.config import Config
    from badsmtp.portplan import help_reply, listener_for_port, plan_listeners, port_fields, summary

    config = Config()
    plan = plan_listeners(config)
    assert len(plan) == 309
    assert plan[-5:] == [Listener(25800 + i, "tls_fault", tls_fault=f) for i, f in enumerate(TLS_FAULTS)]
    assert listener_for_port(25802, config) == Listener(25802, tls_fault="certwronghost")
    assert listener_for_port(25805, config) == Listener(25805)
    assert port_fields(config, plan)["tls_fault_ports"] == {f: 25800 + i for i, f in enumerate(TLS_FAULTS)}
    assert ", immediate drop 6000, TLS faults 25800-25804; storage off; 309 listeners" in summary(config, plan, "1")
    assert b"implicit TLS: ports 25800-25804, in that order" in help_reply(config, plan).render(False)


def test_fault_ports_can_move_or_be_ephemeral() -> None:
    from badsmtp.config import Config
    from badsmtp.portplan import listener_for_port, plan_listeners, summary

    moved = Config(tls_fault_port_start=7000)
    assert [listener.port for listener in plan_listeners(moved)[-5:]] == list(range(7000, 7005))
    assert listener_for_port(7004, moved).tls_fault == "tlsabort"
    ephemeral = Config(tls_fault_port_start=0)
    assert [listener.port for listener in plan_listeners(ephemeral)[-5:]] == [0] * 5
    assert listener_for_port(0, ephemeral) == Listener(0)
    bound = [listener.at(40000 + i * 7) for i, listener in enumerate(plan_listeners(ephemeral)[-5:])]
    assert "TLS faults certexpired 40000, certfuture 40007, certwronghost 40014" in summary(ephemeral, bound, "1")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"tls_fault_port_start": 3098}, "port ranges overlap: greeting delay (3000-3099) and TLS fault (3098-3102)"),
        ({"tls_fault_port_start": 65533}, "TLS fault range (65533-65537) is out of range (1-65535)"),
        ({"tls_port": 25803}, "TLS port 25803 conflicts with TLS fault range (25800-25804)"),
    ],
)
def test_the_fault_range_is_validated_like_the_others(settings: dict[str, int], problem: str) -> None:
    from badsmtp.config import Config, PortConfigError
    from badsmtp.portplan import validate_ports

    with pytest.raises(PortConfigError) as caught:
        validate_ports(Config(**settings))
    assert str(caught.value) == problem
    validate_ports(Config(tls_fault_port_start=0, tls_port=0))


def test_the_server_binds_a_listener_fault_on_port_0(srv: BadSMTP) -> None:
    assert [listener.tls_fault for listener in srv.listeners[1:]] == list(TLS_FAULTS)
    assert srv.port_for("tls_fault") == srv.ports[1]


# == the command line: --write-tls-ca, the port file ===============================
def peer_pem(port: int) -> str:
    """The certificate an implicit TLS port presents, fetched without verifying."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        unverified().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


@posix_signals
@needs_tool("openssl", "openssl")
def test_write_tls_ca_is_a_trust_anchor_for_the_fault_leaves(tmp_path: Path) -> None:
    from test_cli_config import ephemeral_argv, finish, first_line, start

    ca, port_file = tmp_path / "ca.pem", tmp_path / "ports.json"
    proc = start([*ephemeral_argv(), "--write-tls-ca", str(ca), "--port-file", str(port_file)], tmp_path)
    try:
        summary = first_line(proc.stderr, timeout=30).decode()
        faults = json.loads(port_file.read_text(encoding="utf-8"))["tls_fault_ports"]
        assert list(faults) == list(TLS_FAULTS) and "TLS faults certexpired " in summary
        leaves = {}
        for fault in ("certwronghost", "certexpired", "certselfsigned"):
            leaves[fault] = tmp_path / f"{fault}.pem"
            leaves[fault].write_text(peer_pem(faults[fault]), encoding="ascii")
        # ssl loads it, and a verifying client fails on certexpired for that reason alone.
        context = ssl.create_default_context(cafile=str(ca))
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            smtplib.SMTP_SSL("127.0.0.1", faults["certexpired"], context=context, timeout=5)
        assert caught.value.verify_message == "certificate has expired"
    finally:
        proc.send_signal(signal.SIGTERM)
        status, _, err = finish(proc)
    assert status == 0 and err == b""
    assert ca.read_text(encoding="ascii").startswith("-----BEGIN CERTIFICATE-----\n")

    def verify(leaf: Path) -> str:
        argv = ["openssl", "verify", "-x509_strict", "-CAfile", str(ca), str(leaf)]
        done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        return (done.stdout + done.stderr).decode(errors="replace")

    assert verify(leaves["certwronghost"]).strip() == f"{leaves['certwronghost']}: OK"  # no name check here
    assert "certificate has expired" in verify(leaves["certexpired"])
    selfsigned = verify(leaves["certselfsigned"])
    assert "self-signed certificate" in selfsigned or "self signed certificate" in selfsigned


# == the builder ===================================================================
@pytest.mark.parametrize("fault", TLS_FAULTS)
def test_ehlo_name_builds_each_tls_fault_keyword(fault: str) -> None:
    import badsmtp

    name = badsmtp.ehlo_name(tls=fault)
    assert name == f"{fault}.example.com"
    assert ehlo_capabilities(name, False, "x").tls_fault == fault
    assert badsmtp.ehlo_name(no=["pipelining"], tls=fault) == f"nopipelining-{fault}.example.com"


def test_ehlo_name_refuses_an_unknown_tls_fault_and_a_fault_domain() -> None:
    import badsmtp

    with pytest.raises(ValueError, match="expected one of certexpired, certfuture, certwronghost"):
        badsmtp.ehlo_name(tls="expired")
    with pytest.raises(ValueError, match="holds an EHLO keyword"):
        badsmtp.ehlo_name(domain="certexpired.example")


def test_ehlo_name_tls_fault_live(srv: BadSMTP) -> None:
    import badsmtp

    with smtplib.SMTP("127.0.0.1", srv.port, timeout=5) as smtp:
        smtp.ehlo(badsmtp.ehlo_name(tls="certfuture"))
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            smtp.starttls(context=srv.ca_client_context())
    assert caught.value.verify_message == "certificate is not yet valid"


# == what the logs and --print-config say ==========================================
def test_a_fault_that_fires_is_logged_with_its_name(srv: BadSMTP) -> None:
    from helpers import log_records

    def fired(records: list[logging.LogRecord]) -> list[object]:
        return [r.__dict__["fields"].get("tls_fault") for r in records if r.getMessage() == "TLS fault triggered"]

    with log_records() as logs:
        with smtplib.SMTP("127.0.0.1", srv.port, timeout=5) as smtp:
            smtp.ehlo("certselfsigned.example.com")
            with pytest.raises(ssl.SSLCertVerificationError):
                smtp.starttls(context=srv.ca_client_context())
        with pytest.raises(ssl.SSLCertVerificationError):
            smtplib.SMTP_SSL("127.0.0.1", fault_port(srv, "certfuture"), context=srv.ca_client_context(), timeout=5)
        logs.wait_for(lambda records: len(fired(records)) == 2, what="two TLS fault records")
    assert sorted(map(str, fired(logs.records))) == ["certfuture", "certselfsigned"]


def test_print_config_shows_the_fault_port_start(tmp_path: Path) -> None:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BADSMTP_")}
    env.update(HOME=str(tmp_path), BADSMTP_TLS_FAULT_PORT_START="0")
    argv = [sys.executable, "-m", "badsmtp", "--print-config"]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, timeout=30, check=True)
    lines = done.stdout.decode().splitlines()
    (line,) = [line for line in lines if line.startswith("tls_fault_port_start:")]
    assert line.split("#") == ["tls_fault_port_start: 0".ljust(48), " env BADSMTP_TLS_FAULT_PORT_START"]


@pytest.mark.parametrize("fault", ["certexpired", "certfuture", "certselfsigned"])
def test_the_fault_certificate_carries_the_sni_name_asked_for(srv: BadSMTP, fault: str) -> None:
    # Only the fault fails, whatever name the client dials (the default certificate's rule).
    with (
        socket.create_connection(("127.0.0.1", fault_port(srv, fault)), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError) as caught,
    ):
        srv.ca_client_context().wrap_socket(raw, server_hostname="mx.example.org")
    assert caught.value.verify_message in REASONS[fault]
