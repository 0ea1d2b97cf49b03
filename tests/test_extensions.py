"""The extension interfaces (README, Extending badsmtp): each one's call point
and its effect on the wire, the pure core's ``Policy``, raising extensions, and
the example in scripts/example_extension.py."""

from __future__ import annotations

import importlib.util
import logging
import re
import smtplib
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakeshell import without_findings
from helpers import ROOT, Client, b64b, serving
from wire import ACCEPTED, LOCAL_ERROR, UNAVAILABLE

import badsmtp
from badsmtp import (
    BadSMTP,
    MailboxUnavailable,
    Message,
    QuotaExceeded,
    SessionContext,
    StorageError,
    User,
    protocol,
)
from badsmtp import session as session_mod
from badsmtp.actions import Commit, ErrorSent, Send
from badsmtp.auth import pattern_authenticate
from badsmtp.extensions import (
    AllowAllAuthorizer,
    AllowAllRateLimiter,
    Extensions,
    PatternAuthenticator,
)
from badsmtp.protocol import Context, Phase, Policy, State
from badsmtp.triggers import ehlo_capabilities

GOOD = "goodauth@example.com"
AUTHZ = b"550 5.7.1 Requested action not taken: mailbox unavailable\r\n"
QUOTA = b"552 5.2.2 Requested mail action aborted: exceeded storage allocation\r\n"
WAIT = 5.0


def plain(user: str, password: str = "pw") -> bytes:
    return b64b(f"\0{user}\0{password}")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="badsmtp")
    yield caplog


def greeted(srv: BadSMTP, ehlo: bytes = b"EHLO client.example.com") -> Client:
    c = Client(srv.port)
    assert c.reply().startswith(b"220 ")
    if ehlo:
        assert c.command(ehlo).startswith(b"250")
    return c


def send_message(c: Client, sender: str = "alice@example.com", body: bytes = b"hello\r\n") -> bytes:
    assert c.command(f"MAIL FROM:<{sender}>".encode()) == b"250 2.1.0 OK\r\n"
    assert c.command(b"RCPT TO:<bob@example.com>") == b"250 2.1.5 OK\r\n"
    assert c.command(b"DATA").startswith(b"354 ")
    return c.command(b"Subject: test\r\n\r\n" + body + b".")


# -- defaults cost nothing ---------------------------------------------------------------
def test_public_names() -> None:
    for name in ("MessageStore", "Authenticator", "SessionObserver", "RateLimiter",
                 "Authorizer", "SessionContext", "User"):
        assert name in badsmtp.__all__ and hasattr(badsmtp, name)


def test_defaults_install_no_hooks() -> None:
    assert not Extensions().active
    assert not Extensions(authenticator=PatternAuthenticator()).active
    assert Extensions(authorizer=AllowAllAuthorizer()).active
    assert Extensions(rate_limiter=AllowAllRateLimiter()).active
    assert Extensions(observers=[object()]).active is False  # nothing to call on it
    with serving(ports=[0]) as srv:
        assert srv._runtime is not None and srv._runtime.extensions is None


def test_default_authenticator_is_the_pattern() -> None:
    assert PatternAuthenticator().authenticate("badauth@x", "pw") is None
    user = PatternAuthenticator().authenticate("anyone@x", None)
    assert user == User(id="anyone@x", username="anyone@x", active=True,
                        metadata={"auth_method": "pattern"})


# -- the pure core asks a Policy ------------------------------------------------------------
@dataclass
class FakePolicy:
    sender_ok: bool = True
    message_ok: tuple[bool, str] = (True, "")
    rcpt_ok: bool = True
    quota_octets: int = -1
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def policy(self) -> Policy:
        def can_send_from(sender: str) -> bool:
            self.calls.append(("from", sender))
            return self.sender_ok

        def allow_message() -> tuple[bool, str]:
            self.calls.append(("message",))
            return self.message_ok

        def can_send_to(rcpt: str) -> bool:
            self.calls.append(("to", rcpt))
            return self.rcpt_ok

        def quota() -> int:
            self.calls.append(("quota",))
            return self.quota_octets

        return Policy(can_send_from, allow_message, can_send_to, quota)


