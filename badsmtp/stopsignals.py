"""SIGINT/SIGTERM for the ``badsmtp`` command: the first asks for a graceful
shutdown, a second one during it exits at once with 128 + its number
(badsmtp(1), EXIT STATUS).

Two ways to take them, chosen by :func:`stop_signals`:

- :class:`BlockedSignals` (POSIX): both stay blocked in every thread and are
  taken with ``sigwait()``.
- :class:`WakeupSignals` (everywhere else, Windows included): Python
  handlers that do nothing, and ``signal.set_wakeup_fd()`` writing each
  signal's number into a socket pair that :meth:`WakeupSignals.wait` reads.

Either way no Python code with side effects runs at an arbitrary point of
the main thread: a handler that set the stop event while the main thread was
inside that event's ``wait()``, holding its lock, deadlocked the shutdown.
A signal sent while the server starts is not lost (it stays pending, or
its byte stays in the socket) until ``wait()`` takes it.  Only from the main
thread; elsewhere (an in-process test) signals are left alone and ``wait()``
waits for ``stop``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Self

__all__ = ["SIGNALS", "BlockedSignals", "WakeupSignals", "sigwait_available", "stop_signals"]

SIGNALS = {signal.SIGINT, signal.SIGTERM}
_POSIX_CALLS = ("pthread_sigmask", "sigwait", "sigpending")


def sigwait_available() -> bool:
    """Whether this platform can block signals and take them with ``sigwait()``."""
    return all(hasattr(signal, name) for name in _POSIX_CALLS)


def stop_signals(
    stop: threading.Event, *, portable: bool | None = None
) -> BlockedSignals | WakeupSignals:
    """The signal handling for ``stop``: ``sigwait()`` where it exists,
    otherwise (or with ``portable=True``) the wake-up socket."""
    if portable is None:
        portable = not sigwait_available()
    return WakeupSignals(stop) if portable else BlockedSignals(stop)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class BlockedSignals:
    """Blocked in every thread (threads started later inherit the mask),
    taken with ``sigwait()``: race-free on POSIX."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self._saved: set[int | signal.Signals] | None = None

    def __enter__(self) -> Self:
        if _in_main_thread():
            self._saved = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        return self

    def wait(self) -> None:
        """Until the first signal; from then on a second one exits at once."""
        if self._saved is None:
            self.stop.wait()
            return
        signal.sigwait(SIGNALS)
        self.stop.set()
        threading.Thread(target=self._second, name="badsmtp-signals", daemon=True).start()

    @staticmethod
    def _second() -> None:
        signum = signal.sigwait(SIGNALS)
        os._exit(128 + signum)  # no clean-up: the user asked twice

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            # One that came while starting failed is taken here: unblocked,
            # a SIGINT would end the exit with a KeyboardInterrupt traceback.
            while SIGNALS & signal.sigpending():
                signal.sigwait(SIGNALS)
            signal.pthread_sigmask(signal.SIG_SETMASK, self._saved)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing.  It must exist (a signal without
    one writes no wake-up byte and keeps its default action), and doing
    nothing is what makes it safe wherever it interrupts the main thread."""


_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
_STOP = b"\0"  # no signal has number 0: __exit__ wakes the second-signal thread with it


class WakeupSignals:
    """Without ``sigwait()``: the C-level handler writes the signal's number
    to a socket (``signal.set_wakeup_fd``, which takes a socket on Windows)
    whatever the main thread is doing; :meth:`wait` reads it in the main
    thread, and a thread reads the second one and exits.  Neither waits on
    a lock a handler could want, and nothing polls."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        extra = {signal.SIGBREAK} if hasattr(signal, "SIGBREAK") else set()  # Ctrl+Break, Windows
        self.signals = sorted(SIGNALS | extra)
        self._pair: tuple[socket.socket, socket.socket] | None = None
        self._saved: dict[int, _Handler] = {}
        self._saved_fd = -1
        self._second_thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        if not _in_main_thread():
            return self
        reader, writer = socket.socketpair()
        writer.setblocking(False)  # set_wakeup_fd requires it
        self._pair = (reader, writer)
        self._saved_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        for signum in self.signals:
            self._saved[signum] = signal.signal(signum, _ignore)
        return self

    def wait(self) -> None:
        """Until the first signal; from then on a second one exits at once."""
        if self._pair is None:
            self.stop.wait()
            return
        reader = self._pair[0]
        reader.recv(1)  # interrupted by the signal on POSIX, then retried (PEP 475)
        self.stop.set()
        self._second_thread = threading.Thread(
            target=self._second, args=(reader,), name="badsmtp-signals", daemon=True
        )
        self._second_thread.start()

    @staticmethod
    def _second(reader: socket.socket) -> None:
        got = reader.recv(1)
        if got and got != _STOP:
            os._exit(128 + got[0])  # no clean-up: the user asked twice

    def __exit__(self, *exc: object) -> None:
        if self._pair is None:
            return
        # Handlers first, then the wake-up fd: a signal in between writes
        # into the still open socket, and one that came while starting
        # failed is dropped with it (it did nothing else).
        for signum, handler in self._saved.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        signal.set_wakeup_fd(self._saved_fd)
        reader, writer = self._pair
        if self._second_thread is not None:
            writer.setblocking(True)
            writer.send(_STOP)
            self._second_thread.join()
        reader.close()
        writer.close()
        self._pair = None
