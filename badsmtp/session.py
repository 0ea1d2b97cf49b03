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
from dataclasses import replace
from functools import lru_cache
from typing import Any

from . import auth, content, protocol, replies
from .actions import (
    Abort,
    Accepted,
    Action,
    Begin,
    Close,
    Commit,
    ErrorSent,
    Log,
    SplitSend,
    StartTLS,
    Verify,
    Wait,
    Write,
)
from .batch import Batch, Recorder, Transaction
from .findings import LOG_MESSAGE, Checker
from .framing import MAX_AUTH_LINE, MAX_LINE, Framing
from .protocol import Context, Phase, State
from .readers import AuthReader, ChunkReader, DataReader
from .replies import Reply, ReplyError
from .replyfaults import ReplyFaults, frame
from .state import Result, fault_fired, may_fire, tls_fault_fired

__all__ = ["MAX_AUTH_LINE", "MAX_LINE", "Session"]

_IDLE = Transaction()


@lru_cache(maxsize=16)
def _greeting(identity: str) -> Reply:
    return Reply(220, (replies.GREETING.format(identity=identity),))


class Session(Framing):
    """One SMTP connection's protocol state.  Not thread-safe: one per thread."""

    def __init__(
        self,
        ctx: Context,
        *,
        tls: bool = False,
        command_delay: float = 0.0,
        greeting_delay: float = 0.0,
        drop_after: float | None = None,
        handshake_first: bool = False,
        tls_fault: str | None = None,
        stream: bool = True,
        begin: bool = True,
        challenge: str = "<0.0@badsmtp.test>",
        notify: bool = False,
        recorder: Recorder | None = None,
    ) -> None:
        super().__init__(recorder)
        self.ctx = ctx
        self.state = State(tls=tls)
        self.command_delay = command_delay
        self._greeting_delay = greeting_delay
        self._drop_after = drop_after
        self._handshake_first = handshake_first  # implicit TLS (RFC 8314 §3)
        self._tls_fault = tls_fault  # the listener's (badsmtp(1), TLS FAULTS)
        self._stream = stream  # pass content to the store, or only count it
        # Announce each delivery with Begin: a store needs it; the inspection
        # API's inbox, collecting content alone, does not (one action less per message).
        self._announce = stream and begin
        self._challenge = challenge  # the connection's CRAM challenge (RFC 2195 §2), as data
        self._exchanges = 0  # SASL exchanges so far: each gets a challenge of its own
        self._after: tuple[Sequence[protocol.Output], bool] | None = None  # held by a Wait
        self._delayed = False  # the buffered line already had its command delay
        self._message = _IDLE
        self._content_left: int | None = None  # octets until a dropafter<N> closes
        self._refusal: tuple[Reply | Log, ...] | None = None  # a refused chunk's answer
        self._verified = ""  # the user name of the last Verify
        self._mechanism = ""  # and its SASL mechanism
        self._batch = Batch()
        # Observers and rate limiters hear of error replies and acknowledged
        # messages (ErrorSent, Accepted) only when someone listens.
        self._notify = notify
        self._verb = ""  # the command being answered (ErrorSent)
        # state.caps.faults, copied where caps change (HELO/EHLO, STARTTLS):
        # one test per reply while no reply-framing fault is in force.
        self._faults: ReplyFaults | None = None
        self._check = Checker()  # README, What your client did wrong

    # -- what the shell calls ------------------------------------------------------
    def greeting(self) -> list[Action]:
        """How the connection opens (README "Quick tour", badsmtp(1) PORT
        MAP): dropped without a word, at once or after ``drop_after``; or the
        implicit TLS handshake first, ``greeting_delay``, then the 220."""
        greeting = _greeting(self.ctx.identity)
        if self._drop_after is None and not self._handshake_first and not self._greeting_delay:
            self._reply(greeting, False)  # the common case, on every connection: no detour
            return self._batch.take()
        opening: list[protocol.Output] = []
        if self._drop_after is not None:
            if self._drop_after:
                opening.append(Wait(self._drop_after))
            opening.append(Close())
        else:
            if self._handshake_first and self._tls_fault is not None:
                opening.append(tls_fault_fired(self._tls_fault, "connect"))
            if self._handshake_first:
                opening.append(StartTLS(self._tls_fault))
            if self._greeting_delay:
                opening.append(Wait(self._greeting_delay))
            opening.append(greeting)
        self._outputs(opening, False)
        return self._batch.take()

    def receive_data(self, data: bytes) -> list[Action]:
        if self._closed:
            return []
        if not data:  # the client closed its side: nothing more will come
            # Paused: a failed handshake or a close during a wait, not the client's fault.
            if not self._paused and self._check.client_closed():
                self._found()
            self._abort_delivery()
            self._close()
            return self._batch.take()
        self._buf = self._buf + data if self._buf else data
        if not self._paused:
            self._process()
        return self._batch.take()

    def waited(self) -> list[Action]:
        """The Wait has passed: what it held back goes on."""
        self._paused = False
        return self._resume()

    def commit_done(self, error: Reply | None) -> list[Action]:
        """The store committed the message (``error`` None) or failed: any
        failure of this delivery (``begin``, a ``write`` or ``commit``), never
        one of whatever transaction the session has read ahead to."""
        self._message = self._message.closed()
        self._paused = False
        self._apply(content.committed(self.state, error, self.ctx))
        if self._paused:  # a slowack: the final reply waits with the rest
            return self._batch.take()
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
        if self._handshake_first:  # implicit TLS: never plain, nothing to forget
            self._handshake_first = False
        else:
            self._check.tls_started()
            if self._recorder is not None:
                self._recorder.tls_started(self._buf)
        self.state = State(tls=True, messages=self.state.messages)
        self._faults = None
        self._buf = b""
        self._paused = False
        self._reader = self._lines
        return self._resume()

    def stop_recording(self, recorder: Recorder) -> None:
        """``recorder``'s transcript is full (the inspection API keeps a
        session's first records): report nothing more to it but findings.
        A DEBUG tracer in front of it goes on (it logs every command)."""
        if self._recorder is recorder:
            self._recorder = None

    def timeout(self) -> list[Action]:
        return self._end_with(replies.IDLE_TIMEOUT)

    def shutdown(self) -> list[Action]:
        return self._end_with(replies.SHUTTING_DOWN)

    # -- batching ------------------------------------------------------------------
    def _pause(self, action: Action) -> None:
        self._paused = True
        self._batch.act(action)

    def _wait(self, wait: Wait) -> None:
        """Every delay badsmtp makes passes here (listener delays, ``dlay``):
        scaled by the server's ``time_scale`` (README, Time scaling)."""
        scale = self.ctx.time_scale
        self._pause(wait if scale == 1.0 else Wait(wait.seconds * scale))

    def _reply(self, reply: Reply, enhanced: bool | None = None) -> None:
        if enhanced is None:
            enhanced = self.state.caps.enhanced
        data = reply.render(enhanced)
        faults = self._faults
        if faults is None:
            self._batch.send(data)
            if self._recorder is not None:
                self._recorder.reply(reply, enhanced)
        else:
            self._framed(reply, enhanced, data, faults)
        if self._notify and reply.code >= 400:
            self._batch.note(ErrorSent(data.decode("utf-8", "replace").rstrip("\r\n"), self._verb))
        if reply.code == 421:  # a 421 always closes (RFC 5321 §3.8)
            self._abort_delivery()
            self._close()

    def _framed(self, reply: Reply, enhanced: bool, data: bytes, faults: ReplyFaults) -> None:
        """A reply under the session's reply-framing faults (README,
        Breaking the replies); the transcript gets the writes as sent."""
        wire, cuts = frame(data, faults, reply is self.state.caps.ehlo)
        self._batch.send_cut(wire, cuts)
        if self._recorder is not None:
            self._recorder.reply(reply, enhanced)
            self._recorder.framed(str(faults), SplitSend(wire, cuts).writes)

    def _close(self, _: object = None) -> None:
        if not self._closed:
            self._closed = True
            self._buf = b""
            self._batch.act(Close())

    def _end_with(self, reply: Reply) -> list[Action]:
        if not self._closed:
            self._verb = ""  # a connection-level reply
            self._abort_delivery()
            self._reply(reply)
        return self._batch.take()

    def _resume(self) -> list[Action]:
        """After a pause: first what the pause held back, then the buffer."""
        if self._after is not None:
            outputs, enhanced = self._after
            self._after = None
            self._outputs(outputs, enhanced)
        if not self._paused and not self._closed:
            self._process()
        return self._batch.take()

    def _line(self, line: bytes, following: int) -> bool:
        if self._delay_before(line):
            return False
        self._command(line, following)
        return True

    def _auth_line(self, line: bytes) -> None:
        self._auth_step(line)

    def _delay_before(self, line: bytes) -> bool:
        """Pause for the command delay before this command is processed
        (badsmtp(1), PORT MAP): a shutdown during the wait then finds the
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
        self._wait(Wait(delay))
        return True

    def _too_long(self, length: int) -> None:
        if self._recorder is not None:
            self._recorder.too_long(length)
        in_auth = self._reader is not self._lines
        if not in_auth and self._check.too_long(length):
            self._found()
        fields = {"command_length": length, "max_length": self._reader.limit}  # type: ignore[union-attr]
        self._batch.log(Log("WARN", "Command length limit exceeded", fields))
        if in_auth:
            self._reader = self._lines
            self._reply(replies.AUTH_LINE_TOO_LONG)
        else:
            self._verb = ""  # never parsed
            self._reply(replies.LINE_TOO_LONG)

    def _content(self, piece: bytes, size: int) -> None:
        """``size`` more octets of content; ``piece`` goes to the store if
        its delivery is open (empty for a chunk counted in advance)."""
        if size:
            self._message, over = self._message.grown(size, self.state.caps.size_limit)
            if over:
                self._abort_delivery()
        if piece and self._check.content(piece):
            self._found()
        if piece and self._message.open and self._stream and self._refusal is None:
            self._batch.act(Write(piece))
        if piece and self._content_left is not None:
            self._content_left -= len(piece)
            if self._content_left <= 0:
                self._drop()

    def _arm_drop(self, opening: bool) -> None:
        """At the start of a transaction's content, a ``dropafter<N>`` from
        MAIL FROM starts counting; N = 0 closes right after the 354 (DATA)
        or at the first chunk octet (BDAT)."""
        if not opening:
            return
        fault, self._content_left = self.state.fault, None  # a new transaction: its own count
        if fault is None or fault.kind != "dropafter":
            return
        self._content_left = fault.amount
        if fault.amount == 0 and self._message.open and type(self._reader) is DataReader:
            self._drop()

    def _drop(self) -> None:
        """Close without a reply, the message dropped (while its count lasts)."""
        fault, self._content_left = self.state.fault, None
        if fault is None or not may_fire(fault, self.ctx):
            return
        self._outputs([fault_fired(fault, octets=self._message.size), Abort(), Close()], False)

    def _end_of_data(self, following: int) -> None:
        self._content_left = None
        if self._recorder is not None:
            self._recorder.content_end(self._message.size)
        if self._check.message_end(self._message.size, self.state.caps, following):
            self._found()
        self._reader = self._lines
        self._apply(content.end_of_message(self.state, self._message, self.ctx))

    def _chunk_complete(self, last: bool) -> None:
        """Judge a BDAT chunk once all of it was read (RFC 3030 §2)."""
        self._reader = self._lines
        if last:
            self._content_left = None
        if self._refusal is not None:
            refusal, self._refusal = self._refusal, None
            self._outputs(refusal, self.state.caps.enhanced)
        else:
            if last and self._check.message_end(self._message.size, self.state.caps, 0):
                self._found()
            self._apply(content.chunk_read(self.state, self._message, last, self.ctx))

    # -- commands --------------------------------------------------------------------
    def _command(self, line: bytes, following: int) -> None:
        raw = line.strip()
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
        result = protocol.dispatch(self.state, verb, args, self.ctx)
        if self._check.command(line, verb, args, following, self.state, result[1]):
            self._found()
        self._apply(result, verb in ("HELO", "EHLO"))

    def _found(self) -> None:
        """The checker's findings: to the transcript, and one WARN record each."""
        found, self._check.found = self._check.found, []
        for finding in found:
            if self._findings is not None:
                self._findings.finding(finding)
            self._batch.log(Log("WARN", LOG_MESSAGE, finding.fields()))

    def _apply(self, result: Result, plain: bool = False) -> None:
        """A command's (or a verdict's) new state and outputs.  Replies to
        HELO and EHLO never carry enhanced codes (RFC 2034 §3)."""
        self.state, outputs = result
        if plain:  # only HELO and EHLO change the capabilities
            self._faults = self.state.caps.faults
        self._outputs(outputs, not plain and self.state.caps.enhanced)

    def _outputs(self, outputs: Sequence[protocol.Output], enhanced: bool) -> None:
        for out in outputs:  # a fired trigger is logged even when its 421 closes
            if type(out) is Log:
                self._batch.log(out)
                if self._recorder is not None and out.message.endswith(" triggered"):
                    self._recorder.fault(out.message, out.fields)  # a fault the client asked for
        for i, out in enumerate(outputs):
            kind = type(out)
            if kind is Reply:
                self._reply(out, enhanced)  # type: ignore[arg-type]
            elif kind is not Log:
                _EFFECTS[kind](self, out)
            if self._paused:  # the rest waits with it (EHLO dlay<N>'s reply)
                self._hold(outputs[i + 1 :], enhanced)
                return
            if self._closed:
                return

    def _hold(self, rest: Sequence[protocol.Output], enhanced: bool) -> None:
        kept = [out for out in rest if type(out) is not Log]  # logged already
        self._after = (kept, enhanced) if kept else None

    def _read_data_next(self, out: protocol.ReadData) -> None:
        self._batch.flush()  # DATA synchronises the pipeline (RFC 2920 §3.1)
        opening = self._begin()
        self._reader = DataReader()
        self._arm_drop(opening)

    def _read_chunk_next(self, out: protocol.ReadChunk) -> None:
        self._batch.flush()  # so does BDAT
        opening = self._begin()
        self._reader = ChunkReader(out.size, out.last)
        self._arm_drop(opening)
        # The size is known from the command: past the limit, the chunk is
        # still read but goes nowhere (RFC 3030 §2).
        self._content(b"", out.size)

    def _discard_chunk_next(self, out: protocol.DiscardChunk) -> None:
        self._batch.flush()  # a BDAT synchronises the pipeline, refused or not
        self._reader = ChunkReader(out.size, False)
        self._refusal = out.then

    def _accepted(self, out: Accepted) -> None:
        if self._notify:
            self._batch.note(out)

    def _authenticate_next(self, out: protocol.Authenticate) -> None:
        self._batch.flush()
        self._mechanism = out.mechanism
        self._authenticate(auth.exchange(out.mechanism, out.initial, self._next_challenge()))

    def _next_challenge(self) -> str:
        """Unique per exchange (RFC 2195 §2): the connection's, then numbered."""
        n, self._exchanges = self._exchanges, self._exchanges + 1
        return self._challenge if not n else f"<{n}.{self._challenge[1:]}"

    # -- AUTH exchange (RFC 4954 §4) ---------------------------------------------------
    def _authenticate(self, exchange: Generator[Reply, bytes, auth.Credentials | None]) -> None:
        self._reader = AuthReader(MAX_AUTH_LINE, self._mechanism, exchange)
        self._auth_step(None)

    def _auth_step(self, line: bytes | None) -> None:
        assert isinstance(self._reader, AuthReader)
        try:
            step = self._reader.step(line)
        except ReplyError as exc:  # the exchange failed
            self._reader = self._lines
            self._reply(exc.reply)
            return
        if isinstance(step, Reply):  # a 334 challenge (never enhanced), awaited
            self._reply(step, False)
            self._batch.flush()
            return
        self._reader = self._lines
        if step is not None:
            self._verified = step.username
            self._pause(Verify(step))

    # -- deliveries ----------------------------------------------------------------------
    def _begin(self) -> bool:
        """Open the transaction's delivery; whether it is a new one."""
        if not self._message.open and self.state.phase is Phase.RCPT:
            self._message = Transaction(open=True)
            if self._announce:
                self._batch.act(Begin(content.envelope(self.state, self._message)))
            return True
        return False

    def _abort_delivery(self, _: object = None) -> None:
        if self._message.open:
            self._message = self._message.closed()
            if self._stream:
                self._batch.act(Abort())


# What the session does with each output that is neither a reply nor a log
# nor a Wait (see ``_outputs``), and which method reads with each reader.
_EFFECTS: dict[type, Callable[[Session, Any], None]] = {
    protocol.ReadData: Session._read_data_next,
    protocol.ReadChunk: Session._read_chunk_next,
    protocol.DiscardChunk: Session._discard_chunk_next,
    protocol.Authenticate: Session._authenticate_next,
    Close: Session._close,
    Abort: Session._abort_delivery,
    StartTLS: Session._pause,  # what is pipelined after it goes at tls_started()
    Commit: Session._pause,
    Wait: Session._wait,
    Accepted: Session._accepted,
}