EHLO_STATE = State(phase=Phase.MAIL, caps=ehlo_capabilities("c.example", False, "badsmtp.test"))


def test_dispatcher_asks_the_policy_in_order() -> None:
    fake = FakePolicy(sender_ok=False)
    ctx = Context(policy=fake.policy())
    _, out = protocol.dispatch(EHLO_STATE, "MAIL", ["FROM:<a@example.com>"], ctx)
    assert out == [badsmtp.replies.AUTHZ_REFUSED] and fake.calls == [("from", "a@example.com")]

    fake = FakePolicy(message_ok=(False, "Slow down"))
    state, out = protocol.dispatch(EHLO_STATE, "MAIL", ["FROM:<>"], Context(policy=fake.policy()))
    assert out[0].render(True) == b"451 4.7.1 Slow down\r\n"
    assert state.phase is Phase.MAIL  # no transaction opened
    assert fake.calls == [("from", ""), ("message",)]

    # Syntax, trigger and SIZE checks come first: the policy is not asked.
    fake = FakePolicy()
    ctx = Context(policy=fake.policy())
    for arg in (["FROM:<bad address>"], ["FROM:<mail550@example.com>"],
                ["FROM:<a@example.com>", "SIZE=99999999"]):
        _, out = protocol.dispatch(EHLO_STATE, "MAIL", arg, ctx)
        assert out[0].code in (501, 550, 552)
    assert fake.calls == []

    fake = FakePolicy(rcpt_ok=False)
    ctx = Context(policy=fake.policy())
    rcpt_state, _ = protocol.dispatch(EHLO_STATE, "MAIL", ["FROM:<a@example.com>"], ctx)
    _, out = protocol.dispatch(rcpt_state, "RCPT", ["TO:<rcpt452@example.com>"], ctx)
    assert out[0].code == 452  # the trigger answers before the authorizer
    new, out = protocol.dispatch(rcpt_state, "RCPT", ["TO:<b@example.com>"], ctx)
    assert out == [badsmtp.replies.AUTHZ_REFUSED] and new.recipients == ()
    assert fake.calls[-1] == ("to", "b@example.com")


def _drive(sess: session_mod.Session, data: bytes) -> tuple[bytes, list[Any]]:
    wire, others = b"", []
    actions = sess.receive_data(data)
    while actions:
        following = None
        for action in actions:
            if isinstance(action, Send):
                wire += action.data
            elif isinstance(action, Commit):
                following = sess.commit_done(None)
            else:
                others.append(action)
        actions = following
    return wire, others


