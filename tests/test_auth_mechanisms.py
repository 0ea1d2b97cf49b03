"""The fake SASL exchanges of badsmtp.auth (RFC 4954 §4), driven directly."""

from __future__ import annotations

import base64
import json
from collections.abc import Generator
from typing import Any

import pytest
from helpers import b64, b64b

from badsmtp import auth
from badsmtp.auth import (
    MECHANISMS,
    Credentials,
    User,
    exchange,
    failure_exchange,
    pattern_authenticate,
    redact_auth_args,
)
from badsmtp.replies import AUTH_BAD_BASE64, AUTH_CANCELLED, AUTH_FAILED, Reply, ReplyError

CHALLENGE = "<1735900000.4242@badsmtp.test>"
CHALLENGE_B64 = "PDE3MzU5MDAwMDAuNDI0MkBiYWRzbXRwLnRlc3Q+"
EMPTY = Reply(334, ("",))
USERNAME = Reply(334, ("VXNlcm5hbWU6",))
PASSWORD = Reply(334, ("UGFzc3dvcmQ6",))
CRAM_OFFER = Reply(334, (CHALLENGE_B64,))
CRAMS = ("CRAM-MD5", "CRAM-SHA256")


class Run:
    """Drive an exchange generator like the session driver does: record every
    yielded challenge, answer from a script, capture the outcome."""

    def __init__(self, gen: Generator[Reply, bytes, Any], answers: list[bytes]) -> None:
        self.challenges: list[Reply] = []
        self.result: Any = None
        self.error: Reply | None = None
        answers = list(answers)
        try:
            reply = next(gen)
            while True:
                self.challenges.append(reply)
                reply = gen.send(answers.pop(0))
        except StopIteration as stop:
            self.result = stop.value
        except ReplyError as exc:
            self.error = exc.reply
        assert not answers, f"unused answers: {answers}"


def run(mechanism: str, initial: str | None, *answers: bytes) -> Run:
    return Run(exchange(mechanism, initial, CHALLENGE), list(answers))


def plain(user: str, password: str = "password", authzid: str = "") -> str:
    return b64(f"{authzid}\x00{user}\x00{password}")


def xoauth2(user: str, token: str = "t") -> str:
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


# -- challenge replies and their bytes ----------------------------------------
def test_challenge_bytes() -> None:
    assert EMPTY.render(False) == b"334 \r\n"
    assert EMPTY.render(True) == b"334 \r\n"  # 3xx never carry an enhanced code
    assert USERNAME.render(True) == b"334 VXNlcm5hbWU6\r\n"
    assert PASSWORD.render(True) == b"334 UGFzc3dvcmQ6\r\n"
    assert CRAM_OFFER.render(False) == b"334 PDE3MzU5MDAwMDAuNDI0MkBiYWRzbXRwLnRlc3Q+\r\n"
    assert base64.b64decode(CHALLENGE_B64).decode() == CHALLENGE
    assert auth.EMPTY_CHALLENGE == EMPTY
    assert auth.USERNAME_PROMPT == USERNAME
    assert auth.PASSWORD_PROMPT == PASSWORD


def test_mechanisms_tuple() -> None:
    assert MECHANISMS == ("PLAIN", "LOGIN", "CRAM-MD5", "CRAM-SHA256", "XOAUTH2")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_mechanism_name_is_case_insensitive(mechanism: str) -> None:
    gen = exchange(mechanism.lower(), None, CHALLENGE)
    assert next(gen).code == 334
    gen.close()


def test_unknown_mechanism_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        exchange("DIGEST-MD5", None, CHALLENGE)


# -- PLAIN (RFC 4616) ---------------------------------------------------------
@pytest.mark.parametrize("user", ["goodauth@example.com", "badauth@example.com"])
def test_plain_initial_response(user: str) -> None:
    r = run("PLAIN", plain(user))
    assert r.challenges == []
    assert r.result == Credentials("PLAIN", user, "password")


@pytest.mark.parametrize("user", ["goodauth@example.com", "badauth@example.com"])
def test_plain_prompted(user: str) -> None:
    r = run("PLAIN", None, plain(user).encode())
    assert r.challenges == [EMPTY]
    assert r.challenges[0].render(False) == b"334 \r\n"
    assert r.result == Credentials("PLAIN", user, "password")


def test_plain_example_exchange() -> None:
    r = run("PLAIN", "AGdvb2RhdXRoQGV4YW1wbGUuY29tAHBhc3N3b3Jk")
    assert r.result == Credentials("PLAIN", "goodauth@example.com", "password")


