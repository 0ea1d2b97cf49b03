"""One connection's side of the message store: what the shell does for the
Begin, Write, Commit and Abort actions (:mod:`badsmtp.actions`).

It opens a delivery in the configured store (:mod:`badsmtp.storage`),
streams the content to it while keeping the start for the ``headers`` of
the Message, and remembers a ``begin``/``write`` failure with the delivery it
belongs to, to answer that delivery's Commit with it: the session may have
read far ahead in a pipeline by the time the failing write runs.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from .storage import HEADER_LIMIT, Delivery, Message, MessageStore, error_reply, parse_headers

if TYPE_CHECKING:
    from .actions import Envelope
    from .inbox import Inbox
    from .replies import Reply
    from .sessionlog import SessionLog

__all__ = ["Deliveries"]

log = logging.getLogger("badsmtp.server")


class Deliveries:
    """The store's deliveries for one connection, one open at a time.

    ``keep`` asks for the accepted :class:`Message` to be kept in
    :attr:`accepted` (for observers) even when storage is off.  With an
    ``inbox`` (the inspection API), each accepted message gets an entry
    there (its id in :attr:`accepted_id`): its maildir file, or with storage
    off its content, collected here as it streams past."""

    def __init__(
        self,
        store: MessageStore | None,
        slog: SessionLog,
        client_ip: str,
        identity: str,
        keep: bool,
        inbox: Inbox | None = None,
    ) -> None:
        self.store = store
        self.slog = slog
        self.client_ip = client_ip
        self.identity = identity
        self.keep = keep
        self.accepted: Message | None = None
        self._delivery: Delivery | None = None
        self._failed: Reply | None = None  # why the open delivery failed
        self._head = b""  # the start of the content, for Message.headers
        self.inbox = inbox
        self.accepted_id = ""  # the inbox entry of the last message accepted
        self._chunks: list[bytes] | None = None  # the content, for an inbox without storage

    def message(self, env: Envelope) -> Message:
        return Message(
            session_id=self.slog.session_id,
            sender=env.sender,
            recipients=env.recipients,
            size=env.size,
            client_ip=self.client_ip,
            hostname=self.identity,
            helo=env.helo,
            tls_used=env.tls,
            user=env.user,
            timestamp=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            headers=parse_headers(self._head) if self._head else {},
        )

    def begin(self, env: Envelope) -> None:
        if self.store is None:  # only the inbox, content in memory: logged as storage off is
            self._chunks = []
            return
        self.abort()  # the session ends each delivery before the next: never two open
        self.slog.message_started(env)
        if self.inbox is not None and self.inbox.in_memory:
            self._chunks = []
        try:
            self._delivery = self.store.begin(self.message(env))
        except Exception as exc:  # noqa: BLE001 - a store's failure is the message's
            self._store_failed(exc)

    def write(self, data: bytes) -> None:
        if self._chunks is not None:
            self._chunks.append(data)
        delivery = self._delivery
        if delivery is None:
            return
        if len(self._head) < HEADER_LIMIT:
            self._head += data[: HEADER_LIMIT - len(self._head)]
        try:
            delivery.write(data)
        except Exception as exc:  # noqa: BLE001
            self.abort()
            self._store_failed(exc)

    def _store_failed(self, exc: Exception) -> None:
        """Pass nothing more to the store; the delivery's Commit answers
        with this failure."""
        self.slog.message_failed(self.store, exc)
        self._failed = error_reply(exc)

    def commit(self, env: Envelope) -> Reply | None:
        """Commit the open delivery: None, or the reply for its failure."""
        delivery, self._delivery = self._delivery, None
        failed, self._failed = self._failed, None
        if failed is not None:  # logged when it happened
            return failed
        if delivery is None:  # storage off: counted and discarded
            if self.keep:
                self.accepted = self.message(env)
            self.slog.message_stored(env, None, None)
            self._to_inbox(env, None)
            return None
        message = self.accepted = self.message(env)
        try:
            delivery.commit(message)
        except Exception as exc:  # noqa: BLE001
            self.slog.message_failed(self.store, exc, env)
            return error_reply(exc)
        self.slog.message_stored(env, self.store, delivery)
        self._to_inbox(env, delivery)
        return None

    def _to_inbox(self, env: Envelope, delivery: Delivery | None) -> None:
        """The accepted message's inbox entry: its content, or the maildir
        file it was stored in and where the content starts there."""
        inbox, chunks, self._chunks = self.inbox, self._chunks, None
        if inbox is None:
            return
        entry = inbox.entry(env, self.slog.session_id, self.client_ip)
        if chunks is not None:
            entry.body = b"".join(chunks)
        else:
            for path, offset in getattr(delivery, "stored", ()):
                entry.path, entry.offset = path, offset
                break
        inbox.add(entry)
        self.accepted_id = entry.id

    def abort(self) -> None:
        delivery, self._delivery = self._delivery, None
        self._failed = None
        self._head = b""
        self._chunks = None
        if delivery is not None:
            try:
                delivery.abort()
            except Exception:
                log.exception("message store failed to abort a delivery")
