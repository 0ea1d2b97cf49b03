"""The inspection API and web page (badsmtp(1), INSPECTION API; README, From
any language): JSON over HTTP from the server's own process, so any
language's test suite can ask what its client did.

``http.server``'s threading server, one thread per request, HTTP/1.0 (one
request per connection: nothing idles between requests).  Its one
listening socket is served by a thread that a stop wakes at once; a stop
also wakes every request waiting (``?wait=``) and shuts the sockets of
those still reading, then joins their threads.  Every answer is JSON, an
error too (``{"error": ..., "status": ...}``), never a traceback.
"""

from __future__ import annotations

import json
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from . import __version__
from .httproutes import JSON, HTTPError, route

if TYPE_CHECKING:
    from .inbox import Inbox
    from .transcriptlog import TranscriptLog

__all__ = ["InspectionServer"]

log = logging.getLogger("badsmtp.http")
READ_TIMEOUT = 10.0  # for a client to send its whole request
STOP_GRACE = 1.0  # seconds a stop leaves the woken requests to answer
MAX_BODY = 64 * 1024  # a request body (none is needed) is read and ignored up to this
# The page's own scripts, styles and requests, its data: favicon, nothing else.
CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


class InspectionServer(ThreadingHTTPServer):
    """The HTTP server of one BadSMTP: bound in the constructor (port 0
    needs no readiness dance), served by :meth:`start`, ended by :meth:`stop`."""

    daemon_threads = False
    block_on_close = True  # server_close() joins the request threads

    def __init__(
        self,
        address: str,
        port: int,
        inbox: Inbox,
        transcripts: TranscriptLog,
        reset_triggers: Callable[[], None],
        record_error: Callable[[BaseException], None],
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.inbox, self.transcripts = inbox, transcripts
        self.reset_triggers, self.record_error = reset_triggers, record_error
        self.stopping = threading.Event()
        self._live: set[socket.socket] = set()
        self._lock = threading.Condition()  # notified as each request ends
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        try:
            super().__init__((address, port), _Handler)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise
        self.socket.setblocking(False)
        self.port: int = self.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept, name="badsmtp-http", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._handle_request_noblock()  # type: ignore[attr-defined]  # a failed accept() is skipped

    def stop(self) -> None:
        """Stop accepting, wake every waiting request, cut off the ones
        still reading, and join them all."""
        self.stopping.set()
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join()
        self.inbox.wake()
        self.transcripts.wake()
        with self._lock:  # woken requests answer; one still reading its request is cut off
            self._lock.wait_for(lambda: not self._live, STOP_GRACE)
            live = list(self._live)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self._lock:
            self._live.discard(request)
            self._lock.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("HTTP connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: InspectionServer
    protocol_version = "HTTP/1.0"  # one request per connection
    server_version = f"badsmtp/{__version__}"
    sys_version = ""
    timeout = READ_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("HTTP %s: " + format, self.address_string(), *args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a garbage request line, headers too
        long, an unknown method) as JSON too."""
        text = message or HTTPStatus(code).phrase
        if self.request_version == "HTTP/0.9":  # a request line it could not parse:
            self.request_version = "HTTP/1.0"  # still a status line and headers
        self._answer(HTTPError(code, text))

    # Every method comes here; the route says which it allows.
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        try:
            self._discard_body()
            status, body, content_type = route(self.server, method, self.path)
            self._send(status, body, content_type)
        except HTTPError as exc:
            self._answer(exc)
        except OSError:
            self.close_connection = True  # the client went away
        except Exception as exc:  # a bug: answer 500 and record it, keep serving
            log.exception("internal error answering %s %s", method, self.path)
            self.server.record_error(exc)
            self._answer(HTTPError(500, f"internal error: {type(exc).__name__}"))

    def _discard_body(self) -> None:
        """Read any request body (none is needed), so closing the socket
        with it unread does not reset the connection before our answer."""
        length = self.headers.get("Content-Length")
        if length is None:
            return
        try:
            size = int(length)
        except ValueError:
            raise HTTPError(400, "invalid Content-Length") from None
        if size > MAX_BODY or size < 0:
            raise HTTPError(413, "request body too large")
        if size:
            self.rfile.read(size)

    def _answer(self, exc: HTTPError) -> None:
        body = json.dumps({"error": exc.error, "status": exc.status, **exc.extra}).encode() + b"\n"
        try:
            self._send(exc.status, body, JSON, exc.headers)
        except OSError:
            self.close_connection = True

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")  # /raw is never rendered as a page
        if content_type.startswith("text/html"):  # the page loads nothing from elsewhere
            self.send_header("Content-Security-Policy", CSP)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if getattr(self, "command", "") != "HEAD":
            self.wfile.write(body)