def test_plain_authzid_ignored_and_password_keeps_nuls() -> None:
    r = run("PLAIN", plain("u", password="p\x00q\x00r", authzid="admin"))
    assert r.result == Credentials("PLAIN", "u", "p\x00q\x00r")


def test_plain_empty_password_is_allowed() -> None:
    assert run("PLAIN", plain("u", password="")).result == Credentials("PLAIN", "u", "")


def test_plain_non_utf8_is_replaced() -> None:
    r = run("PLAIN", b64(b"\x00us\xffer\x00pa\xfe"))
    assert r.result == Credentials("PLAIN", "us\ufffder", "pa\ufffd")


@pytest.mark.parametrize(
    "decoded",
    [b"", b"user", b"\x00user", b"\x00\x00password", b"authz\x00\x00password"],
    ids=["empty", "no-nul", "one-nul", "empty-user", "empty-user-with-authzid"],
)
def test_plain_malformed(decoded: bytes) -> None:
    assert run("PLAIN", b64(decoded)).error == AUTH_FAILED
    assert run("PLAIN", None, b64b(decoded)).error == AUTH_FAILED


def test_plain_equals_initial_response_is_empty_hence_malformed() -> None:
    # RFC 4954 §4: "=" is a zero-length initial response; a PLAIN message
    # without a username is malformed (RFC 4616 §2).
    r = run("PLAIN", "=")
    assert r.challenges == []
    assert r.error == AUTH_FAILED


def test_plain_empty_continuation_line_is_malformed() -> None:
    assert run("PLAIN", None, b"").error == AUTH_FAILED


def test_plain_bad_base64() -> None:
    assert run("PLAIN", "AGdvb2RhdXRo!").error == AUTH_BAD_BASE64
    assert run("PLAIN", None, b"AGdvb2RhdXRo!").error == AUTH_BAD_BASE64


def test_plain_cancel() -> None:
    r = run("PLAIN", None, b"*")
    assert r.challenges == [EMPTY]
    assert r.error == AUTH_CANCELLED


def test_plain_star_initial_response_is_not_a_cancel() -> None:
    # Only a continuation line cancels (RFC 4954 §4); "*" is not base64.
    assert run("PLAIN", "*").error == AUTH_BAD_BASE64


# -- LOGIN --------------------------------------------------------------------
@pytest.mark.parametrize("user", ["goodauth@example.com", "badauth@example.com"])
def test_login_prompted(user: str) -> None:
    r = run("LOGIN", None, b64b(user), b64b("secret"))
    assert r.challenges == [USERNAME, PASSWORD]
    assert [c.render(False) for c in r.challenges] == [
        b"334 VXNlcm5hbWU6\r\n",
        b"334 UGFzc3dvcmQ6\r\n",
    ]
    assert r.result == Credentials("LOGIN", user, "secret")


@pytest.mark.parametrize("user", ["goodauth@example.com", "badauth@example.com"])
def test_login_initial_response_skips_username_prompt(user: str) -> None:
    r = run("LOGIN", b64(user), b64b("secret"))
    assert r.challenges == [PASSWORD]
    assert r.result == Credentials("LOGIN", user, "secret")


def test_login_example_exchange() -> None:
    r = run("LOGIN", None, b"YmFkYXV0aEBleGFtcGxlLmNvbQ==", b"cGFzc3dvcmQ=")
    assert r.result == Credentials("LOGIN", "badauth@example.com", "password")


def test_login_bad_base64_username_fails_without_password_prompt() -> None:
    r = run("LOGIN", None, b"not base64!")
    assert r.challenges == [USERNAME]
    assert r.error == AUTH_BAD_BASE64
    r = run("LOGIN", "not base64!")
    assert r.challenges == []
    assert r.error == AUTH_BAD_BASE64


def test_login_bad_base64_password_is_passed_as_none() -> None:
    r = run("LOGIN", None, b64b("u"), b"not base64!")
    assert r.result == Credentials("LOGIN", "u", None)


def test_login_empty_password_is_empty_not_none() -> None:
    assert run("LOGIN", b64("u"), b"").result == Credentials("LOGIN", "u", "")


def test_login_empty_username_is_malformed() -> None:
    r = run("LOGIN", None, b"")
    assert r.challenges == [USERNAME]
    assert r.error == AUTH_FAILED
    r = run("LOGIN", "=")
    assert r.challenges == []
    assert r.error == AUTH_FAILED


def test_login_cancel_at_username() -> None:
    r = run("LOGIN", None, b"*")
    assert r.challenges == [USERNAME]
    assert r.error == AUTH_CANCELLED


