"""Compliance findings: what a client did wrong, by the RFCs (README, What
your client did wrong).

A finding never changes a reply: badsmtp misbehaves only when asked.  The
session (pure) notes each one as a :class:`Finding`; the shell logs it as
one WARN record (``SMTP client protocol finding``) and the transcript
keeps it (``transcript.findings``, ``server.findings``).

Each code has one entry in :data:`CATALOGUE`: the RFC section it cites and
its class, ``error`` (a protocol violation) or ``warning`` (allowed, but
unwise).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .commands import extract_path
from .replies import Reply, ReplyError

if TYPE_CHECKING:
    from .state import State
    from .triggers import Capabilities

__all__ = ["CATALOGUE", "LOG_MESSAGE", "Checker", "Finding", "finding"]

LOG_MESSAGE = "SMTP client protocol finding"  # the WARN record of each (badsmtp(1), LOGGING)


@dataclass(frozen=True, slots=True)
class Finding:
    """One client protocol fault: a short ``code``, the ``rfc`` section it
    breaks, the ``command`` it concerns (the verb, ``DATA`` for content,
    ``""`` for the connection) and a one-line ``explanation``."""

    code: str
    rfc: str
    command: str
    explanation: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f" [{self.command}]" if self.command else ""
        return f"{self.severity} {self.code}{where}: {self.explanation} ({self.rfc})"

    def fields(self) -> dict[str, Any]:
        """The fields of its log record and of its JSON (README, What your
        client did wrong)."""
        return {
            "code": self.code,
            "rfc": self.rfc,
            "command": self.command,
            "explanation": self.explanation,
            "severity": self.severity,
        }


# code -> (RFC section, class); README, What your client did wrong.
CATALOGUE: dict[str, tuple[str, str]] = {
    "pipelining-not-advertised": ("RFC 2920 §3.1", "error"),
    "pipelined-past-sync-point": ("RFC 2920 §3.1", "error"),
    "data-before-354": ("RFC 2920 §3.1; RFC 5321 §4.1.1.4", "error"),
    "after-quit": ("RFC 2920 §3.1; RFC 5321 §4.1.1.10", "error"),
    "after-421": ("RFC 2920 §3.1; RFC 5321 §3.8", "error"),
    "bare-lf": ("RFC 5321 §2.3.8", "error"),
    "bare-cr": ("RFC 5321 §2.3.8", "error"),
    "command-too-long": ("RFC 5321 §4.5.3.1.4", "error"),
    "line-too-long": ("RFC 5321 §4.5.3.1.6", "error"),
    "8bit-without-8bitmime": ("RFC 6152 §3", "error"),
    "utf8-address-without-smtputf8": ("RFC 6531 §3.4", "error"),
    "no-ehlo-after-starttls": ("RFC 3207 §4.2", "error"),
    "auth-cleartext-without-tls": ("RFC 4954 §4; RFC 4616 §6", "warning"),
    # The declared size is the client's estimate (RFC 1870 §5), and a server
    # that advertised a limit expects to refuse bigger messages with a 552
    # (RFC 1870 §4): unwise, not forbidden.
    "size-exceeds-declared": ("RFC 1870 §5", "warning"),
    "size-exceeds-advertised": ("RFC 1870 §4", "warning"),
    "no-quit": ("RFC 5321 §4.1.1.10", "error"),
}
# Where a verb's own RFC also says it ends a pipelined group.
_SYNC_RFC = {
    "STARTTLS": "RFC 2920 §3.1; RFC 3207 §4.2",
    "AUTH": "RFC 2920 §3.1; RFC 4954 §4",
}


def finding(code: str, command: str, explanation: str, rfc: str = "") -> Finding:
    """The finding ``code`` (one of :data:`CATALOGUE`) about ``command``;
    ``rfc`` replaces the catalogue's section where a verb has its own."""
    cited, severity = CATALOGUE[code]
    return Finding(code, rfc or cited, command, explanation, severity)


