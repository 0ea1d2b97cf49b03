"""The trigger builders (badsmtp.address, ehlo_name, helo_trigger_name): every
input they build makes a live server answer exactly what it names, and
input the server would not understand is refused with a clear ValueError.

These tests use the package's own pytest fixture ``badsmtp_session_server``
(one server for the module's many cases; an internal error fails the case
that caused it)."""

from __future__ import annotations

import pytest
from helpers import Client

import badsmtp
from badsmtp import BadSMTP, builders, triggers
from badsmtp.replies import TRIGGER_TEXTS

CODES: list[int | str] = [250, 354, 421, 450, 452, 454, 550, 571, 999, "000", "042"]


def expected(code: int | str, enhanced: str | None) -> bytes:
    number = int(code)
    esc = f"{enhanced} " if enhanced else ""
    return f"{number:03d} {esc}{TRIGGER_TEXTS.get(number, 'Unknown error')}\r\n".encode()


def fire(port: int, verb: str, address: str, in_mail_from: bool) -> tuple[bytes, Client]:
    """Issue the command that ``address`` should fail; return its reply and
    the client (still open, for the caller to check a close)."""
    client = Client(port)
    try:
        assert client.reply().startswith(b"220 ")
        client.command(b"EHLO client.example.com")  # enhanced codes on
        addr = address.encode()
        if verb == "mail":
            return client.command(b"MAIL FROM:<" + addr + b">"), client
        if verb == "rcpt" and not in_mail_from:
            assert client.command(b"MAIL FROM:<me@example.com>").startswith(b"250 ")
            return client.command(b"RCPT TO:<" + addr + b">"), client
        assert client.command(b"MAIL FROM:<" + addr + b">").startswith(b"250 ")
        if verb in ("rcpt", "data"):
            if verb == "data":
                assert client.command(b"RCPT TO:<you@example.com>").startswith(b"250 ")
                return client.command(b"DATA"), client
            return client.command(b"RCPT TO:<you@example.com>"), client
        if verb in ("starttls", "auth"):  # not allowed in a transaction: RSET first
            assert client.command(b"RSET").startswith(b"250 ")
        line = {"rset": b"RSET", "noop": b"NOOP", "quit": b"QUIT", "starttls": b"STARTTLS",
                "auth": b"AUTH PLAIN"}[verb]
        return client.command(line), client
    except BaseException:
        client.close()
        raise


CASES = [
    pytest.param(verb, code, enhanced, in_mail_from, id=f"{verb}{'-in-MAIL' if in_mail_from else ''}-{code}-{enhanced}")
    for verb in builders.ADDRESS_VERBS
    for in_mail_from in ((False, True) if verb == "rcpt" else (verb != "mail",))
    for code in CODES
    for enhanced in (None, "5.1.1")
]


@pytest.mark.parametrize(("verb", "code", "enhanced", "in_mail_from"), CASES)
def test_address_triggers_exactly_the_reply_it_names(
    badsmtp_session_server: BadSMTP, verb: str, code: int | str, enhanced: str | None, in_mail_from: bool
) -> None:
    address = badsmtp.address(verb, code, enhanced)
    assert address == f"{verb}{int(code):03d}{'_' + enhanced if enhanced else ''}@example.com"
    reply, client = fire(badsmtp_session_server.port, verb, address, in_mail_from)
    with client:
        assert reply == expected(code, enhanced)
        if int(code) == 421 or verb == "quit":  # 421 always closes; so does QUIT (RFC 5321 §3.8)
            assert client.read_to_eof() == b""


def test_an_ordinary_address_triggers_nothing(badsmtp_session_server: BadSMTP) -> None:
    """The negative twin: the same conversation without a builder address."""
    reply, client = fire(badsmtp_session_server.port, "mail", "mail@example.com", False)
    with client:
        assert reply == b"250 2.1.0 OK\r\n"


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("greeting", [b"EHLO", b"HELO"])
def test_helo_trigger_name(badsmtp_session_server: BadSMTP, code: int | str, greeting: bytes) -> None:
    name = badsmtp.helo_trigger_name(code)
    assert name == f"helo{int(code):03d}.example.com"
    with Client(badsmtp_session_server.port) as client:
        client.reply()
        # Replies to HELO/EHLO never carry an enhanced code (RFC 2034 §3).
        assert client.command(greeting + b" " + name.encode()) == expected(code, None)