def test_login_cancel_at_password() -> None:
    r = run("LOGIN", None, b64b("u"), b"*")
    assert r.challenges == [USERNAME, PASSWORD]
    assert r.error == AUTH_CANCELLED
    r = run("LOGIN", b64("u"), b"*")
    assert r.challenges == [PASSWORD]
    assert r.error == AUTH_CANCELLED


def test_login_star_inside_a_line_is_not_a_cancel() -> None:
    assert run("LOGIN", None, b"**").error == AUTH_BAD_BASE64


# -- CRAM-MD5 / CRAM-SHA256 (RFC 2195) ----------------------------------------
@pytest.mark.parametrize("mechanism", CRAMS)
@pytest.mark.parametrize("user", ["goodauth@example.com", "badauth@example.com"])
def test_cram(mechanism: str, user: str) -> None:
    r = run(mechanism, None, b64b(f"{user} b913a602c7eda7a495b4e6e7334d3890"))
    assert r.challenges == [CRAM_OFFER]
    assert r.challenges[0].render(True) == f"334 {CHALLENGE_B64}\r\n".encode()
    assert r.result == Credentials(mechanism, user, None)


@pytest.mark.parametrize("mechanism", CRAMS)
def test_cram_ignores_initial_response(mechanism: str) -> None:
    r = run(mechanism, "garbage!", b64b("goodauth digest"))
    assert r.challenges == [CRAM_OFFER]
    assert r.result == Credentials(mechanism, "goodauth", None)


@pytest.mark.parametrize("mechanism", CRAMS)
def test_cram_username_ends_at_first_space(mechanism: str) -> None:
    r = run(mechanism, None, b64b("a b c"))
    assert r.result == Credentials(mechanism, "a", None)


@pytest.mark.parametrize("mechanism", CRAMS)
def test_cram_uses_the_given_challenge(mechanism: str) -> None:
    gen = exchange(mechanism, None, "<1.2@x>")
    assert next(gen) == Reply(334, (b64("<1.2@x>"),))
    gen.close()


@pytest.mark.parametrize("mechanism", CRAMS)
@pytest.mark.parametrize(
    "decoded", [b"", b"nospace", b" digest"], ids=["empty", "no-space", "no-user"]
)
def test_cram_malformed(mechanism: str, decoded: bytes) -> None:
    assert run(mechanism, None, b64b(decoded)).error == AUTH_FAILED


@pytest.mark.parametrize("mechanism", CRAMS)
def test_cram_bad_base64(mechanism: str) -> None:
    padded = b64b("goodauth digest!")
    assert padded.endswith(b"==")
    for line in (padded[:-1], padded[:-2], padded + b"="):
        assert run(mechanism, None, line).error == AUTH_BAD_BASE64
    assert run(mechanism, None, padded).result == Credentials(mechanism, "goodauth", None)


@pytest.mark.parametrize("mechanism", CRAMS)
def test_cram_cancel(mechanism: str) -> None:
    r = run(mechanism, None, b"*")
    assert r.challenges == [CRAM_OFFER]
    assert r.error == AUTH_CANCELLED


# -- XOAUTH2 ------------------------------------------------------------------
@pytest.mark.parametrize("user", ["goodauth@example.com", "badauth@example.com"])
def test_xoauth2_initial_response(user: str) -> None:
    r = run("XOAUTH2", xoauth2(user))
    assert r.challenges == []
    assert r.result == Credentials("XOAUTH2", user, None)


@pytest.mark.parametrize("user", ["goodauth@example.com", "badauth@example.com"])
def test_xoauth2_prompted(user: str) -> None:
    r = run("XOAUTH2", None, xoauth2(user).encode())
    assert r.challenges == [EMPTY]
    assert r.result == Credentials("XOAUTH2", user, None)


def test_xoauth2_example_exchange() -> None:
    r = run("XOAUTH2", "dXNlcj1iYWRhdXRoQGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIHQBAQ==")
    assert r.result == Credentials("XOAUTH2", "badauth@example.com", None)


@pytest.mark.parametrize(
    ("decoded", "user"),
    [
        ("user=alice", "alice"),
        ("user=alice,auth=x", "alice"),
        ("auth=Bearer t\x01user=bob\x01", "bob"),
        ("xuser=carol", "carol"),  # "user=" anywhere in the response
    ],
)
def test_xoauth2_username_run(decoded: str, user: str) -> None:
    assert run("XOAUTH2", b64(decoded)).result == Credentials("XOAUTH2", user, None)