# RFC 2920 §3.1: these end a pipelined group (the client waits for their
# reply), as do STARTTLS (RFC 3207 §4.2) and AUTH (RFC 4954 §4); HELO too,
# which ends what EHLO offered.  DATA and QUIT have codes of their own.
_SYNC = frozenset({"EHLO", "HELO", "STARTTLS", "AUTH", "NOOP", "VRFY", "EXPN", "TURN"})
_AFTER_TLS = frozenset({"EHLO", "HELO", "QUIT"})  # RFC 3207 §4.2: EHLO first (QUIT ends it)
_CLEARTEXT = frozenset({"PLAIN", "LOGIN"})  # RFC 4616 §6: the password as sent
_EIGHT_BIT = frozenset({"8BITMIME", "BINARYMIME"})
MAX_COMMAND = 512  # octets with the CRLF (RFC 5321 §4.5.3.1.4)
MAX_TEXT_LINE = 1000  # octets with the CRLF (RFC 5321 §4.5.3.1.6)
# What bytes.translate deletes to leave only a piece's CRs and LFs.
_NOT_CR_LF = bytes(octet for octet in range(256) if octet not in b"\r\n")
_LONG_LINE = re.compile(rb"[^\n]{%d}" % MAX_TEXT_LINE)  # with its LF, over the limit


def _octets(n: int) -> str:
    return f"{n:,} octet" + ("" if n == 1 else "s")


@dataclass(frozen=True, slots=True)
class _Offered:
    """What an EHLO reply offered, read once per capability set."""

    pipelining: bool
    starttls: bool
    size: bool


def _offered(caps: Capabilities) -> _Offered:
    lines = caps.ehlo.lines if caps.ehlo is not None else ()
    return _Offered(
        "PIPELINING" in lines, "STARTTLS" in lines, any(line[:4] == "SIZE" for line in lines)
    )


