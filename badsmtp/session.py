"""The sans-IO connection driver: it owns the only receive buffer, picks the
reader by mode (command line, DATA content, BDAT chunk, AUTH continuation),
batches replies, and turns the dispatcher's outputs into *actions* for the IO
shell.  Bytes in (``receive_data``), actions out; ``receive_data(b"")`` means
the client closed its side.

Actions are ``bytes`` (send them) or one of the small classes below.  Where the
outside world decides something (a TLS handshake, a storage commit, an
authenticator's verdict) the session pauses: the action is the last of its
batch and the shell reports back with ``tls_started``, ``commit_done`` or
``auth_done``, which return the next actions.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol, Union

from . import auth, protocol, replies
from .protocol import Context, Phase, State
from .replies import Reply, ReplyError

__all__ = [
    "MAX_AUTH_LINE",
    "MAX_LINE",
    "AbortDelivery",
    "Accepted",
    "Action",
    "Begin",
    "Commit",
    "Delay",
    "Envelope",
    "ErrorSent",
    "Log",
    "Session",
    "Verify",
    "Write",
]

MAX_LINE = 4096  # spec 3.2 (RFC 5321 §4.5.3.1.4 asks for at least 512)
MAX_AUTH_LINE = 12288  # RFC 4954 §4
_END = b"\r\n.\r\n"  # only CRLF.CRLF ends DATA (spec 0.14: no SMTP smuggling)


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]
    helo: str
    tls: bool
    user: str | None
    size: int = 0


@dataclass(frozen=True, slots=True)
class Begin:
    """Open a delivery in the message store (content follows as Write)."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Write:
    data: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """Pause: commit the delivery, then call ``commit_done``."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class AbortDelivery:
    """Drop the open delivery: nothing of it may be kept."""


@dataclass(frozen=True, slots=True)
class Verify:
    """Pause: ask the authenticator, then call ``auth_done``."""

    credentials: auth.Credentials


@dataclass(frozen=True, slots=True)
class Delay:
    """Pause: wait ``seconds`` (interruptibly), then call ``delay_done``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Log:
    level: str
    message: str
    fields: dict[str, object]


@dataclass(frozen=True, slots=True)
class ErrorSent:
    """A 4xx/5xx reply went out (the bytes before this action), answering
    ``command`` ("" for connection-level replies).  Only with ``notify``."""

    text: str
    command: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """The message just committed was acknowledged.  Only with ``notify``."""


Action = Union[
    bytes,
    Delay,
    protocol.Wait,
    protocol.Close,
    protocol.StartTLS,
    Begin,
    Write,
    Commit,
    AbortDelivery,
    Verify,
    Log,
    ErrorSent,
    Accepted,
]


class Recorder(Protocol):
    """What a session reports while a transcript is recorded
    (:class:`badsmtp.transcript.Recorder`).  Optional: without one the
    session pays one ``is not None`` test per reply, command and DATA read."""

    def command(self, words: list[str]) -> None: ...
    def too_long(self, length: int) -> None: ...
    def reply(self, reply: Reply, enhanced: bool) -> None: ...
    def content_read(self) -> None: ...
    def content_end(self, size: int) -> None: ...
    def discarded(self, data: bytes) -> None: ...
    def tls_started(self, discarded: bytes) -> None: ...


class Mode(Enum):
    LINE = "line"
    DATA = "data"
    CHUNK = "chunk"
    AUTH = "auth"
    PAUSED = "paused"
    CLOSED = "closed"


