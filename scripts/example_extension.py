#!/usr/bin/env python3
"""An example badsmtp extension: two small classes, installed from Python.

- :class:`MessagesPerConnection`, a rate limiter: at most ``limit`` messages
  per connection.  The next MAIL FROM on that connection gets
  ``451 4.7.1 {reason}``; a new connection starts again from zero.
- :class:`CallbackStore`, a message store: it collects each message's content
  as it streams in and hands ``(message, content)`` to a callback once the
  server has committed it.  Aborted transactions (RSET, size limit, a
  disconnect…) never reach the callback.

Run it to see both at work (a server on an ephemeral port, three messages
sent with smtplib over one connection, the third refused)::

    python scripts/example_extension.py

The interfaces are in ``badsmtp/extensions.py``; every method is optional in
the sense that the defaults (allow everything, store nothing extra) apply to
whatever you do not install.  An extension that raises is logged at ERROR and
answered with the documented refusal; it never kills a session.
"""

from __future__ import annotations

import smtplib
import threading
from collections import Counter
from collections.abc import Callable

from badsmtp import BadSMTP, Message, User


class MessagesPerConnection:
    """A :class:`badsmtp.RateLimiter`: ``limit`` messages per connection.

    badsmtp gives the limiter the client address, not the connection, so the
    count is per address and reset when that address's connection ends —
    exactly "per connection" for a test client that connects once at a time.
    """

    def __init__(self, limit: int, reason: str = "Too many messages on this connection") -> None:
        self.limit = limit
        self.reason = reason
        self._sent: Counter[str] = Counter()
        self._lock = threading.Lock()  # one handler thread per connection

    def allow_connection(self, client_ip: str) -> tuple[bool, str]:
        return True, ""

    def record_connection(self, client_ip: str) -> None:
        with self._lock:
            self._sent[client_ip] = 0

    def release_connection(self, client_ip: str) -> None:
        with self._lock:
            self._sent.pop(client_ip, None)

    def allow_message(self, user: User | None, client_ip: str) -> tuple[bool, str]:
        with self._lock:
            if self._sent[client_ip] >= self.limit:
                return False, self.reason
        return True, ""

    def record_message(self, user: User | None, client_ip: str) -> None:
        with self._lock:
            self._sent[client_ip] += 1


class _CallbackDelivery:
    def __init__(self, callback: Callable[[Message, bytes], None]) -> None:
        self._callback = callback
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._chunks.append(data)

    def commit(self, message: Message) -> None:
        # ``message`` is complete here: envelope, size, headers, timestamp.
        self._callback(message, b"".join(self._chunks))

    def abort(self) -> None:
        self._chunks = []


class CallbackStore:
    """A :class:`badsmtp.MessageStore` that posts each committed message to
    ``callback(message, content)``.  Raise
    :class:`badsmtp.MailboxUnavailable` (550) or
    :class:`badsmtp.QuotaExceeded` (452) from the callback to refuse the
    message; any other exception is answered 451."""

    def __init__(self, callback: Callable[[Message, bytes], None]) -> None:
        self.callback = callback

    def begin(self, message: Message) -> _CallbackDelivery:
        return _CallbackDelivery(self.callback)


def main() -> int:
    def show(message: Message, content: bytes) -> None:
        print(f"stored: {message.sender} -> {', '.join(message.recipients)}, "
              f"{message.size} octets, Subject: {message.headers.get('Subject')}")

    server = BadSMTP(ports=[0], rate_limiter=MessagesPerConnection(2),
                     message_store=CallbackStore(show))
    with server, smtplib.SMTP(server.host, server.port) as client:
        for n in (1, 2, 3):
            body = f"Subject: message {n}\r\n\r\nHello.\r\n"
            try:
                client.sendmail("alice@example.com", ["bob@example.com"], body)
            except smtplib.SMTPSenderRefused as exc:
                print(f"message {n} refused: {exc.smtp_code} {exc.smtp_error.decode()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
