"""Every transcript of one server (:mod:`badsmtp.transcript`), in
connection order: what ``server.sessions`` and the inspection API read.
Thread-safe: handler threads add while tests and HTTP requests read and wait."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from .transcript import Transcript

__all__ = ["TranscriptLog"]


class TranscriptLog:
    """Every transcript of one server, in connection order; thread-safe.
    With a ``limit``, only the newest ``limit`` are kept, and with an
    ``event_limit`` only so many records of each (the inspection API's
    bounded memory, badsmtp(1), --http-keep)."""

    def __init__(self, limit: int | None = None, event_limit: int | None = None) -> None:
        self._items: deque[Transcript] = deque(maxlen=limit)
        self._cond = threading.Condition()
        self.event_limit = event_limit  # records kept per transcript (None: all)

    def new(
        self, client_ip: str, client_port: int, port: int, role: str, tls: bool, session_id: str = ""
    ) -> Transcript:
        transcript = Transcript(client_ip, client_port, port, role, tls, self._notify, session_id)
        transcript.event_limit = self.event_limit
        with self._cond:
            self._items.append(transcript)
        return transcript

    def get(self, session_id: str) -> Transcript | None:
        """The kept transcript with this id."""
        with self._cond:
            for transcript in reversed(self._items):
                if transcript.id == session_id:
                    return transcript
        return None

    def clear(self) -> int:
        """Forget every transcript; how many there were."""
        with self._cond:
            count = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return count

    def _ended(self) -> int:
        return sum(1 for t in self._items if t.closed)

    def wait_ended(self, count: int, timeout: float, stopping: Callable[[], bool]) -> bool:
        """Block until ``count`` kept sessions have ended (True), ``timeout``
        passes or ``stopping()`` is true (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self._ended() >= count or stopping(), timeout)
            return self._ended() >= count and not stopping()

    def wake(self) -> None:
        """Wake every waiter (the server stops)."""
        self._notify()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def snapshot(self) -> list[Transcript]:
        with self._cond:
            return list(self._items)

    def wait_closed(self, count: int, timeout: float) -> list[Transcript]:
        """Block until ``count`` sessions have ended; return all sessions."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ended() >= count, timeout):
                done = self._ended()
                raise TimeoutError(
                    f"{done} of {count} sessions ended within {timeout} s "
                    f"({len(self._items)} connected)"
                )
            return list(self._items)