def test_session_checks_the_quota_after_the_size() -> None:
    fake = FakePolicy(quota_octets=10)
    sess = session_mod.Session(Context(policy=fake.policy()), stream=False)
    sess.greeting()
    _drive(sess, b"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
    wire, _ = _drive(sess, b"DATA\r\n12345678901\r\n.\r\n")
    assert wire.endswith(QUOTA)
    # The transaction is over: MAIL is allowed again, and a small message passes.
    wire, _ = _drive(sess, b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\n")
    assert wire.endswith(ACCEPTED)
    # Unlimited quota: nothing refused.
    fake.quota_octets = -1
    wire, _ = _drive(sess, b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + b"x" * 100 + b"\r\n.\r\n")
    assert wire.endswith(ACCEPTED)


def test_session_reports_errors_after_their_bytes_in_one_batch() -> None:
    sess = session_mod.Session(Context(), notify=True)
    sess.greeting()
    actions = without_findings(sess.receive_data(b"FOO\r\nNOOP\r\nRCPT TO:<a@example.com>\r\n"))
    assert actions == [
        Send(b"500 Command not recognised\r\n250 OK\r\n503 Bad sequence - RCPT not allowed in HELO state\r\n"),
        ErrorSent("500 Command not recognised", "FOO"),
        ErrorSent("503 Bad sequence - RCPT not allowed in HELO state", "RCPT"),
    ]
    # Without notify (no observer installed), nothing but the bytes.
    quiet = session_mod.Session(Context())
    quiet.greeting()
    assert quiet.receive_data(b"FOO\r\n") == [Send(b"500 Command not recognised\r\n")]


# -- Authenticator -----------------------------------------------------------------------
class RecordingAuthenticator:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def authenticate(self, username: str, password: str | None) -> User | None:
        self.calls.append((username, password))
        if username.startswith("nobody"):
            return None
        return User(id="42", username=username, active=not username.startswith("off"))


def test_authenticator_call_point_and_effect() -> None:
    authn = RecordingAuthenticator()
    with serving(ports=[0], authenticator=authn) as srv:
        with greeted(srv) as c:
            # "badauth" means nothing to this authenticator: it decides.
            assert c.command(b"AUTH PLAIN " + plain("badauth@x", "secret")) == (
                b"235 2.7.0 Authentication successful\r\n"
            )
        with greeted(srv) as c:
            assert c.command(b"AUTH PLAIN " + plain("nobody@x")) == b"535 5.7.8 Authentication failed\r\n"
            assert c.command(b"AUTH PLAIN " + plain("off@x")) == (
                b"535 5.7.8 Authentication failed: account inactive\r\n"
            )
            c.command(b"AUTH CRAM-MD5")
            assert c.command(b64b("cram@x 00ff")) == (
                b"235 2.7.0 Authentication successful\r\n"
            )
    # The password for PLAIN, none for CRAM.
    assert authn.calls == [("badauth@x", "secret"), ("nobody@x", "pw"), ("off@x", "pw"), ("cram@x", None)]


# -- MessageStore ------------------------------------------------------------------------
class ListStore:
    def __init__(self, fail: str = "", error: Exception | None = None) -> None:
        self.fail, self.error = fail, error
        self.begun: list[Message] = []
        self.committed: list[tuple[Message, bytes]] = []
        self.aborted = 0
        self.done = threading.Event()

    def begin(self, message: Message) -> ListStore._Delivery:
        if self.fail == "begin":
            self.done.set()
            raise self.error  # type: ignore[misc]
        self.begun.append(message)
        return ListStore._Delivery(self)

    class _Delivery:
        def __init__(self, store: ListStore) -> None:
            self.store, self.chunks = store, []  # type: list[bytes]

        def write(self, data: bytes) -> None:
            if self.store.fail == "write":
                raise self.store.error  # type: ignore[misc]
            self.chunks.append(data)

        def commit(self, message: Message) -> None:
            self.store.done.set()
            if self.store.fail == "commit":
                raise self.store.error  # type: ignore[misc]
            self.store.committed.append((message, b"".join(self.chunks)))

        def abort(self) -> None:
            self.store.aborted += 1
            self.store.done.set()


def test_message_store_call_point_and_effect() -> None:
    store = ListStore()
    with serving(ports=[0], message_store=store) as srv, greeted(srv) as c:
        assert send_message(c, body=b"line 1\r\n..dot\r\n") == ACCEPTED
        [(message, content)] = store.committed
    assert content == b"Subject: test\r\n\r\nline 1\r\n.dot\r\n"
    [begun] = store.begun
    assert (begun.sender, begun.recipients, begun.headers, begun.size) == (
        "alice@example.com", ("bob@example.com",), {}, 0
    )
    assert message.sender == "alice@example.com" and message.recipients == ("bob@example.com",)
    assert message.size == len(content) and message.headers == {"Subject": "test"}
    assert (message.client_ip, message.hostname, message.tls_used) == ("127.0.0.1", "badsmtp.test", False)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", message.timestamp)
    # The capture still gets it too.
    assert srv.messages[0].content == content


@pytest.mark.parametrize(
    "error,reply",
    [
        (MailboxUnavailable("gone"), b"550 5.2.1 Requested action not taken: mailbox unavailable\r\n"),
        (QuotaExceeded("full"), b"452 4.2.2 Requested action not taken: insufficient system storage\r\n"),
        (StorageError("quota not active"), LOCAL_ERROR),  # the text means nothing: the type does
        (RuntimeError("mailbox not active"), LOCAL_ERROR),
    ],
    ids=["unavailable", "quota", "storage", "other"],
)
@pytest.mark.parametrize("where", ["begin", "write", "commit"])
def test_message_store_errors_are_typed(
    logs: pytest.LogCaptureFixture, where: str, error: Exception, reply: bytes
) -> None:
    store = ListStore(where, error)
    with serving(ports=[0], message_store=store, capture=False) as srv, greeted(srv) as c:
        # The whole content and its end in one send: the failure and the end
        # of the message are handled in the same batch.
        assert send_message(c) == reply
        assert store.committed == []
        assert store.aborted == (1 if where == "write" else 0)  # commit failing: no abort
        assert send_message(c).startswith(reply[:3])  # transaction over; MAIL allowed again
    assert any(r.levelno == logging.ERROR and r.getMessage().startswith("SMTP message storage failed")
               for r in logs.records)


# -- RateLimiter -------------------------------------------------------------------------
class Limiter(AllowAllRateLimiter):
    def __init__(self, connection: tuple[bool, str] = (True, ""),
                 message: tuple[bool, str] = (True, "")) -> None:
        self.connection, self.message = connection, message
        self.calls: list[tuple[Any, ...]] = []
        self.released = threading.Event()
        self.recorded_message = threading.Event()

    def allow_connection(self, client_ip: str) -> tuple[bool, str]:
        self.calls.append(("allow_connection", client_ip))
        return self.connection

    def record_connection(self, client_ip: str) -> None:
        self.calls.append(("record_connection", client_ip))

    def release_connection(self, client_ip: str) -> None:
        self.calls.append(("release_connection", client_ip))
        self.released.set()

    def allow_message(self, user: User | None, client_ip: str) -> tuple[bool, str]:
        self.calls.append(("allow_message", user and user.username, client_ip))
        return self.message

    def record_message(self, user: User | None, client_ip: str) -> None:
        self.calls.append(("record_message", user and user.username, client_ip))
        self.recorded_message.set()


@pytest.mark.parametrize(
    "reason,wire",
    [("Too many connections from you", b"421 Too many connections from you\r\n"), ("", UNAVAILABLE)],
)
def test_rate_limiter_refuses_a_connection(reason: str, wire: bytes) -> None:
    limiter = Limiter(connection=(False, reason))
    observer = Observer()
    with serving(ports=[0], rate_limiter=limiter, observer=observer) as srv, Client(srv.port) as c:
        assert c.read_to_eof() == wire  # no greeting, then closed
    assert limiter.calls == [("allow_connection", "127.0.0.1")]  # nothing recorded, nothing released
    assert observer.events == []  # never a session: no observer event at all


def test_rate_limiter_connection_and_message_call_points() -> None:
    limiter = Limiter()
    with serving(ports=[0], rate_limiter=limiter) as srv:
        with greeted(srv, b"") as c:
            # Allowed and recorded before the greeting.
            assert limiter.calls == [("allow_connection", "127.0.0.1"), ("record_connection", "127.0.0.1")]
            c.command(b"EHLO client.example.com")
            # Not asked for a MAIL that fails its syntax, trigger or SIZE check.
            c.command(b"MAIL FROM:<not an address>")
            c.command(b"MAIL FROM:<mail451@example.com>")
            c.command(b"MAIL FROM:<a@example.com> SIZE=999999999")
            assert [x[0] for x in limiter.calls].count("allow_message") == 0
            assert send_message(c) == ACCEPTED
            assert limiter.recorded_message.wait(WAIT)
            c.command(b"AUTH PLAIN " + plain(GOOD))
            assert send_message(c) == ACCEPTED
            c.command(b"QUIT")
        assert limiter.released.wait(WAIT)
    assert limiter.calls[2:] == [
        ("allow_message", None, "127.0.0.1"),
        ("record_message", None, "127.0.0.1"),
        ("allow_message", GOOD, "127.0.0.1"),
        ("record_message", GOOD, "127.0.0.1"),
        ("release_connection", "127.0.0.1"),
    ]


@pytest.mark.parametrize(
    "reason,ehlo,wire",
    [
        ("Slow down", b"EHLO c.example", b"451 4.7.1 Slow down\r\n"),
        ("", b"EHLO c.example", b"451 4.7.1 Requested action aborted: local error in processing\r\n"),
        ("Slow down", b"HELO c.example", b"451 Slow down\r\n"),
    ],
)
def test_rate_limiter_refuses_a_message(reason: str, ehlo: bytes, wire: bytes) -> None:
    limiter = Limiter(message=(False, reason))
    with serving(ports=[0], rate_limiter=limiter) as srv, greeted(srv, ehlo) as c:
        assert c.command(b"MAIL FROM:<a@example.com>") == wire
        # No transaction opened.
        assert c.command(b"RCPT TO:<b@example.com>").startswith(b"503 ")
    assert not limiter.recorded_message.is_set()


# -- Authorizer --------------------------------------------------------------------------
class Authz:
    def __init__(self, quota: int = -1) -> None:
        self.quota = quota
        self.calls: list[tuple[Any, ...]] = []

    def can_send_from(self, user: User | None, sender: str) -> bool:
        self.calls.append(("from", user and user.username, sender))
        return not sender.startswith("blocked")

    def can_send_to(self, user: User | None, recipient: str) -> bool:
        self.calls.append(("to", user and user.username, recipient))
        return not recipient.startswith("blocked")

    def get_quota(self, user: User | None) -> int:
        self.calls.append(("quota", user and user.username))
        return self.quota


def test_authorizer_sender_and_recipients() -> None:
    authz = Authz()
    with serving(ports=[0], authorizer=authz) as srv, greeted(srv) as c:
        assert c.command(b"MAIL FROM:<blocked@example.com>") == AUTHZ
        assert c.command(b"AUTH PLAIN " + plain(GOOD)) == b"235 2.7.0 Authentication successful\r\n"
        assert c.command(b"MAIL FROM:<>") == b"250 2.1.0 OK\r\n"
        assert c.command(b"RCPT TO:<blocked@example.com>") == AUTHZ
        assert c.command(b"RCPT TO:<rcpt550_5.1.1@example.com>").startswith(b"550 5.1.1 ")  # trigger first
        assert c.command(b"RCPT TO:<bob@example.com>") == b"250 2.1.5 OK\r\n"
        assert c.command(b"DATA").startswith(b"354")
        assert c.command(b"hi\r\n.") == ACCEPTED
    assert authz.calls == [
        ("from", None, "blocked@example.com"),
        ("from", GOOD, ""),
        ("to", GOOD, "blocked@example.com"),
        ("to", GOOD, "bob@example.com"),
        ("quota", GOOD),
    ]
    assert [m.recipients for m in srv.messages] == [("bob@example.com",)]


def test_authorizer_quota_aborts_the_delivery() -> None:
    store = ListStore()
    with serving(ports=[0], authorizer=Authz(quota=30), message_store=store) as srv, greeted(srv) as c:
        assert send_message(c, body=b"x" * 40 + b"\r\n") == QUOTA
        assert store.aborted == 1 and store.committed == []
        # Its twin: within the quota.
        assert send_message(c, body=b"small\r\n") == ACCEPTED
        # BDAT LAST is checked the same way.
        c.command(b"MAIL FROM:<a@example.com>")
        c.command(b"RCPT TO:<b@example.com>")
        assert c.command(b"BDAT 31 LAST\r\n" + b"y" * 29) == QUOTA
        assert c.command(b"BDAT 30 LAST\r\n" + b"y" * 28).startswith(b"503 ")  # transaction over
    assert [m.size for m in srv.messages] == [len(b"Subject: test\r\n\r\nsmall\r\n")]


# -- SessionObserver ---------------------------------------------------------------------
class Observer:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.contexts: list[SessionContext] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def _add(self, ctx: SessionContext, *event: Any) -> None:
        with self.cond:
            self.events.append(event)
            self.contexts.append(ctx)
            self.cond.notify_all()

    def wait_for(self, name: str, count: int = 1) -> None:
        with self.cond:
            assert self.cond.wait_for(
                lambda: sum(1 for e in self.events if e[0] == name) >= count, WAIT
            ), self.events

    def on_connect(self, ctx: SessionContext) -> None:
        self._add(ctx, "connect")

    def on_auth(self, ctx: SessionContext, user: User) -> None:
        self._add(ctx, "auth", user.username)

    def on_message(self, ctx: SessionContext, message: Message) -> None:
        self._add(ctx, "message", message.sender, message.headers.get("Subject"))

    def on_error(self, ctx: SessionContext, error: str, command: str) -> None:
        self._add(ctx, "error", error, command)

    def on_disconnect(self, ctx: SessionContext, duration: float) -> None:
        assert isinstance(duration, float) and duration >= 0
        self._add(ctx, "disconnect")


class OnlyMessages:
    """A duck-typed observer with one method: the others are simply not called."""

    def __init__(self) -> None:
        self.got = threading.Event()

    def on_message(self, ctx: SessionContext, message: Message) -> None:
        self.got.set()


def test_observers_see_the_session_id_of_the_log_records(caplog: pytest.LogCaptureFixture) -> None:
    observer = Observer()
    with caplog.at_level(logging.INFO, logger="badsmtp.session"), serving(
        ports=[0], observer=observer
    ) as srv:
        with greeted(srv, b"") as c:
            c.command(b"QUIT")
        observer.wait_for("disconnect")
    logged = {r.fields["session_id"] for r in caplog.records if r.name == "badsmtp.session"}  # type: ignore[attr-defined]
    assert logged == {ctx.id for ctx in observer.contexts}


def test_observer_call_points() -> None:
    first, second, partial = Observer(), Observer(), OnlyMessages()
    with serving(ports=[0], observer=first, observers=[second, partial]) as srv:
        with greeted(srv, b"") as c:
            assert first.events == [("connect",)]  # before the greeting
            c.command(b"EHLO client.example.com")
            c.command(b"FOO")
            assert c.command(b"AUTH PLAIN " + plain(GOOD)) == b"235 2.7.0 Authentication successful\r\n"
            assert first.events[-1] == ("auth", GOOD)  # before the 235 left
            c.command(b"RCPT TO:<b@example.com>")
            assert send_message(c) == ACCEPTED
            first.wait_for("message")
            c.command(b"MAIL FROM:<a@example.com>")
            c.command(b"RCPT TO:<rcpt550_5.1.1@example.com>")
            c.command(b"QUIT")
        first.wait_for("disconnect")
    assert partial.got.is_set()
    assert first.events == second.events == [
        ("connect",),
        ("error", "500 5.5.2 Command not recognised", "FOO"),
        ("auth", GOOD),
        ("error", "503 5.5.1 Bad sequence - RCPT not allowed in MAIL state", "RCPT"),
        ("message", "alice@example.com", "test"),
        ("error", "550 5.1.1 Requested action not taken: mailbox unavailable", "RCPT"),
        ("disconnect",),
    ]
    connect, *_, message, _, disconnect = first.contexts
    assert re.fullmatch(r"sess_[0-9a-f]{24}", connect.id)
    assert {ctx.id for ctx in first.contexts} == {connect.id}
    assert (connect.client_ip, connect.hostname, connect.user, connect.authenticated,
            connect.tls_active, connect.messages_sent) == ("127.0.0.1", "badsmtp.test", None, False, False, 0)
    assert message.authenticated and message.user is not None and message.user.username == GOOD
    assert message.messages_sent == 1 and disconnect.messages_sent == 1


def test_observer_hears_connection_level_errors() -> None:
    observer = Observer()
    with serving(ports=[0], observer=observer, idle_timeout=0.2) as srv, Client(srv.port) as c:
        c.reply()
        assert c.read_to_eof() == b"421 Idle timeout, closing connection\r\n"
        observer.wait_for("disconnect")
    assert observer.events == [
        ("connect",), ("error", "421 Idle timeout, closing connection", ""), ("disconnect",)
    ]


def test_observer_message_without_storage() -> None:
    observer = Observer()
    with serving(ports=[0], observer=observer, capture=False) as srv, greeted(srv) as c:
        assert send_message(c) == ACCEPTED
        observer.wait_for("message")
    # Nothing streamed through the shell, so no headers (storage off).
    assert ("message", "alice@example.com", None) in observer.events


# -- a raising extension: the documented reply, and the next session works --------------------
class Flaky:
    """Every interface at once; the method named ``target`` raises the first time."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.raised = threading.Event()

    def _maybe(self, name: str) -> None:
        if name == self.target and not self.raised.is_set():
            self.raised.set()
            raise RuntimeError(f"{name} exploded")

    def authenticate(self, username: str, password: str | None) -> User | None:
        self._maybe("authenticate")
        return pattern_authenticate(username, password)

    def allow_connection(self, client_ip: str) -> tuple[bool, str]:
        self._maybe("allow_connection")
        return True, ""

    def record_connection(self, client_ip: str) -> None:
        self._maybe("record_connection")

    def release_connection(self, client_ip: str) -> None:
        self._maybe("release_connection")

    def allow_message(self, user: User | None, client_ip: str) -> tuple[bool, str]:
        self._maybe("allow_message")
        return True, ""

    def record_message(self, user: User | None, client_ip: str) -> None:
        self._maybe("record_message")

    def can_send_from(self, user: User | None, sender: str) -> bool:
        self._maybe("can_send_from")
        return True

    def can_send_to(self, user: User | None, recipient: str) -> bool:
        self._maybe("can_send_to")
        return True

    def get_quota(self, user: User | None) -> int:
        self._maybe("get_quota")
        return -1

    def on_connect(self, ctx: SessionContext) -> None:
        self._maybe("on_connect")

    def on_auth(self, ctx: SessionContext, user: User) -> None:
        self._maybe("on_auth")

    def on_message(self, ctx: SessionContext, message: Message) -> None:
        self._maybe("on_message")

    def on_error(self, ctx: SessionContext, error: str, command: str) -> None:
        self._maybe("on_error")

    def on_disconnect(self, ctx: SessionContext, duration: float) -> None:
        self._maybe("on_disconnect")

    def begin(self, message: Message) -> Flaky:
        self._maybe("begin")
        return self

    def write(self, data: bytes) -> None:
        self._maybe("write")

    def commit(self, message: Message) -> None:
        self._maybe("commit")

    def abort(self) -> None:
        pass


SCRIPT: list[tuple[bytes, bytes]] = [
    (b"EHLO client.example.com", b"250-badsmtp.test\r\n"),
    (b"XYZZY", b"500 5.5.2 Command not recognised\r\n"),
    (b"AUTH PLAIN " + plain(GOOD), b"235 2.7.0 Authentication successful\r\n"),
    (b"MAIL FROM:<alice@example.com>", b"250 2.1.0 OK\r\n"),
    (b"RCPT TO:<bob@example.com>", b"250 2.1.5 OK\r\n"),
    (b"DATA", b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    (b"Subject: flaky\r\n\r\nhello\r\n.", ACCEPTED),
    (b"QUIT", b"221 2.0.0 Bye\r\n"),
]


def converse(port: int) -> list[bytes]:
    """Run SCRIPT; stop at the first reply that differs from the happy one."""
    with Client(port) as c:
        replies = [c.reply()]
        if not replies[0].startswith(b"220 "):
            return replies
        for line, happy in SCRIPT:
            reply = c.command(line)
            replies.append(reply)
            if not reply.startswith(happy):
                break
        return replies


HAPPY = len(SCRIPT) + 1
# method → (index of the reply that changes, that reply); None: nothing visible.
DOCUMENTED: dict[str, tuple[int, bytes] | None] = {
    "allow_connection": (0, UNAVAILABLE),
    "authenticate": (3, b"535 5.7.8 Authentication failed\r\n"),
    "can_send_from": (4, AUTHZ),
    "allow_message": (4, b"451 4.7.1 Requested action aborted: local error in processing\r\n"),
    "can_send_to": (5, AUTHZ),
    "get_quota": (7, QUOTA),
    "begin": (7, LOCAL_ERROR),
    "write": (7, LOCAL_ERROR),
    "commit": (7, LOCAL_ERROR),
    "record_connection": None,
    "release_connection": None,
    "record_message": None,
    "on_connect": None,
    "on_auth": None,
    "on_message": None,
    "on_error": None,
    "on_disconnect": None,
}


@pytest.mark.parametrize("target", list(DOCUMENTED))
def test_raising_extension_gives_the_documented_reply(
    logs: pytest.LogCaptureFixture, target: str
) -> None:
    flaky = Flaky(target)
    with serving(ports=[0], authenticator=flaky, rate_limiter=flaky, authorizer=flaky,
                 observer=flaky, message_store=flaky) as srv:
        first = converse(srv.port)
        second = converse(srv.port)
    assert flaky.raised.is_set()
    expected = DOCUMENTED[target]
    if expected is None:
        assert len(first) == HAPPY and first[-1] == b"221 2.0.0 Bye\r\n", first
    else:
        index, reply = expected
        assert len(first) == index + 1 and first[index] == reply, first
    # No traceback on the wire, no internal error, and the next session is whole.
    assert not any(b"Traceback" in r or b"exploded" in r for r in first)
    assert len(second) == HAPPY and second[-2:] == [ACCEPTED, b"221 2.0.0 Bye\r\n"], second
    assert srv.errors == []
    logged = [r for r in logs.records if r.levelno == logging.ERROR and r.name.startswith("badsmtp")]
    assert logged, "the extension's exception must be logged at ERROR"
    # The exception is in the record: as exc_info, in the message, or in the
    # record's ``error`` field (badsmtp(1), LOGGING).
    assert any(
        r.exc_info or "exploded" in r.getMessage() or "exploded" in str(getattr(r, "error", ""))
        for r in logged
    )


# Whose method a raising extension's ERROR record names (its ``extension`` field);
# observers are named by their class.
OWNER = {
    "authenticate": "authenticator",
    **dict.fromkeys(
        ("allow_connection", "record_connection", "release_connection", "allow_message",
         "record_message"), "rate_limiter"),
    **dict.fromkeys(("can_send_from", "can_send_to", "get_quota"), "authorizer"),
}  # fmt: skip


@pytest.mark.parametrize("target", [t for t in DOCUMENTED if t not in ("begin", "write", "commit")])
def test_raising_extension_is_logged_under_its_method(
    logs: pytest.LogCaptureFixture, target: str
) -> None:
    """README, Extending badsmtp: an extension that raises is logged at
    ERROR; the record says which method it was."""
    flaky = Flaky(target)
    with serving(ports=[0], authenticator=flaky, rate_limiter=flaky, authorizer=flaky,
                 observer=flaky, message_store=flaky) as srv:
        converse(srv.port)
    named = [r.fields["extension"] for r in logs.records if "extension" in getattr(r, "fields", {})]
    assert named == [f"{OWNER.get(target, 'Flaky')}.{target}"]


def test_raising_authenticator_function(logs: pytest.LogCaptureFixture) -> None:
    """A plain function is accepted as the authenticator too."""
    def authenticate(username: str, password: str | None) -> User:
        raise ConnectionError("LDAP is down")

    with serving(ports=[0], authenticator=authenticate) as srv, greeted(srv) as c:
        assert c.command(b"AUTH PLAIN " + plain(GOOD)) == b"535 5.7.8 Authentication failed\r\n"
        assert c.command(b"NOOP") == b"250 2.0.0 OK\r\n"


# -- the documented example ------------------------------------------------------------
def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("example_extension", ROOT / "scripts" / "example_extension.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_extension() -> None:
    example = _load_example()
    posted: list[tuple[Message, bytes]] = []
    limiter = example.MessagesPerConnection(2, "Enough for now")
    store = example.CallbackStore(lambda message, content: posted.append((message, content)))
    with serving(ports=[0], rate_limiter=limiter, message_store=store) as srv:
        with smtplib.SMTP("127.0.0.1", srv.port) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: one\r\n\r\n1\r\n")
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: two\r\n\r\n2\r\n")
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: three\r\n\r\n3\r\n")
            assert (refused.value.smtp_code, refused.value.smtp_error) == (451, b"4.7.1 Enough for now")
        # A new connection starts from zero.
        with smtplib.SMTP("127.0.0.1", srv.port) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: four\r\n\r\n4\r\n")
    assert [(m.headers["Subject"], content) for m, content in posted] == [
        ("one", b"Subject: one\r\n\r\n1\r\n"),
        ("two", b"Subject: two\r\n\r\n2\r\n"),
        ("four", b"Subject: four\r\n\r\n4\r\n"),
    ]


def test_example_extension_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "example_extension.py")],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "stored: alice@example.com -> bob@example.com, 30 octets, Subject: message 1",
        "stored: alice@example.com -> bob@example.com, 30 octets, Subject: message 2",
        "message 3 refused: 451 4.7.1 Too many messages on this connection",
    ]