@pytest.mark.parametrize(
    "decoded", ["", "auth=Bearer t\x01\x01", "user=\x01auth=x", "user=,x", "USER=alice"]
)
def test_xoauth2_malformed(decoded: str) -> None:
    assert run("XOAUTH2", b64(decoded)).error == AUTH_FAILED
    assert run("XOAUTH2", None, b64b(decoded)).error == AUTH_FAILED


def test_xoauth2_equals_initial_response_is_malformed() -> None:
    assert run("XOAUTH2", "=").error == AUTH_FAILED


def test_xoauth2_bad_base64() -> None:
    assert run("XOAUTH2", "dXNlcj1h!").error == AUTH_BAD_BASE64
    assert run("XOAUTH2", None, b"dXNlcj1h!").error == AUTH_BAD_BASE64


def test_xoauth2_cancel() -> None:
    r = run("XOAUTH2", None, b"*")
    assert r.challenges == [EMPTY]
    assert r.error == AUTH_CANCELLED


# -- strict base64 (RFC 4954 §4) ---------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        b"dQ",
        b"dQ===",
        b"dXNlcj1h=",
        b"dXNlcj1h====",
        b"dQ==dQ==",
        b"=dQ==",
        b"d=Q=",
        b"d Q==",
        b"dQ==\t",
        b"dQ-_",
        "dé==".encode(),
    ],
    ids=[
        "no-padding",
        "excess-padding",
        "padding-after-full-quantum",
        "padding-quantum",
        "data-after-padding",
        "leading-padding",
        "discontinuous-padding",
        "space",
        "trailing-tab",
        "urlsafe-alphabet",
        "non-ascii",
    ],
)
def test_not_strict_base64_is_rejected(line: bytes) -> None:
    assert run("LOGIN", None, line).error == AUTH_BAD_BASE64


def test_non_ascii_initial_response_is_bad_base64() -> None:
    assert run("PLAIN", "AGdvb2Rh\u00e9").error == AUTH_BAD_BASE64


def test_strict_base64_twin_is_accepted() -> None:
    assert run("LOGIN", None, b"dQ==", b"").result == Credentials("LOGIN", "u", "")


# -- failure_exchange ---------------------------------------------------------
XOAUTH2_JSON = {"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"}


@pytest.mark.parametrize("answer", [b"", b"*", b"anything"])
def test_xoauth2_failure_sends_json_error_then_535(answer: bytes) -> None:
    r = Run(failure_exchange("XOAUTH2"), [answer])
    assert len(r.challenges) == 1
    wire = r.challenges[0].render(True)
    assert wire.startswith(b"334 ") and wire.endswith(b"\r\n")
    decoded = base64.b64decode(wire[4:-2], validate=True)
    assert decoded == b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
    assert json.loads(decoded) == XOAUTH2_JSON
    assert r.challenges[0].enhanced is None
    assert r.error == AUTH_FAILED
    assert r.error.render(True) == b"535 5.7.8 Authentication failed\r\n"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "CRAM-SHA256"])
def test_other_failures_are_535_at_once(mechanism: str) -> None:
    r = Run(failure_exchange(mechanism), [])
    assert r.challenges == []
    assert r.error == AUTH_FAILED


def test_reply_bytes_of_errors() -> None:
    assert AUTH_CANCELLED.render(False) == b"501 Authentication cancelled\r\n"
    assert AUTH_BAD_BASE64.render(True) == b"501 5.5.2 Cannot decode response\r\n"
    assert AUTH_FAILED.render(False) == b"535 Authentication failed\r\n"


# -- default authenticator (badsmtp(1), ERROR TRIGGERS) -----------------------
@pytest.mark.parametrize("name", ["goodauth@example.com", "anyone", "BADAUTH@example.com", ""])
def test_pattern_accepts(name: str) -> None:
    assert pattern_authenticate(name, "pw") == User(
        id=name, username=name, active=True, metadata={"auth_method": "pattern"}
    )
    assert pattern_authenticate(name, None) is not None


@pytest.mark.parametrize("name", ["badauth", "badauth@example.com", "xbadauthx"])
def test_pattern_rejects(name: str) -> None:
    assert pattern_authenticate(name, "pw") is None
    assert pattern_authenticate(name, None) is None


# -- log redaction (badsmtp(1), LOGGING) --------------------------------------
def test_redact_auth_args() -> None:
    assert redact_auth_args(["PLAIN", "AGdvb2Q="]) == ["PLAIN", "[redacted]"]
    assert redact_auth_args(["LOGIN"]) == ["LOGIN"]
    assert redact_auth_args([]) == []
    assert redact_auth_args(["LOGIN", "dQ==", "pw"]) == ["LOGIN", "[redacted]", "[redacted]"]
