"""Reply-framing faults (badsmtp(1), EHLO KEYWORDS; README, Breaking the
replies): words in the EHLO name that make every reply of the session, from
the reply to that EHLO on, leave in a shape a careless client parser trips
over.  Pure functions of the rendered reply: the octets to send and where
the writes are cut (``Send.cuts``).

- ``splitreplies``: each reply in two writes, cut in the middle of its first
  line (a client that expects one ``recv`` to hold a whole reply, or a whole
  line, sees half of one);
- ``bytereplies``: one octet per write (wins over ``splitreplies``);
- ``lfreplies``: every line ends in a bare LF instead of CRLF (RFC 5321
  §4.2: lines end in CRLF);
- ``longreplies``: every line padded with spaces to 2,000 octets before its
  line end (RFC 5321 §4.5.3.1.5 allows 512 with the CRLF);
- ``mixedreplies``: the EHLO reply's second line carries 251 instead of 250
  (the first line, if there is no capability line), although RFC 5321 §4.2.1
  wants the same code on every line of a multiline reply.  The last line
  keeps 250, so a client that reads only the last code sees success; one
  that checks every line rejects the reply.

Like the capability switches, they hold until a new HELO or EHLO, or
STARTTLS (RFC 5321 §4.1.4, RFC 3207 §4.2), and may be combined.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KEYWORDS", "LONG_LINE", "MIXED_CODE", "ReplyFaults", "frame", "reply_faults"]

KEYWORDS = ("splitreplies", "bytereplies", "lfreplies", "longreplies", "mixedreplies")
LONG_LINE = 2000  # octets before the line end
MIXED_CODE = b"251"


@dataclass(frozen=True, slots=True)
class ReplyFaults:
    """The reply-framing keywords an EHLO name holds, in :data:`KEYWORDS` order."""

    names: tuple[str, ...]

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.names

    def __str__(self) -> str:
        return " ".join(self.names)


def reply_faults(name: str) -> ReplyFaults | None:
    """The keywords in a lower-cased EHLO name, matched as substrings like
    the capability switches; None when there are none."""
    if "replies" not in name:  # the common case: one test
        return None
    names = tuple(keyword for keyword in KEYWORDS if keyword in name)
    return ReplyFaults(names) if names else None


def frame(data: bytes, faults: ReplyFaults, ehlo: bool) -> tuple[bytes, tuple[int, ...]]:
    """The octets of one rendered reply under ``faults`` and the offsets
    where a new write starts (empty: one write).  ``ehlo``: this is the
    reply to EHLO (``mixedreplies`` alters that one only)."""
    lines = data.split(b"\r\n")[:-1]  # every rendered line ends in CRLF
    if ehlo and "mixedreplies" in faults:
        at = 1 if len(lines) > 2 else 0
        lines[at] = MIXED_CODE + lines[at][3:]
    if "longreplies" in faults:
        lines = [line.ljust(LONG_LINE) for line in lines]
    end = b"\n" if "lfreplies" in faults else b"\r\n"
    out = end.join(lines) + end
    if "bytereplies" in faults:
        return out, tuple(range(1, len(out)))
    if "splitreplies" in faults:
        return out, (max(len(lines[0]) // 2, 1),)
    return out, ()

