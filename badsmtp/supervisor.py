"""``badsmtp --workers N``: N processes serve the same listeners
(badsmtp(1), WORKERS).

The supervisor binds every listener once and makes what every worker must
share before the first fork: the default certificate and the test CA (so
every connection sees the same ones), the counts of the counted triggers
(a table in shared memory), and the lock the workers' log writes take turns
on.  Each worker is the same thread-per-connection server as a single
process, accepting on the inherited listening sockets.

The supervisor starts no thread, so it may fork at any time: it restarts a
worker that dies.  It writes ``--port-file`` once every worker is ready; on
SIGINT or SIGTERM it sends SIGTERM to every worker (each sends its 421s and
waits for its sessions, as one process does), waits for all of them and
exits 0.  A second signal kills the workers and exits at once with 128 + its
number.  Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole
process group: the supervisor passes it on, once) and stop by themselves
when the supervisor is gone.

POSIX only: Windows has no ``fork()``, and ``--workers`` says so.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from .processes import ProcessLock
from .threadsettings import pinned

if TYPE_CHECKING:
    from .api import BadSMTP
    from .log import LogSetup
    from .options import Settings

__all__ = ["Supervisor"]

log = logging.getLogger("badsmtp.server")

START_TIMEOUT = 30.0  # seconds for every worker to be ready
RESTART_BACKOFF = (0.0, 0.1, 0.5, 1.0, 5.0)  # after 0, 1, 2... quick deaths in a row
QUICK_DEATH = 1.0  # seconds: a worker that dies sooner did not really start
KILL_GRACE = 5.0  # seconds past --shutdown-timeout before stuck workers are killed


def _nothing(signum: int, frame: FrameType | None) -> None:
    """The supervisor's signal handler: the wake-up descriptor carries the signal."""


