"""The sans-IO connection driver: framing and batching.

It owns the only receive buffer and reads it with the reader the state asks
for (:mod:`badsmtp.readers`: command lines, DATA content, a BDAT chunk, the
lines of an AUTH exchange), hands each command to the dispatcher
(:mod:`badsmtp.protocol`), and batches the replies into the actions of
:mod:`badsmtp.actions`.  Bytes in (``receive_data``; ``b""`` means the
client closed), actions out.  Where the outside world decides something (a
wait, a TLS handshake, a storage commit, an authenticator's verdict) the
session pauses: the action is the last of its batch, and the shell answers
with ``waited``, ``tls_started``, ``commit_done`` or ``auth_done``, which
return the next actions.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, Union

from . import auth, protocol, replies
from .actions import (
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
    StartTLS,
    Verify,
    Wait,
    Write,
)
from .protocol import Context, Phase, State
from .readers import AuthReader, ChunkReader, DataReader, LineReader, TooLong
from .replies import Reply, ReplyError

__all__ = ["MAX_AUTH_LINE", "MAX_LINE", "Envelope", "Recorder", "Session", "Transaction"]

MAX_LINE = 4096  # RFC 5321 §4.5.3.1.4 asks for at least 512
MAX_AUTH_LINE = 12288  # RFC 4954 §4

Reader = Union[LineReader, DataReader, ChunkReader]


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


@dataclass(frozen=True, slots=True)
class Transaction:
    """The message being received: octets of content so far (DATA unstuffed,
    BDAT chunks), whether they passed the size limit, and whether its
    delivery is open in the store."""

    size: int = 0
    overflow: bool = False
    open: bool = False


_IDLE = Transaction()


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
        self._lines = LineReader(MAX_LINE)
        self._reader: Reader = self._lines
        self._buf = b""
        self._paused = False
        self._closed = False
        self._after: tuple[Sequence[protocol.Output], bool] | None = None  # held by a Wait
        self._delayed = False  # the buffered line already had its command delay
        self._message = _IDLE
        self._refusal: tuple[Reply | Log, ...] | None = None  # a refused chunk's answer
        self._verified = ""  # the user name of the last Verify
        self._mechanism = ""  # and its SASL mechanism
        self._out: list[bytes] = []
        self._actions: list[Action] = []
        # Observers and rate limiters hear of error replies and acknowledged
        # messages through ErrorSent/Accepted; they queue in _notes and leave
        # right after the Send they follow, so one batch is still one write.
        self._notify = notify
        self._notes: list[Action] = []
        self._verb = ""  # the command being answered (ErrorSent)
        self._recorder = recorder

    # -- what the shell calls ------------------------------------------------------
    def greeting(self) -> list[Action]:
        reply = Reply(220, (replies.GREETING.format(identity=self.ctx.identity),))
        if self._recorder is not None:
            self._recorder.reply(reply, False)
        return [Send(reply.render(False))]

    def receive_data(self, data: bytes) -> list[Action]:
        if self._closed:
            return []
        if not data:  # the client closed its side: nothing more will come
            self._abort_delivery()
            self._close()
            return self._take()
        self._buf = self._buf + data if self._buf else data
        if not self._paused:
            self._process()
        return self._take()

    def waited(self) -> list[Action]:
        """The Wait has passed: what it held back goes on."""
        self._paused = False
        if self._after is not None:
            outputs, enhanced = self._after
            self._after = None
            self._outputs(outputs, enhanced)
        return self._resume()

    def commit_done(self, error: Reply | None) -> list[Action]:
        """The store committed the message (``error`` None) or failed.  The
        shell reports every failure of this delivery here, whether ``begin``,
        a ``write`` or ``commit`` raised: a failure travels with the delivery
        it belongs to, never with whatever transaction the session (which may
        have read far ahead in a pipeline) is in when the shell sees it."""
        self._message = replace(self._message, open=False)
        self._paused = False
        self._finish_message(error)
        return self._resume()

    def auth_done(self, user: object | None, inactive: bool = False) -> list[Action]:
        """The authenticator's verdict on the last ``Verify``."""
        self._paused = False
        if user is not None and not inactive:
            self.state = replace(self.state, user=self._verified)
            self._reply(replies.AUTH_OK)
        elif inactive:
            self._reply(replies.AUTH_INACTIVE)
        else:
            self._authenticate(auth.failure_exchange(self._mechanism))
        return self._resume()

    def tls_started(self) -> list[Action]:
        """The handshake after STARTTLS succeeded: forget everything learnt in
        plain text (RFC 3207 §4.2).  Bytes the client sent after STARTTLS
        and before the handshake were discarded (command injection)."""
        if self._recorder is not None:
            self._recorder.tls_started(self._buf)
        self.state = State(tls=True, messages=self.state.messages)
        self._buf = b""
        self._paused = False
        self._reader = self._lines
        return self._take()

    def timeout(self) -> list[Action]:
        return self._end_with(replies.IDLE_TIMEOUT)

    def shutdown(self) -> list[Action]:
        return self._end_with(replies.SHUTTING_DOWN)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def mid_line(self) -> bool:
        """Part of a command (or AUTH) line is here, its end is not: the
        shell bounds the wait for the rest by what is left of the line's
        idle timeout (RFC 5321 §4.5.3.2.7 times whole commands)."""
        reader = self._reader
        return not self._paused and isinstance(reader, LineReader) and reader.mid_line(self._buf, 0)

    # -- batching ------------------------------------------------------------------
    def _take(self) -> list[Action]:
        self._flush()
        actions, self._actions = self._actions, []
        return actions

    def _flush(self) -> None:
        if self._out:
            self._actions.append(Send(b"".join(self._out)))
            self._out = []
        if self._notes:
            self._actions.extend(self._notes)
            self._notes = []

    def _act(self, action: Action) -> None:
        self._flush()
        self._actions.append(action)

    def _pause(self, action: Action) -> None:
        self._paused = True
        self._act(action)

    def _log(self, log: Log) -> None:
        # Logs travel with the actions but need no flush: they never split a
        # pipelined batch of replies into two writes.
        self._actions.append(log)

    def _reply(self, reply: Reply, enhanced: bool | None = None) -> None:
        if enhanced is None:
            enhanced = self.state.caps.enhanced
        data = reply.render(enhanced)
        self._out.append(data)
        if self._recorder is not None:
            self._recorder.reply(reply, enhanced)
        if self._notify and reply.code >= 400:
            self._notes.append(ErrorSent(data.decode("utf-8", "replace").rstrip("\r\n"), self._verb))
        if reply.code == 421:  # a 421 always closes (RFC 5321 §3.8)
            self._abort_delivery()
            self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._buf = b""
            self._act(Close())

    def _end_with(self, reply: Reply) -> list[Action]:
        if not self._closed:
            self._verb = ""  # a connection-level reply
            self._abort_delivery()
            self._reply(reply)
        return self._take()

    def _resume(self) -> list[Action]:
        if not self._paused and not self._closed:
            self._process()
        return self._take()

    # -- reading -------------------------------------------------------------------
    def _process(self) -> None:
        """Read the buffer with the reader in force until it needs more
        input, the session pauses or it closes."""
        pos, buf = 0, self._buf
        while True:
            reader = self._reader
            if reader is self._lines or type(reader) is AuthReader:
                after = self._read_line(reader, buf, pos)
            elif type(reader) is DataReader:
                after = self._read_data(reader, buf, pos)
            else:
                after = self._read_chunk(reader, buf, pos)  # type: ignore[arg-type]
            if after is None:
                break
            pos = after
            if self._paused or self._closed:
                break
        if self._closed:
            if pos < len(buf) and self._recorder is not None:
                self._recorder.discarded(buf[pos:])  # pipelined after a 421
            self._buf = b""
        else:
            self._buf = buf[pos:]

    def _read_line(self, reader: LineReader, buf: bytes, pos: int) -> int | None:
        """Handle one line; the position after it, or None to wait for more."""
        after, line = reader(buf, pos)
        if line is None:
            return after if after != pos else None  # an over-long line is dropped as it comes
        if type(line) is TooLong:
            self._too_long(line.length)
        elif reader is not self._lines:
            self._auth_step(line.rstrip())  # type: ignore[union-attr]
        elif self._delay_before(line):  # type: ignore[arg-type]
            return pos  # the line stays buffered until ``waited``
        else:
            self._command(line)  # type: ignore[arg-type]
        return after

    def _delay_before(self, line: bytes) -> bool:
        """Pause for the command delay before this command is processed
        (badsmtp(1), LISTENERS): a shutdown during the wait then finds the
        session as it was before the command.  Empty and over-long lines are
        not delayed."""
        if self._delayed:
            self._delayed = False
            return False
        delay = self.state.caps.delay or self.command_delay
        stripped = line.strip()
        if not delay or not stripped or len(stripped) > MAX_LINE:
            return False
        self._delayed = True
        self._pause(Wait(delay))
        return True

    def _too_long(self, length: int) -> None:
        if self._recorder is not None:
            self._recorder.too_long(length)
        in_auth = self._reader is not self._lines
        fields = {"command_length": length, "max_length": self._reader.limit}  # type: ignore[union-attr]
        self._log(Log("WARN", "Command length limit exceeded", fields))
        if in_auth:
            self._reader = self._lines
            self._reply(replies.AUTH_LINE_TOO_LONG)
        else:
            self._verb = ""  # never parsed
            self._reply(replies.LINE_TOO_LONG)

    def _read_data(self, reader: DataReader, buf: bytes, pos: int) -> int | None:
        if pos == len(buf):
            return None
        if self._recorder is not None:
            self._recorder.content_read()
        after, piece, ended = reader(buf, pos)
        if piece:
            self._content(piece, len(piece))
        if ended:
            self._end_of_data()
        elif after == pos:
            return None  # only a possible start of the terminator is left
        return after

    def _content(self, piece: bytes, size: int) -> None:
        """``size`` more octets of content; ``piece`` goes to the store if
        its delivery is open (empty for a chunk counted in advance)."""
        message = self._message
        if size:
            message = self._message = replace(message, size=message.size + size)
            if message.size > self.state.caps.size_limit and not message.overflow:
                self._abort_delivery()
                message = self._message = replace(self._message, overflow=True)
        if piece and message.open and self._stream:
            self._act(Write(piece))

    def _end_of_data(self) -> None:
        if self._recorder is not None:
            self._recorder.content_end(self._message.size)
        self._reader = self._lines
        self._complete_message()

    def _read_chunk(self, reader: ChunkReader, buf: bytes, pos: int) -> int | None:
        after, piece = reader(buf, pos)
        if piece and self._refusal is None:
            self._content(piece, 0)  # counted when the BDAT was read
        if reader.left == 0:
            self._chunk_complete(reader.last)
        elif after == pos:
            return None
        return after

    def _chunk_complete(self, last: bool) -> None:
        """Judge a BDAT chunk once all of it was read (RFC 3030 §2)."""
        self._reader = self._lines
        state = self.state
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            self._outputs(refusal, state.caps.enhanced)
        elif self._message.overflow:
            self._size_exceeded()
        elif not last:
            self.state = replace(state, phase=Phase.BDAT)
            self._reply(replies.OK)
        elif state.armed is not None and state.armed.verb == "data":
            self._abort_delivery()
            armed = state.armed  # logged before a 421 closes
            self._log(protocol.fired(armed.source, armed.reply.code, "BDAT"))
            self._reply(armed.reply)
            self.state = replace(state, phase=Phase.RCPT)
        else:
            self._complete_message()

    # -- commands --------------------------------------------------------------------
    def _command(self, raw: bytes) -> None:
        raw = raw.strip()
        if not raw:
            return  # empty lines are ignored (RFC 5321 §4.1.1 asks for none)
        if len(raw) > MAX_LINE:  # 4,097 octets ended by a bare LF
            self._too_long(len(raw))
            return
        # Tokens are split at runs of spaces and tabs only (RFC 5321 §4.1.1):
        # str.split() would also split at NBSP, U+2028, \x1c-\x1f and the like.
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
        for out in outputs:  # a fired trigger is logged even when its 421 closes
            if type(out) is Log:
                self._log(out)
        for i, out in enumerate(outputs):
            if type(out) is Reply:
                self._reply(out, enhanced)
                if self._closed:
                    return
            elif type(out) is Wait:  # the rest waits with it (EHLO dlay<N>)
                self._pause(out)
                self._after = (outputs[i + 1 :], enhanced)
                return
            elif type(out) is not Log:
                self._effect(out)

    def _effect(self, out: protocol.Output) -> None:
        kind = type(out)
        if kind is protocol.ReadData:
            self._flush()  # DATA synchronises the pipeline (RFC 2920 §3.1)
            self._begin()
            self._reader = DataReader()
        elif kind is protocol.ReadChunk:
            self._read_chunk_of(out)  # type: ignore[arg-type]
        elif kind is protocol.DiscardChunk:
            self._flush()  # a BDAT synchronises the pipeline, refused or not
            self._reader = ChunkReader(out.size, False)  # type: ignore[union-attr]
            self._refusal = out.then  # type: ignore[union-attr]
        elif kind is Close:
            self._close()
        elif kind is Abort:
            self._abort_delivery()
        elif kind is StartTLS:  # what is pipelined after it goes at tls_started()
            self._pause(StartTLS())
        elif kind is protocol.Authenticate:
            self._flush()
            self._mechanism = out.mechanism  # type: ignore[union-attr]
            self._authenticate(auth.exchange(self._mechanism, out.initial, self._challenge()))  # type: ignore[union-attr]

    def _read_chunk_of(self, out: protocol.ReadChunk) -> None:
        self._flush()
        self._begin()
        self._reader = ChunkReader(out.size, out.last)
        # The size is known from the command: past the limit, the chunk is
        # still read but goes nowhere (RFC 3030 §2).
        self._content(b"", out.size)

    def _size_exceeded(self) -> None:
        limit = self.state.caps.size_limit
        fields: dict[str, object] = {"current_size": self._message.size, "max_size": limit}
        self._log(Log("WARN", "Message size limit exceeded", fields))
        self._transaction_failed(replies.size_exceeded(limit))

    # -- AUTH exchange (RFC 4954 §4) ---------------------------------------------------
    def _authenticate(self, exchange: Generator[Reply, bytes, auth.Credentials | None]) -> None:
        self._reader = AuthReader(MAX_AUTH_LINE, self._mechanism, exchange)
        self._auth_step(None)

    def _auth_step(self, line: bytes | None) -> None:
        reader = self._reader
        assert isinstance(reader, AuthReader)
        try:
            challenge = next(reader.exchange) if line is None else reader.exchange.send(line)
        except StopIteration as done:
            self._reader = self._lines
            if done.value is not None:
                self._verified = done.value.username
                self._pause(Verify(done.value))
            return
        except ReplyError as exc:
            self._reader = self._lines
            self._reply(exc.reply)
            return
        self._reply(challenge, False)
        self._flush()

    # -- deliveries ----------------------------------------------------------------------
    def _envelope(self) -> Envelope:
        s = self.state
        return Envelope(s.sender or "", s.recipients, s.helo_name, s.tls, s.user, self._message.size)

    def _begin(self) -> None:
        if not self._message.open and self.state.phase is Phase.RCPT:
            self._message = Transaction(open=True)
            if self._stream:
                self._act(Begin(self._envelope()))

    def _abort_delivery(self) -> None:
        if self._message.open:
            self._message = replace(self._message, open=False)
            if self._stream:
                self._act(Abort())

    def _complete_message(self) -> None:
        if self._message.overflow:
            self._size_exceeded()
        elif self.ctx.policy is not None and 0 <= self.ctx.policy.quota() < self._message.size:
            self._transaction_failed(replies.QUOTA_EXCEEDED)  # the authorizer's quota
        else:
            self._pause(Commit(self._envelope()))

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
        # the error, nothing of the message may still exist.
        self._abort_delivery()
        self._reply(reply)
        self.state = protocol.transaction_over(self.state)