class Checker:
    """The compliance checks of one session (README, What your client did
    wrong), pure: the session tells it what it read, it calls ``note`` with
    each finding.  Per command a few C-level tests; per piece of content
    three counts and a split.  Faults that could repeat on every line or
    message (bare LF or CR, over-long lines, 8-bit content, UTF-8 addresses)
    are noted once per session for commands and once for content."""

    __slots__ = (
        "_binary", "_caps", "_content", "_cr", "_declared", "_eight_bit", "_note",
        "_offers", "_partial", "_seen", "_smtputf8", "_tls_new",
    )  # fmt: skip

    def __init__(self, note: Callable[[Finding], None]) -> None:
        self._note = note
        self._seen: set[tuple[str, bool]] = set()  # (code, in content) noted once
        self._caps: Capabilities | None = None
        self._offers = _Offered(False, False, False)
        self._tls_new = False  # STARTTLS's handshake done, no command since
        # Declared on the last MAIL FROM (RFC 1870, RFC 6152, RFC 3030, RFC 6531).
        self._declared: int | None = None
        self._eight_bit = False
        self._binary = False
        self._smtputf8 = False
        self._content = "DATA"  # what carries the content: DATA or BDAT
        self._cr = False  # the last piece of content ended with a CR
        self._partial = 0  # octets of the text line not yet ended

    def _offered(self, caps: Capabilities) -> _Offered:
        if caps is not self._caps:
            self._caps, self._offers = caps, _offered(caps)
        return self._offers

    def _once(self, code: str, content: bool, command: str, explanation: str) -> None:
        if (code, content) not in self._seen:
            self._seen.add((code, content))
            self._note(finding(code, command, explanation))

    # -- commands ----------------------------------------------------------------
    def command(
        self, line: bytes, verb: str, args: list[str], following: int,
        state: State, outputs: Sequence[object],
    ) -> None:  # fmt: skip
        """``line`` (before its LF) was read as ``verb`` in ``state``,
        ``following`` octets after it in the buffer, and is answered by
        ``outputs`` (nothing applied yet)."""
        cr = line.find(b"\r")
        if cr != len(line) - 1:  # the first CR is not the one before the LF
            self._line_ends(line, verb, cr)
        if len(line) >= MAX_COMMAND:
            self._long_command(line, verb)
        if self._tls_new:
            self._tls_new = False
            if verb not in _AFTER_TLS:
                self._note(finding(
                    "no-ehlo-after-starttls", verb, f"{verb} was sent after STARTTLS, before EHLO"
                ))  # fmt: skip
        if following:
            self._followed(verb, following, state.caps, outputs)
        check = _VERBS.get(verb)
        if check is not None:
            check(self, line, args, state)

    def _line_ends(self, line: bytes, verb: str, cr: int) -> None:
        if line[-1:] != b"\r":
            self._once("bare-lf", False, verb, f"{verb} ended with a bare LF, not CRLF")
        if 0 <= cr < len(line) - 1:
            self._once("bare-cr", False, verb, f"{verb} held a bare CR")

    def too_long(self, length: int) -> None:
        """A command line past badsmtp's own limit (refused with a 500)."""
        self._once("command-too-long", False, "", f"a command line of {_octets(length + 1)}")

    def _long_command(self, line: bytes, verb: str) -> None:
        """RFC 5321 §4.5.3.1.4, counted without MAIL and RCPT parameters
        (extensions lengthen those lines: RFC 1870 §3, RFC 4954 §5) and
        never for AUTH (RFC 4954 §4 allows 12,288 octets)."""
        if verb == "AUTH":
            return
        length = len(line) + (line[-1:] != b"\r") + 1  # as if ended by CRLF
        if verb in ("MAIL", "RCPT"):
            end = line.find(b">")
            length = length if end < 0 else end + 3
        if length > MAX_COMMAND:
            self._once("command-too-long", False, verb, f"{verb} was {_octets(length)} long")

    def _followed(
        self, verb: str, following: int, caps: Capabilities, outputs: Sequence[object]
    ) -> None:
        """``following`` octets came after ``verb`` before its reply (a
        reply leaves only once the buffer up to there is read)."""
        if verb == "BDAT":  # its chunk follows it, and BDAT may be pipelined (RFC 3030 §4.2)
            return
        pipelining = self._offered(caps).pipelining
        allowed = pipelining and verb not in _SYNC and verb not in ("DATA", "QUIT")
        said = f"{_octets(following)} followed {verb} before its reply"
        if verb == "QUIT":
            code = "after-quit"
        elif any(type(out) is Reply and out.code == 421 for out in outputs):
            if allowed:
                return
            code, said = "after-421", said + ", which was a 421"
        elif verb == "DATA":
            code, said = "data-before-354", f"{_octets(following)} followed DATA before its 354"
        elif not pipelining:
            code, said = "pipelining-not-advertised", said + " and PIPELINING was not advertised"
        elif verb in _SYNC:
            code = "pipelined-past-sync-point"
        else:
            return
        rfc = _SYNC_RFC.get(verb, "") if code == "pipelined-past-sync-point" else ""
        self._note(finding(code, verb, said, rfc))

    def _mail(self, line: bytes, args: list[str], state: State) -> None:
        """What MAIL FROM declared for its transaction (RFC 1870 §6, RFC
        6152 §3, RFC 3030 §3, RFC 6531 §3.4)."""
        self._declared, self._eight_bit, self._binary, self._smtputf8 = None, False, False, False
        self._cr, self._partial = False, 0
        for param in args[1:]:
            key, _, value = param.upper().partition("=")
            if key == "SIZE" and value.isdigit() and value.isascii():
                self._declared = int(value)
            elif key == "BODY":
                self._eight_bit, self._binary = value in _EIGHT_BIT, value == "BINARYMIME"
            elif key == "SMTPUTF8" and not value:
                self._smtputf8 = True
        self._address(line, args, "MAIL", "FROM:")

    def _rcpt(self, line: bytes, args: list[str], state: State) -> None:
        self._address(line, args, "RCPT", "TO:")

    def _address(self, line: bytes, args: list[str], verb: str, prefix: str) -> None:
        if line.isascii() or self._smtputf8:
            return
        try:
            path = extract_path(args, prefix)[0]
        except ReplyError:
            return
        if not path.isascii():
            explanation = f"{verb} named {path} without SMTPUTF8 on MAIL FROM"
            self._once("utf8-address-without-smtputf8", False, verb, explanation)

    def _auth(self, line: bytes, args: list[str], state: State) -> None:
        mechanism = args[0].upper() if args else ""
        if mechanism in _CLEARTEXT and not state.tls and self._offered(state.caps).starttls:
            explanation = f"AUTH {mechanism} over plain text while STARTTLS was offered"
            self._note(finding("auth-cleartext-without-tls", "AUTH", explanation))

    def _data(self, line: bytes, args: list[str], state: State) -> None:
        self._content = "DATA"

    def _bdat(self, line: bytes, args: list[str], state: State) -> None:
        self._content = "BDAT"

    # -- content -------------------------------------------------------------------------
    def content(self, piece: bytes) -> None:
        """A piece of the message's content (DATA unstuffed, or BDAT
        chunk octets): CR and LF only as CRLF (RFC 5321 §2.3.8), text lines
        up to 1,000 octets (§4.5.3.1.6), 8-bit octets only when declared
        (RFC 6152 §3).  Not for BODY=BINARYMIME (RFC 3030 §3).  C-level
        scans only: this runs for every piece of every message."""
        if self._binary:
            return
        ends = piece.translate(None, _NOT_CR_LF)  # its CRs and LFs, in order
        if self._cr:  # the last piece ended with a CR: it may start a CRLF
            ends = b"\r" + ends
        self._cr = ends[-1:] == b"\r"
        if self._cr:
            ends = ends[:-1]
        crlf = ends.count(b"\r\n")
        if crlf * 2 != len(ends):
            self._bare(ends, crlf)
        self._line_lengths(piece)
        if not self._eight_bit and not piece.isascii():
            explanation = "the message content held 8-bit octets without BODY=8BITMIME"
            self._once("8bit-without-8bitmime", True, self._content, explanation)

    def _bare(self, ends: bytes, crlf: int) -> None:
        if ends.count(b"\n") > crlf:
            self._once("bare-lf", True, self._content, "the message content held a bare LF")
        if ends.count(b"\r") > crlf:
            self._once("bare-cr", True, self._content, "the message content held a bare CR")

    def _line_lengths(self, piece: bytes) -> None:
        """Lines counted up to their LF, their CR included."""
        first = piece.find(b"\n")
        if first < 0:
            self._partial += len(piece)
            self._long_line(self._partial)
            return
        self._long_line(self._partial + first)
        last = piece.rfind(b"\n")
        if last - first > MAX_TEXT_LINE:  # room for a whole line too long between them
            long = _LONG_LINE.search(piece, first + 1, last)
            if long is not None:
                self._long_line(long.end() - long.start())
        self._partial = len(piece) - last - 1

    def _long_line(self, length: int) -> None:
        """A text line of ``length`` octets before its LF (or so far)."""
        if length >= MAX_TEXT_LINE:
            explanation = f"a text line of over {_octets(MAX_TEXT_LINE)} in the message content"
            self._once("line-too-long", True, self._content, explanation)

    def message_end(self, size: int, caps: Capabilities, following: int) -> None:
        """The content is complete, ``size`` octets (RFC 1870 §5), and
        ``following`` octets came after DATA's final dot before its reply."""
        verb, self._cr, self._partial = self._content, False, 0
        if self._declared is not None and size > self._declared:
            explanation = f"the message was {_octets(size)}, SIZE={self._declared} was declared"
            self._note(finding("size-exceeds-declared", verb, explanation))
        offers = self._offered(caps)
        if offers.size and size > caps.size_limit:
            explanation = f"the message was {_octets(size)}, SIZE {caps.size_limit} was advertised"
            self._note(finding("size-exceeds-advertised", verb, explanation))
        if following and not offers.pipelining:
            explanation = (
                f"{_octets(following)} followed the end of the message before its reply"
                " and PIPELINING was not advertised"
            )
            self._note(finding("pipelining-not-advertised", verb, explanation))

    # -- the session -----------------------------------------------------------------
    def tls_started(self) -> None:
        """STARTTLS's handshake succeeded: EHLO must come first (RFC 3207 §4.2)."""
        self._tls_new = True

    def client_closed(self) -> None:
        """The client closed the connection while the session was open."""
        self._note(finding("no-quit", "", "the client closed the connection without QUIT"))


_VERBS: dict[str, Callable[[Checker, bytes, list[str], State], None]] = {
    "MAIL": Checker._mail,
    "RCPT": Checker._rcpt,
    "AUTH": Checker._auth,
    "DATA": Checker._data,
    "BDAT": Checker._bdat,
}