# -- ehlo_name ---------------------------------------------------------------------
def ehlo(port: int, name: str) -> list[str]:
    with Client(port) as client:
        client.reply()
        reply = client.command(b"EHLO " + name.encode()).decode()
    return [line[4:] for line in reply.splitlines()]


def test_ehlo_name_example_from_the_docs() -> None:
    assert badsmtp.ehlo_name(no=["pipelining", "auth"], size=100_000) == (
        "nopipelining-noauth-size100000.example.com"
    )


@pytest.mark.parametrize(
    ("capability", "advertised"),
    [
        ("auth", "AUTH"),
        ("8bit", "8BITMIME"),
        ("8BITMIME", "8BITMIME"),
        ("size", "SIZE"),
        ("pipelining", "PIPELINING"),
        ("starttls", "STARTTLS"),
        ("chunking", "CHUNKING"),
        ("smtputf8", "SMTPUTF8"),
        ("enhancedstatuscodes", "ENHANCEDSTATUSCODES"),
    ],
)
def test_ehlo_name_withdraws_each_capability(
    badsmtp_session_server: BadSMTP, capability: str, advertised: str
) -> None:
    plain = ehlo(badsmtp_session_server.port, badsmtp.ehlo_name())
    assert any(line.split()[0] == advertised for line in plain)  # the twin: offered by default
    lines = ehlo(badsmtp_session_server.port, badsmtp.ehlo_name(no=[capability]))
    assert [line for line in lines if line.split()[0] == advertised] == []
    assert len(lines) == len(plain) - 1  # nothing else withdrawn


def test_ehlo_name_size_auth_and_enhanced(badsmtp_session_server: BadSMTP) -> None:
    port = badsmtp_session_server.port
    assert "SIZE 100000" in ehlo(port, badsmtp.ehlo_name(size=100_000))
    for mechanism, offered in [("plain", "AUTH PLAIN"), ("login", "AUTH LOGIN"),
                               ("cram", "AUTH CRAM-MD5 CRAM-SHA256"), ("oauth", "AUTH XOAUTH2")]:
        assert offered in ehlo(port, badsmtp.ehlo_name(auth=mechanism))
    with Client(port) as client:
        client.reply()
        client.command(b"EHLO " + badsmtp.ehlo_name(enhanced=False).encode())
        assert client.command(b"MAIL FROM:<a@example.com>") == b"250 OK\r\n"


def test_ehlo_name_reject(badsmtp_session_server: BadSMTP) -> None:
    with Client(badsmtp_session_server.port) as client:
        client.reply()
        assert client.command(b"EHLO " + badsmtp.ehlo_name(reject=True).encode()) == (
            b"502 Command not implemented\r\n"
        )


def test_ehlo_name_delay_is_a_dlay_token() -> None:
    # Checked on the pure core: a live check would cost whole seconds.
    name = badsmtp.ehlo_name(delay=2, no=["chunking"])
    assert name == "nochunking-dlay2.example.com"
    assert triggers.ehlo_capabilities(name, False, "x").delay == 2.0
    assert triggers.ehlo_capabilities(badsmtp.ehlo_name(), False, "x").delay is None


def test_ehlo_name_without_keywords_is_the_domain() -> None:
    assert badsmtp.ehlo_name() == "example.com"
    assert badsmtp.ehlo_name(domain="client.test") == "client.test"
    assert badsmtp.ehlo_name(no="auth") == "noauth.example.com"


def test_address_domain() -> None:
    assert badsmtp.address("MAIL", 550, domain="example.net") == "mail550@example.net"
    assert badsmtp.address("data", "000") == "data000@example.com"