class Session:
    """One SMTP connection's protocol state.  Not thread-safe: one per thread."""

    def __init__(
        self,
        ctx: Context,
        *,
        tls: bool = False,
        command_delay: float = 0.0,
        stream: bool = True,
        challenge: Callable[[], str] = lambda: "<0.0@badsmtp.test>",
        notify: bool = False,
        recorder: Recorder | None = None,
    ) -> None:
        self.ctx = ctx
        self.state = State(tls=tls)
        self.command_delay = command_delay
        self._stream = stream  # pass content to the store, or only count it
        self._challenge = challenge
        self.mode = Mode.LINE
        self._buf = b""
        self._discarding = False  # inside an over-long line (spec 3.2)
        self._out: list[bytes] = []
        self._actions: list[Action] = []
        self._delivering = False
        self._size = 0  # octets of content so far (DATA unstuffed, BDAT chunks)
        self._overflow = False
        self._tail = b"\r\n"  # last two content octets passed on (DATA)
        self._chunk_left = 0
        self._chunk_last = False
        self._refusal: tuple[Reply | protocol.Fired, ...] | None = None  # a refused chunk's answer
        self._auth: Generator[Reply, bytes, auth.Credentials | None] | None = None
        self._mechanism = ""
        self._verified = ""
        self._delayed = False  # the buffered line already had its command delay
        # Observers and rate limiters (spec 18.4, 18.6) hear of error replies
        # and acknowledged messages through ErrorSent/Accepted; they queue in
        # _notes and leave right after the bytes they follow, so the replies
        # of one batch still go out in one sendall.
        self._notify = notify
        self._notes: list[Action] = []
        self._verb = ""  # the command being answered (ErrorSent)
        self._recorder = recorder

    # -- entry points -------------------------------------------------------
    def greeting(self) -> list[Action]:
        reply = Reply(220, (replies.GREETING.format(identity=self.ctx.identity),))
        if self._recorder is not None:
            self._recorder.reply(reply, False)
        return [reply.render(False)]

    def receive_data(self, data: bytes) -> list[Action]:
        if self.mode is Mode.CLOSED:
            return []
        if not data:  # the client closed its side: nothing more will come
            self._abort_delivery()
            self._close()
            return self._take()
        self._buf = self._buf + data if self._buf else data
        if self.mode is not Mode.PAUSED:
            self._process()
        return self._take()

    def commit_done(self, error: Reply | None) -> list[Action]:
        """The store committed the message (``error`` None) or failed.  The
        shell reports every failure of this delivery here, whether ``begin``,
        a ``write`` or ``commit`` raised: a failure travels with the delivery
        it belongs to, never with whatever transaction the session (which may
        have read far ahead in a pipeline) is in when the shell sees it."""
        self._delivering = False
        self._finish_message(error)
        return self._resume()

    def auth_done(self, user: object | None, inactive: bool = False) -> list[Action]:
        """The authenticator's verdict on the last ``Verify``."""
        state = self.state
        self.mode = Mode.LINE
        if user is not None and not inactive:
            self.state = replace(state, user=self._verified)
            self._reply(replies.AUTH_OK)
        elif inactive:
            self._reply(replies.AUTH_INACTIVE)
        else:
            self._auth = auth.failure_exchange(self._mechanism)
            self._auth_step(None)
        return self._resume()

    def tls_started(self) -> list[Action]:
        """The handshake after STARTTLS succeeded: forget everything learnt in
        plain text (RFC 3207 §4.2).  Bytes the client sent after STARTTLS
        and before the handshake were discarded (command injection)."""
        if self._recorder is not None:
            self._recorder.tls_started(self._buf)
        self.state = State(tls=True, messages=self.state.messages)
        self._buf = b""
        self.mode = Mode.LINE
        return self._take()

    def timeout(self) -> list[Action]:
        return self._end_with(replies.IDLE_TIMEOUT)

    def shutdown(self) -> list[Action]:
        return self._end_with(replies.SHUTTING_DOWN)

    @property
    def closed(self) -> bool:
        return self.mode is Mode.CLOSED

    @property
    def mid_line(self) -> bool:
        """Part of a command (or AUTH) line is here, its end is not: the
        shell bounds the wait for the rest by what is left of the line's
        idle timeout (RFC 5321 §4.5.3.2.7 times whole commands)."""
        return (self.mode is Mode.LINE or self.mode is Mode.AUTH) and (
            bool(self._buf) or self._discarding
        )

    # -- plumbing -------------------------------------------------------------
    def _take(self) -> list[Action]:
        self._flush()
        actions, self._actions = self._actions, []
        return actions

    def _flush(self) -> None:
        if self._out:
            self._actions.append(b"".join(self._out))
            self._out = []
        if self._notes:
            self._actions.extend(self._notes)
            self._notes = []

    def _act(self, action: Action) -> None:
        self._flush()
        self._actions.append(action)

    def _reply(self, reply: Reply, enhanced: bool | None = None) -> None:
        if enhanced is None:
            enhanced = self.state.caps.enhanced
        data = reply.render(enhanced)
        self._out.append(data)
        if self._recorder is not None:
            self._recorder.reply(reply, enhanced)
        if self._notify and reply.code >= 400:
            self._notes.append(ErrorSent(data.decode("utf-8", "replace").rstrip("\r\n"), self._verb))
        if reply.code == 421:  # 421 always closes (spec 6.7)
            self._abort_delivery()
            self._close()

    def _close(self) -> None:
        if self.mode is not Mode.CLOSED:
            self.mode = Mode.CLOSED
            self._buf = b""
            self._act(protocol.Close())

    def _end_with(self, reply: Reply) -> list[Action]:
        if self.mode is not Mode.CLOSED:
            self._verb = ""  # a connection-level reply
            self._abort_delivery()
            self._reply(reply)
        return self._take()

    def _resume(self) -> list[Action]:
        if self.mode is Mode.PAUSED:
            self.mode = Mode.LINE
        if self.mode is not Mode.CLOSED:
            self._process()
        return self._take()

    def _envelope(self) -> Envelope:
        s = self.state
        return Envelope(s.sender or "", s.recipients, s.helo_name, s.tls, s.user, self._size)

    # -- readers -------------------------------------------------------------
    def _process(self) -> None:
        pos, buf = 0, self._buf
        while pos < len(buf):
            mode = self.mode
            if mode is Mode.LINE or mode is Mode.AUTH:
                after = self._read_line(buf, pos)
                if after is None:  # no complete line yet
                    if self._discarding:
                        pos = len(buf)
                    break
            elif mode is Mode.DATA:
                after = self._read_data(buf, pos)
                if after == pos and self.mode is Mode.DATA:
                    break  # only a possible start of the terminator is left
            elif mode is Mode.CHUNK:
                after = self._read_chunk(buf, pos)
            else:  # PAUSED or CLOSED: keep the rest for later (or drop it)
                break
            pos = after
        if self.mode is Mode.CHUNK and self._chunk_left == 0:
            self._chunk_complete()  # BDAT 0, or a chunk that ended with the buffer
        if self.mode is Mode.CLOSED and pos < len(buf) and self._recorder is not None:
            self._recorder.discarded(buf[pos:])  # pipelined after a 421
        self._buf = buf[pos:] if self.mode is not Mode.CLOSED else b""

    def _read_line(self, buf: bytes, pos: int) -> int | None:
        """Handle one line; return the position after it, or None when no
        complete line is buffered."""
        limit = MAX_AUTH_LINE if self.mode is Mode.AUTH else MAX_LINE
        nl = buf.find(b"\n", pos)
        if nl < 0:
            if len(buf) - pos > limit + 1:  # +1 for a CR still to come
                # Never buffer an unbounded line: drop it, answer at its LF.
                self._discarding = True
            return None
        line = buf[pos:nl]
        if self._discarding or len(line) > limit + 1:
            self._discarding = False
            self._too_long(len(line))
        elif self.mode is Mode.AUTH:
            self._auth_step(line.rstrip())
        elif self._delay_before(line):
            return pos  # the line stays buffered until ``delay_done``
        else:
            self._command(line)
        return nl + 1

    def _delay_before(self, line: bytes) -> bool:
        """Pause for the command delay before this command is processed
        (spec 16.3): a shutdown during the wait then finds the session as it
        was before the command.  Empty and over-long lines are not delayed."""
        if self._delayed:
            self._delayed = False
            return False
        delay = self.state.caps.delay or self.command_delay
        stripped = line.strip()
        if not delay or not stripped or len(stripped) > MAX_LINE:
            return False
        self._delayed = True
        self.mode = Mode.PAUSED
        self._act(Delay(delay))
        return True

    def delay_done(self) -> list[Action]:
        """The command delay announced by ``Delay`` has passed."""
        return self._resume()

    def _too_long(self, length: int) -> None:
        if self._recorder is not None:
            self._recorder.too_long(length)
        limit = MAX_AUTH_LINE if self.mode is Mode.AUTH else MAX_LINE
        self._log("WARN", "Command length limit exceeded", {"command_length": length, "max_length": limit})
        if self.mode is Mode.AUTH:
            self.mode = Mode.LINE
            self._auth = None
            self._reply(replies.AUTH_LINE_TOO_LONG)
        else:
            self._verb = ""  # never parsed
            self._reply(replies.LINE_TOO_LONG)

    def _read_data(self, buf: bytes, pos: int) -> int:
        """DATA content: find CRLF.CRLF, unstuff dots (RFC 5321 §4.5.2),
        stream it on.  Up to four octets that might start the terminator
        are kept back; ``_tail`` holds the last two octets passed on, so a
        terminator split across reads is still seen."""
        if self._recorder is not None:
            self._recorder.content_read()
        tail = self._tail
        window = tail + buf[pos:] if pos else tail + buf
        end = window.find(_END)
        if end >= 0:
            self._content(window, len(tail), end + 2)
            self._end_of_data()
            return pos + end + len(_END) - len(tail)
        keep = max(len(tail), len(window) - 4)
        self._content(window, len(tail), keep)
        return pos + keep - len(tail)

    def _content(self, window: bytes, start: int, stop: int) -> None:
        if stop <= start:
            return
        # One octet of context so a dot at the start of this piece is seen.
        piece = window[start - 1 : stop].replace(b"\n.", b"\n")[1:]
        self._tail = window[stop - 2 : stop]
        self._size += len(piece)
        if self._size > self.state.caps.size_limit and not self._overflow:
            self._overflow = True
            self._abort_delivery()
        if self._delivering and self._stream:
            self._act(Write(piece))

    def _end_of_data(self) -> None:
        if self._recorder is not None:
            self._recorder.content_end(self._size)
        self._tail = b"\r\n"
        self.mode = Mode.LINE
        self._complete_message()

    def _read_chunk(self, buf: bytes, pos: int) -> int:
        take = min(self._chunk_left, len(buf) - pos)
        self._chunk_left -= take
        if self._delivering and self._stream and not self._overflow and self._refusal is None:
            self._act(Write(buf[pos : pos + take]))
        if self._chunk_left == 0:
            self._chunk_complete()
        return pos + take

    def _chunk_complete(self) -> None:
        """Judge a BDAT chunk once all of it was read (RFC 3030 §3)."""
        self.mode = Mode.LINE
        state = self.state
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            self._outputs(refusal, state.caps.enhanced)
        elif self._overflow:
            self._size_exceeded()
        elif not self._chunk_last:
            self.state = replace(state, phase=Phase.BDAT)
            self._reply(replies.OK)
        elif state.armed is not None and state.armed.verb == "data":
            self._abort_delivery()
            self._fired(state.armed.source, state.armed.reply.code, "BDAT")  # before a 421 closes
            self._reply(state.armed.reply)
            self.state = replace(state, phase=Phase.RCPT)
        else:
            self._complete_message()

    # -- commands --------------------------------------------------------------
    def _command(self, raw: bytes) -> None:
        raw = raw.strip()
        if not raw:
            return  # empty lines are ignored (spec 3.1)
        if len(raw) > MAX_LINE:
            self._too_long(len(raw))
            return
        # Tokens are split at runs of spaces and tabs only (spec 3.3): str.split()
        # would also split at NBSP, U+2028, \x1c-\x1f and the like.
        words = [w for w in raw.decode("utf-8", "replace").replace("\t", " ").split(" ") if w]
        if not words:
            return
        verb, args = words[0].upper(), words[1:]
        if self._recorder is not None:
            self._recorder.command(words)
        self._verb = verb
        state, outputs = protocol.dispatch(self.state, verb, args, self.ctx)
        self.state = state
        self._outputs(outputs, False if verb in ("HELO", "EHLO") else state.caps.enhanced)

    def _outputs(self, outputs: Sequence[protocol.Output], enhanced: bool) -> None:
        for out in outputs:  # log a fired trigger even when its 421 closes (6.6, 6.7)
            if isinstance(out, protocol.Fired):
                self._effect(out)
        for out in outputs:
            if isinstance(out, Reply):
                self._reply(out, enhanced)
                if self.mode is Mode.CLOSED:
                    return
            elif not isinstance(out, protocol.Fired):
                self._effect(out)

    def _effect(self, out: protocol.Output) -> None:
        if isinstance(out, protocol.ReadData):
            self._flush()  # DATA synchronises the pipeline (RFC 2920 §3.1)
            self.mode = Mode.DATA
            self._begin()
        elif isinstance(out, protocol.ReadChunk):
            self._flush()
            self._begin()
            self.mode = Mode.CHUNK
            self._chunk_left, self._chunk_last = out.size, out.last
            if self._size + out.size > self.state.caps.size_limit and not self._overflow:
                self._overflow = True
                self._abort_delivery()
            self._size += out.size
        elif isinstance(out, protocol.DiscardChunk):
            self._flush()  # a BDAT synchronises the pipeline, refused or not
            self.mode = Mode.CHUNK
            self._chunk_left, self._refusal = out.size, out.then
        elif isinstance(out, protocol.Close):
            self._close()
        elif isinstance(out, protocol.Abort):
            self._abort_delivery()
        elif isinstance(out, protocol.Fired):
            self._fired(out.trigger, out.code, out.stage)
        elif isinstance(out, protocol.StartTLS):
            self.mode = Mode.PAUSED
            self._buf = b""  # nothing pipelined after STARTTLS survives (CVE-2011-0411)
            self._act(out)
        elif isinstance(out, protocol.Authenticate):
            self._flush()
            self._mechanism = out.mechanism
            self._auth = auth.exchange(out.mechanism, out.initial, self._challenge())
            self._auth_step(None)
        elif isinstance(out, protocol.Wait):
            self._act(out)

    def _log(self, level: str, message: str, fields: dict[str, object]) -> None:
        # Logs travel with the actions but need no flush: they never split a
        # pipelined batch of replies into two sends.
        self._actions.append(Log(level, message, fields))

    def _fired(self, trigger: str, code: int, stage: str) -> None:
        fields = {"error_code": code, "trigger": trigger, "smtp_stage": stage}
        self._log("WARN", "SMTP error simulation triggered", fields)

    def _size_exceeded(self) -> None:
        limit = self.state.caps.size_limit
        self._log("WARN", "Message size limit exceeded", {"current_size": self._size, "max_size": limit})
        self._transaction_failed(replies.size_exceeded(limit))

    # -- AUTH exchange (RFC 4954 §4) --------------------------------------------
    def _auth_step(self, line: bytes | None) -> None:
        gen = self._auth
        assert gen is not None
        try:
            challenge = next(gen) if line is None else gen.send(line)
        except StopIteration as done:
            self._auth = None
            self.mode = Mode.LINE
            if done.value is not None:
                self._verified = done.value.username
                self.mode = Mode.PAUSED
                self._act(Verify(done.value))
            return
        except ReplyError as exc:
            self._auth = None
            self.mode = Mode.LINE
            self._reply(exc.reply)
            return
        self.mode = Mode.AUTH
        self._reply(challenge, False)
        self._flush()

    # -- deliveries ------------------------------------------------------------
    def _begin(self) -> None:
        if not self._delivering and self.state.phase is Phase.RCPT:
            self._size = 0
            self._overflow = False
            self._delivering = True
            if self._stream:
                self._act(Begin(self._envelope()))

    def _abort_delivery(self) -> None:
        if self._delivering:
            self._delivering = False
            if self._stream:
                self._act(AbortDelivery())

    def _complete_message(self) -> None:
        if self._overflow:
            self._size_exceeded()
        elif self.ctx.policy is not None and 0 <= self.ctx.policy.quota() < self._size:
            self._transaction_failed(replies.QUOTA_EXCEEDED)  # the authorizer's quota (10.4, 18.5)
        else:
            self.mode = Mode.PAUSED
            self._act(Commit(self._envelope()))

    def _finish_message(self, error: Reply | None) -> None:
        if error is None:
            self._reply(replies.ACCEPTED)
            if self._notify:
                self._notes.append(Accepted())
            self.state = replace(
                protocol.transaction_over(self.state), messages=self.state.messages + 1
            )
        else:
            self._transaction_failed(error)

    def _transaction_failed(self, reply: Reply) -> None:
        # Drop the delivery before the reply leaves: once the client reads
        # the error, nothing of the message may still exist (6.8).
        self._abort_delivery()
        self._reply(reply)
        self.state = protocol.transaction_over(self.state)
