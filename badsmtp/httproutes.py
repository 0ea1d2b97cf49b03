"""The endpoints of the inspection API (badsmtp(1), INSPECTION API): one
table of paths, each with the function of every method it allows.  Each
function takes the server (its inbox, transcripts and stop event) and the
request's query, and returns the status, the body and its type; anything
else raises :class:`HTTPError`.  No path reaches the filesystem: a message
id is a key of the inbox, an asset a name of the package's web files."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .inbox import Inbox
from .inspect_json import message_detail, message_summary, session_detail, session_summary
from .transcriptlog import TranscriptLog

__all__ = ["JSON", "MAX_WAIT", "HTTPError", "query", "route"]

JSON = "application/json; charset=utf-8"
MAX_WAIT = 600.0  # seconds a ?wait= may block, at most
_ASSET = re.compile(r"[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico)\Z")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "css": "text/css; charset=utf-8", "svg": "image/svg+xml", "png": "image/png",
          "ico": "image/x-icon"}  # fmt: skip
_LIST_PARAMS = ("wait", "count", "limit")

Answer = tuple[int, bytes, str]


class Served(Protocol):
    """What the endpoints need of the server."""

    inbox: Inbox
    transcripts: TranscriptLog
    reset_triggers: Callable[[], None]

    @property
    def stopping(self) -> Any: ...


class HTTPError(Exception):
    """An answer other than 200: its status, its one-line error, and any
    extra fields of the body and headers."""

    def __init__(
        self, status: int, error: str, extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(error)
        self.status, self.error = status, error
        self.extra, self.headers = extra or {}, headers or {}


def _json(value: Any, status: int = 200) -> Answer:
    """A JSON body, ending in a newline: ``curl -s`` output then ends a line."""
    return status, json.dumps(value).encode() + b"\n", JSON


def query(text: str, allowed: tuple[str, ...]) -> dict[str, float]:
    """The numeric parameters of a query string, each non-negative and
    finite (and whole, but ``wait``), else a 400.  Other names are ignored
    (a cache-buster)."""
    try:
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise HTTPError(400, "malformed query string") from None
    values: dict[str, float] = {}
    for name, given in pairs.items():
        if name not in allowed:
            continue
        try:
            number = float(given[-1])
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise HTTPError(400, f"{name} must be a non-negative number, not {given[-1]!r}")
        if name != "wait" and not number.is_integer():
            raise HTTPError(400, f"{name} must be a whole number, not {given[-1]!r}")
        values[name] = number
    return values


def _wait(
    server: Served,
    params: dict[str, float],
    wait: Callable[[int, float, Callable[[], bool]], bool],
    total: Callable[[], int],
    what: str,
) -> None:
    """``?wait=SECONDS&count=N``: block until ``wait`` says N are there, or
    answer 408 after SECONDS (at most MAX_WAIT) or when the server stops."""
    if "wait" not in params:
        return
    count = int(params.get("count", 1))
    seconds = min(params["wait"], MAX_WAIT)
    if not wait(count, seconds, server.stopping.is_set):
        raise HTTPError(408, f"fewer than {count} {what} after {seconds:g} s", {"total": total()})


# -- messages ---------------------------------------------------------------------------
def list_messages(server: Served, params: dict[str, float]) -> Answer:
    inbox = server.inbox
    _wait(server, params, inbox.wait, lambda: inbox.newest(0)[0], "message(s)")
    limit = int(params["limit"]) if "limit" in params else None
    total, entries = inbox.newest(limit)
    summaries = [message_summary(inbox, e) for e in entries]
    return _json({"total": total, "count": len(summaries), "messages": summaries})


def delete_messages(server: Served, params: dict[str, float]) -> Answer:
    return _json({"deleted": server.inbox.clear()})


def _entry(server: Served, message_id: str) -> Any:
    entry = server.inbox.get(message_id)
    if entry is None:
        raise HTTPError(404, f"no message {message_id}")
    return entry


def get_message(server: Served, params: dict[str, float], message_id: str) -> Answer:
    return _json(message_detail(server.inbox, _entry(server, message_id)))


def get_raw(server: Served, params: dict[str, float], message_id: str) -> Answer:
    content = server.inbox.raw(_entry(server, message_id))
    if content is None:
        raise HTTPError(410, f"the content of {message_id} is no longer kept")
    return 200, content, "message/rfc822"


# -- sessions ---------------------------------------------------------------------------
def list_sessions(server: Served, params: dict[str, float]) -> Answer:
    transcripts = server.transcripts
    _wait(server, params, transcripts.wait_ended, lambda: len(transcripts.snapshot()),
          "session(s) ended")  # fmt: skip
    kept = transcripts.snapshot()[::-1]
    shown = kept[: int(params["limit"])] if "limit" in params else kept
    summaries = [session_summary(t) for t in shown]
    return _json({"total": len(kept), "count": len(summaries), "sessions": summaries})


def delete_sessions(server: Served, params: dict[str, float]) -> Answer:
    return _json({"deleted": server.transcripts.clear()})


def get_session(server: Served, params: dict[str, float], session_id: str) -> Answer:
    transcript = server.transcripts.get(session_id)
    if transcript is None:
        raise HTTPError(404, f"no session {session_id}")
    return _json(session_detail(transcript, server.inbox))


def reset(server: Served, params: dict[str, float]) -> Answer:
    """Forget the retry counters (x<N> triggers), the messages and the sessions."""
    server.reset_triggers()
    server.inbox.clear()
    server.transcripts.clear()
    return _json({"reset": True})


# -- the web page (README, From any language) --------------------------------------------
def asset(server: Served, params: dict[str, float], name: str = "index.html") -> Answer:
    match = _ASSET.match(name)
    if match is None:
        raise HTTPError(404, f"no asset {name}")
    from importlib import resources

    try:
        data = resources.files("badsmtp").joinpath("web", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise HTTPError(404, f"no asset {name}") from None
    return 200, data, _TYPES[match.group(1)]


Endpoint = Callable[..., Answer]
# path pattern -> {method: endpoint, "": the query parameters it reads}
ROUTES: tuple[tuple[re.Pattern[str], dict[str, Endpoint], tuple[str, ...]], ...] = (
    (re.compile(r"/api/v1/messages\Z"), {"GET": list_messages, "DELETE": delete_messages}, _LIST_PARAMS),
    (re.compile(r"/api/v1/message/([^/]+)\Z"), {"GET": get_message}, ()),
    (re.compile(r"/api/v1/message/([^/]+)/raw\Z"), {"GET": get_raw}, ()),
    (re.compile(r"/api/v1/sessions\Z"), {"GET": list_sessions, "DELETE": delete_sessions}, _LIST_PARAMS),
    (re.compile(r"/api/v1/session/([^/]+)\Z"), {"GET": get_session}, ()),
    (re.compile(r"/api/v1/reset\Z"), {"POST": reset}, ()),
    (re.compile(r"/\Z"), {"GET": asset}, ()),
    (re.compile(r"/static/([^/]+)\Z"), {"GET": asset}, ()),
)  # fmt: skip


def route(server: Served, method: str, target: str) -> Answer:
    """The answer to ``method`` on ``target`` (the request line's path and query)."""
    parts = urlsplit(target)
    for pattern, methods, allowed in ROUTES:
        match = pattern.match(parts.path)
        if match is None:
            continue
        endpoint = methods.get("GET" if method == "HEAD" else method)
        if endpoint is None:
            allow = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
            raise HTTPError(405, f"{method} is not allowed on {parts.path}", headers={"Allow": allow})
        return endpoint(server, query(parts.query, allowed), *match.groups())
    raise HTTPError(404, f"no such path: {parts.path}")
