"""A fake IO shell around the sans-IO ``Session``, for the tests that drive
the pure core with bytes (``tests/test_session_*.py``, ``test_fuzz_core.py``).

:class:`Wire` runs every action as the server's handler does, from a
type-to-method table (:data:`DO`), and records what happened; :func:`greeted`,
:func:`in_rcpt` and :func:`data_wire` start one in a given phase.  Also here:
the EHLO and size-limit replies built from their parts, the ways to feed
input (:data:`HOW`), and the reply bytes that more than one of those modules
expects (the common replies are in ``wire.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from wire import MAIL_OK, OK, RCPT_OK

from badsmtp import auth, replies
from badsmtp.actions import (
    Abort,
    Accepted,
    Action,
    Begin,
    Close,
    Commit,
    Envelope,
    ErrorSent,
    Log,
    Send,
    SplitSend,
    StartTLS,
    Verify,
    Wait,
    Write,
)
from badsmtp.findings import LOG_MESSAGE
from badsmtp.protocol import Context, Phase
from badsmtp.replies import Reply
from badsmtp.session import Session

DEFAULT_LINES = (
    "AUTH PLAIN LOGIN CRAM-MD5 CRAM-SHA256 XOAUTH2",
    "8BITMIME",
    "SIZE 10485760",
    "PIPELINING",
    "STARTTLS",
    "CHUNKING",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
)
SYNTAX = b"501 5.5.4 Syntax error in parameters\r\n"
UNKNOWN = b"500 5.5.2 Command not recognised\r\n"
NO_RCPTS = b"503 5.5.1 Bad sequence of commands\r\n"
ENVELOPE = b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.com>\r\n"
HOW = ("whole", "bytewise", "trailing")
TRAILER = b"NOOP\r\n"


def without_findings(actions: list[Action]) -> list[Action]:
    """``actions`` but the WARN records of compliance findings (the tests
    that pipeline on purpose look at the rest; tests/test_findings.py at those)."""
    return [a for a in actions if not (isinstance(a, Log) and a.message == LOG_MESSAGE)]


def ehlo_list(*lines: str, identity: str = "badsmtp.test") -> bytes:
    every = (identity, *lines, "OK")
    return b"".join(
        f"250{'-' if i < len(every) - 1 else ' '}{line}\r\n".encode() for i, line in enumerate(every)
    )


def without(*dropped: str) -> tuple[str, ...]:
    return tuple(line for line in DEFAULT_LINES if line not in dropped)


def size_exceeded(limit: int, enhanced: bool = True) -> bytes:
    esc = "5.3.4 " if enhanced else ""
    return f"552 {esc}Message size exceeds fixed maximum of {limit} bytes\r\n".encode()


@dataclass
class Wire:
    """A fake IO shell around one Session: it runs every action like the
    server does (sends bytes, stores messages, asks a pattern authenticator,
    "completes" TLS handshakes) and records what happened."""

    ctx: Context = field(default_factory=Context)
    tls: bool = False
    command_delay: float = 0.0
    stream: bool = True
    commit_error: Reply | None = None
    begin_error: Reply | None = None
    write_error: Reply | None = None
    fail_delivery: int | None = None  # the n-th delivery's writes fail (from 1)
    handshake_ok: bool = True
    inactive: bool = False
    recorder: Any = None  # the session's recorder hook (badsmtp.batch.Recorder)

    def __post_init__(self) -> None:
        self.session = Session(self.ctx, tls=self.tls, command_delay=self.command_delay,
                               stream=self.stream, challenge="<1.2@badsmtp.test>",
                               recorder=self.recorder)
        self.sent = b""
        self.actions: list[Action] = []
        self.batches: list[list[Action]] = []
        self.messages: list[tuple[Envelope, bytes]] = []
        self.begun: list[Envelope] = []
        self.aborted = 0
        self.closed = False
        self.credentials: list[auth.Credentials] = []
        self.handshakes = 0
        self._delivery: bytearray | None = None
        self._failed: Reply | None = None
        self.run(self.session.greeting())

    # -- feeding ------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        before = len(self.sent)
        self.run(self.session.receive_data(data))
        return self.sent[before:]

    def feed_bytewise(self, data: bytes) -> bytes:
        before = len(self.sent)
        for i in range(len(data)):
            self.run(self.session.receive_data(data[i : i + 1]))
        return self.sent[before:]

    def feed_how(self, data: bytes, how: str) -> bytes:
        """Feed ``data`` whole, byte by byte, or whole followed by a NOOP
        that must be answered as a command (returned without its reply)."""
        if how == "whole":
            return self.feed(data)
        if how == "bytewise":
            return self.feed_bytewise(data)
        out = self.feed(data + TRAILER)
        if self.closed:
            return out
        noop = OK if self.session.state.caps.enhanced else b"250 OK\r\n"
        assert out.endswith(noop), f"trailing data was not read as a command: {out!r}"
        return out[: -len(noop)]

    @property
    def waits(self) -> list[float]:
        return [a.seconds for a in self.actions if isinstance(a, Wait)]

    @property
    def logs(self) -> list[Log]:
        return [a for a in self.actions if isinstance(a, Log)]

    @property
    def contents(self) -> list[bytes]:
        return [content for _, content in self.messages]

    # -- the shell: one method per action type, run from DO (below) ---------------
    def run(self, actions: list[Action]) -> None:
        """Execute a batch of actions in order, as the server's handler does.
        A method that returns a list ends its batch: a pause returns what the
        session answers it (the next batch), Close an empty one."""
        batch: list[Action] | None = actions
        while batch:
            self.batches.append(batch)
            following = None
            for i, action in enumerate(batch):
                self.actions.append(action)
                do = DO.get(type(action))
                assert do is not None, f"the fake shell cannot run {action!r}"
                following = do(self, action)
                if following is not None:
                    rest = batch[i + 1 :]
                    if isinstance(action, Close):
                        assert not rest, f"actions after Close: {rest!r}"
                    else:
                        assert not rest, f"a pausing action ends its batch: {rest!r}"
                    break
            batch = following

    def _send(self, action: Send) -> None:
        assert action.data, "an empty send"
        assert not self.closed, f"a send after Close: {action!r}"
        self.sent += action.data

    def _send_split(self, action: SplitSend) -> None:
        bounds = (0, *action.cuts, len(action.data))
        assert all(a < b for a, b in pairwise(bounds)), f"cuts out of order or empty writes: {action!r}"
        self._send(action)

    def _close(self, action: Close) -> list[Action]:
        self.closed = True
        return []

    def _begin(self, action: Begin) -> None:
        assert self._delivery is None and self._failed is None, "two open deliveries"
        self.begun.append(action.envelope)
        if self.begin_error is not None:
            self._failed = self.begin_error
        else:
            self._delivery = bytearray()

    def _write(self, action: Write) -> None:
        if self._delivery is None:
            return  # none open (storage off), or it already failed
        if self.write_error is not None or len(self.begun) == self.fail_delivery:
            self._delivery = None
            self._failed = self.write_error or replies.STORE_FAILED
        else:
            self._delivery += action.data

    def _abort(self, action: Abort) -> None:
        self.aborted += 1
        self._delivery = self._failed = None

    def _commit(self, action: Commit) -> list[Action]:
        return self.session.commit_done(self._stored(action.envelope))

    def _verify(self, action: Verify) -> list[Action]:
        self.credentials.append(action.credentials)
        c = action.credentials
        user = auth.pattern_authenticate(c.username, c.password)
        return self.session.auth_done(user, self.inactive and user is not None)

    def _waited(self, action: Wait) -> list[Action]:
        return self.session.waited()

    def _start_tls(self, action: StartTLS) -> list[Action]:
        self.handshakes += 1
        if self.handshake_ok:
            return self.session.tls_started()
        return self.session.receive_data(b"")

    def _heard(self, action: Log | ErrorSent | Accepted) -> None:
        """What only the edges hear: kept in ``actions``, nothing else to do."""

    def _stored(self, envelope: Envelope) -> Reply | None:
        """Like the server: a failure of ``begin`` or ``write`` is this
        delivery's answer, else the commit's own."""
        delivery, self._delivery = self._delivery, None
        failed, self._failed = self._failed, None
        if failed is not None:
            return failed
        if self.commit_error is not None:
            return self.commit_error
        if delivery is None:
            return None  # storage off
        self.messages.append((envelope, bytes(delivery)))
        return None


# The one place the fake shell maps an action type to what it does: the same
# types as the server's table (badsmtp.server._DO), and the same ones end a
# batch there (tests/test_fakeshell.py checks both).
DO: dict[type, Callable[[Wire, Any], list[Action] | None]] = {
    Send: Wire._send,
    SplitSend: Wire._send_split,
    Write: Wire._write,
    Wait: Wire._waited,
    Close: Wire._close,
    StartTLS: Wire._start_tls,
    Begin: Wire._begin,
    Commit: Wire._commit,
    Abort: Wire._abort,
    Verify: Wire._verify,
    Log: Wire._heard,
    ErrorSent: Wire._heard,
    Accepted: Wire._heard,
}


def greeted(ehlo: bytes = b"EHLO client.example", **kwargs: object) -> Wire:
    wire = Wire(**kwargs)  # type: ignore[arg-type]
    wire.feed(ehlo + b"\r\n")
    return wire


def in_rcpt(ehlo: bytes = b"EHLO client.example", **kwargs: object) -> Wire:
    wire = greeted(ehlo, **kwargs)
    assert wire.feed(ENVELOPE) in (MAIL_OK + RCPT_OK, b"250 OK\r\n250 OK\r\n")
    return wire


def phase(wire: Wire) -> Phase:
    return wire.session.state.phase


def data_wire(ehlo: bytes = b"EHLO client.example", **kwargs: object) -> Wire:
    wire = in_rcpt(ehlo, **kwargs)
    wire.batches.clear()
    wire.actions.clear()
    return wire