def test_refusals_list_the_choices_in_the_documented_order() -> None:
    # The order of the README and badsmtp(1), ERROR TRIGGERS / EHLO KEYWORDS.
    with pytest.raises(ValueError) as verb:
        badsmtp.address("xmail", 550)
    assert str(verb.value) == (
        "unknown trigger verb 'xmail'; expected one of mail, rcpt, data, rset, noop, quit, starttls, auth"
    )
    with pytest.raises(ValueError) as mechanism:
        badsmtp.ehlo_name(auth="digest-md5")
    assert str(mechanism.value) == (
        "unknown AUTH mechanism 'digest-md5'; expected one of plain, login, cram, cram-md5,"
        " cram-sha256, oauth, xoauth2"
    )
    with pytest.raises(ValueError) as capability:
        badsmtp.ehlo_name(no=["pipelinning"])
    assert str(capability.value) == (
        "unknown capability 'pipelinning'; expected one of 8bit, 8bitmime, auth, chunking, enhanced,"
        " enhancedstatuscodes, pipelining, size, smtputf8, starttls"
    )


# -- validation ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: badsmtp.address("xmail", 550), "unknown trigger verb 'xmail'"),
        (lambda: badsmtp.address("bdat", 550), "unknown trigger verb 'bdat'"),
        (lambda: badsmtp.address("helo", 500), r"use helo_trigger_name\(\)"),
        (lambda: badsmtp.address("mail", 55), "three digits"),
        (lambda: badsmtp.address("mail", 1000), "three digits"),
        (lambda: badsmtp.address("mail", "55"), "three digits"),
        (lambda: badsmtp.address("mail", "5500"), "three digits"),
        (lambda: badsmtp.address("mail", True), "three digits"),
        (lambda: badsmtp.address("mail", 5.5), "three digits"),  # type: ignore[arg-type]
        (lambda: badsmtp.address("mail", 550, "5.1"), "x.y.z"),
        (lambda: badsmtp.address("mail", 550, "5.1.a"), "x.y.z"),
        (lambda: badsmtp.address("mail", 550, "5.1.1."), "x.y.z"),
        (lambda: badsmtp.address("mail", 550, domain="a b"), "not a valid mail domain"),
        (lambda: badsmtp.address("mail", 550, domain="x@y"), "not a valid mail domain"),
        (lambda: badsmtp.address("mail", 550, domain=""), "not a valid mail domain"),
        (lambda: badsmtp.helo_trigger_name(50), "three digits"),
        (lambda: badsmtp.helo_trigger_name(500, domain="nosize.example"), "EHLO keyword"),
        (lambda: badsmtp.ehlo_name(no=["pipelinning"]), "unknown capability 'pipelinning'"),
        (lambda: badsmtp.ehlo_name(size=999), "size must be an integer from 1000 to 10000000"),
        (lambda: badsmtp.ehlo_name(size=10_000_001), "size must be"),
        (lambda: badsmtp.ehlo_name(size=True), "size must be"),  # type: ignore[arg-type]
        (lambda: badsmtp.ehlo_name(size=2000, no=["size"]), "contradicts"),
        (lambda: badsmtp.ehlo_name(auth="digest-md5"), "unknown AUTH mechanism"),
        (lambda: badsmtp.ehlo_name(auth="plain", no=["auth"]), "contradicts"),
        (lambda: badsmtp.ehlo_name(delay=0), "delay must be whole seconds from 1 to 605"),
        (lambda: badsmtp.ehlo_name(delay=606), "delay must be"),
        (lambda: badsmtp.ehlo_name(delay=1.5), "delay must be"),  # type: ignore[arg-type]
        (lambda: badsmtp.ehlo_name(domain="reject.example"), "EHLO keyword"),
        (lambda: badsmtp.ehlo_name(domain="size5000.example"), "EHLO keyword"),
        (lambda: badsmtp.ehlo_name(domain="no space"), "not a valid mail domain"),
    ],
)
def test_invalid_input_is_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