_SIGNALS = (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGCHLD", signal.SIGTERM))


@dataclass
class _Slot:
    """One worker's place: its index, the process in it and its history."""

    index: int
    pid: int = 0
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = None


@dataclass
class _Pipes:
    wake_r: int
    wake_w: int
    ready_r: int
    ready_w: int
    life_r: int  # a worker reads EOF here once the supervisor is gone
    life_w: int

    @classmethod
    def open(cls) -> _Pipes:
        (wake_r, wake_w), (ready_r, ready_w), (life_r, life_w) = os.pipe(), os.pipe(), os.pipe()
        for fd in (wake_r, wake_w, ready_r, ready_w):
            os.set_blocking(fd, False)
        return cls(wake_r, wake_w, ready_r, ready_w, life_r, life_w)

    def close(self) -> None:
        for fd in astuple(self):
            try:
                os.close(fd)
            except OSError:
                pass


class Supervisor:
    """The ``--workers`` lifecycle, for one bound (not yet accepting) server."""

    def __init__(
        self,
        server: BadSMTP,
        settings: Settings,
        count: int,
        log_setup: LogSetup,
        log_lock: ProcessLock,
        announce: Callable[[], None],
    ) -> None:
        self.server = server
        self.settings = settings
        self.slots = [_Slot(index) for index in range(count)]
        self.log_setup = log_setup
        self.log_lock = log_lock
        self.announce = announce
        self.pipes = _Pipes.open()
        self._saved: dict[int, Any] = {}
        self._saved_fd = -1
        self._ready = 0  # ready bytes read so far: one per worker start

    # -- the supervisor ------------------------------------------------------------------
    def run(self) -> int:
        """Start the workers, serve until a signal, stop them; the exit status."""
        self._saved_fd = signal.set_wakeup_fd(self.pipes.wake_w, warn_on_full_buffer=False)
        for signum in _SIGNALS:
            self._saved[signum] = signal.signal(signum, _nothing)
        try:
            for slot in self.slots:
                self._spawn(slot)
            status = self._until_ready()
            if status is None:
                log.info(
                    "Serving with worker processes",
                    extra={"fields": {"workers": len(self.slots), "pids": [s.pid for s in self.slots]}},
                )
                self.announce()  # the port file: every worker is ready
                status = self._serve()
            return self._shut_down() if status == 0 else status
        finally:
            for signum, handler in self._saved.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(self._saved_fd)
            self.pipes.close()

    def _wait(self, timeout: float | None) -> set[int]:
        """The signals that came within ``timeout``; ready bytes are read too."""
        try:
            readable, _, _ = select.select([self.pipes.wake_r, self.pipes.ready_r], [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries select
            readable = []
        if self.pipes.ready_r in readable:
            self._ready += len(self._drain(self.pipes.ready_r))  # a byte per worker start
        return set(self._drain(self.pipes.wake_r)) if self.pipes.wake_r in readable else set()

    def _drain(self, fd: int) -> bytes:
        got = b""
        while True:
            try:
                chunk = os.read(fd, 512)
            except BlockingIOError:
                return got
            if not chunk:
                return got
            got += chunk

    def _until_ready(self) -> int | None:
        """None once every worker said it is ready; an exit status otherwise."""
        deadline = time.monotonic() + START_TIMEOUT
        while self._ready < len(self.slots):
            left = deadline - time.monotonic()
            if left <= 0:
                print(f"workers not ready within {START_TIMEOUT:g} s", file=sys.stderr, flush=True)
                return self._abort(1)
            signals = self._wait(left)
            if signals & {signal.SIGINT, signal.SIGTERM}:
                return 0  # stop what has started, as one process would
            dead = self._reap()
            if dead:
                slot, _, status = dead[0]
                print(f"worker {slot.index} exited while starting ({_describe(status)})",
                      file=sys.stderr, flush=True)  # fmt: skip
                return self._abort(1)
        return None

    def _serve(self) -> int:
        while True:
            signals = self._wait(self._next_restart())
            if signals & {signal.SIGINT, signal.SIGTERM}:
                return 0  # (a worker that died meanwhile is reaped by the shutdown)
            for slot, pid, status in self._reap():
                self._schedule(slot, pid, status)
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    slot.restart_at = None
                    self._spawn(slot)

    def _next_restart(self) -> float | None:
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _schedule(self, slot: _Slot, pid: int, status: int) -> None:
        """A worker died while serving: start another in its place, at once
        unless it keeps dying as soon as it starts."""
        quick = time.monotonic() - slot.started < QUICK_DEATH
        slot.quick_deaths = slot.quick_deaths + 1 if quick else 0
        delay = RESTART_BACKOFF[min(slot.quick_deaths, len(RESTART_BACKOFF) - 1)]
        log.warning(
            "Worker exited; starting another",
            extra={"fields": {"worker": slot.index, "pid": pid, "status": _describe(status),
                              "restart_in": delay}},
        )  # fmt: skip
        slot.restart_at = time.monotonic() + delay

    def _reap(self) -> list[tuple[_Slot, int, int]]:
        """The workers that exited since the last look, with their process
        ids and wait statuses."""
        dead: list[tuple[_Slot, int, int]] = []
        by_pid = {s.pid: s for s in self.slots if s.pid}
        while by_pid:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = by_pid.pop(pid, None)
            if slot is not None:
                slot.pid = 0
                dead.append((slot, pid, status))
        return dead

    def _shut_down(self) -> int:
        """SIGTERM to every worker, then wait for all of them; a second
        signal kills them and exits at once (badsmtp(1), SIGNALS)."""
        log.info("Shutdown signal received, initiating graceful shutdown")
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.server.config.shutdown_timeout + KILL_GRACE
        while any(s.pid for s in self.slots):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("Workers did not stop in time; killing them")
                self._signal_all(signal.SIGKILL)
                deadline = float("inf")
            signals = self._wait(None if deadline == float("inf") else left)
            second = signals & {signal.SIGINT, signal.SIGTERM}
            if second:
                self._signal_all(signal.SIGKILL)
                self._reap_all()
                return 128 + max(second)
            self._reap()
        self._close_listeners()
        log.info("All sessions closed; shutdown complete")
        return 0

    def _abort(self, status: int) -> int:
        self._signal_all(signal.SIGKILL)
        self._reap_all()
        self._close_listeners()
        return status

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.pid:
                try:
                    os.kill(slot.pid, signum)
                except ProcessLookupError:
                    pass

    def _reap_all(self) -> None:
        for slot in self.slots:
            if slot.pid:
                try:
                    os.waitpid(slot.pid, 0)
                except ChildProcessError:
                    pass
                slot.pid = 0

    def _close_listeners(self) -> None:
        """What queued after the workers stopped gets its 421 too, then the
        listening sockets close."""
        from .acceptor import Acceptor

        for listener in self.server._servers:
            listener.socket.setblocking(False)
            Acceptor.refuse_backlog(listener)
            listener.server_close()

    def _spawn(self, slot: _Slot) -> None:
        pid = os.fork()
        if pid == 0:
            self._worker(slot.index)
        slot.pid, slot.started = pid, time.monotonic()

    # -- a worker (in the child) --------------------------------------------------------
    def _worker(self, index: int) -> NoReturn:
        status = 1
        try:
            self._become_worker(index)
            status = self._work(index)
        except BaseException as exc:  # noqa: BLE001 - reported, then the supervisor restarts it
            try:
                log.exception("Worker failed", extra={"fields": {"worker": index}})
                print(f"badsmtp worker {index}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            except BaseException:  # noqa: BLE001,S110 - nothing is left to tell
                pass
        finally:
            os._exit(status)

    def _become_worker(self, index: int) -> None:
        """Leave the supervisor's signal handling, descriptors and log."""
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by sigwait()
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor passes Ctrl-C on
        pipes = self.pipes
        for fd in (pipes.wake_r, pipes.wake_w, pipes.ready_r, pipes.life_w):
            os.close(fd)
        self.log_setup.close()

    def _work(self, index: int) -> int:
        from .log import configure

        cpu = index if self.settings.cpu_affinity == "pin" else None  # a CPU each, in turn
        with pinned(cpu):  # before any thread starts: they all keep to it
            return self._serve_here(configure(self.settings.log_settings(), guard=self.log_lock))

    def _serve_here(self, setup: LogSetup) -> int:
        try:
            server = self.server
            assert server._runtime is not None
            server._runtime.stamp()  # this worker's own CRAM challenges
            server.serve_in_thread()
            os.write(self.pipes.ready_w, b"r")
            os.close(self.pipes.ready_w)
            threading.Thread(target=self._lifeline, name="badsmtp-lifeline", daemon=True).start()
            signal.sigwait({signal.SIGTERM})
            server.stop()
        finally:
            setup.close()
        return 0

    def _lifeline(self) -> None:
        """EOF on the lifeline: the supervisor is gone (killed), stop too."""
        while True:
            try:
                if not os.read(self.pipes.life_r, 1):
                    break
            except InterruptedError:  # pragma: no cover
                continue
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    break
        os.kill(os.getpid(), signal.SIGTERM)


def _describe(status: int) -> str:
    """A wait status in words: ``exit 3`` or ``killed by SIGKILL``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exit {os.WEXITSTATUS(status)}"
