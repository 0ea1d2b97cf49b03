"""Handler threads, reused.

Still one thread per connection: a worker serves exactly one connection, for
that connection's whole life, with blocking socket calls.  What changes is
that a worker whose connection ended waits a while for the next one instead
of exiting.  ``Thread.start`` blocks its caller until the new thread runs, so
with a new thread per connection the acceptor spent most of a connection
burst waiting for thread starts; reuse takes that off the accept path.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

__all__ = ["WorkerPool"]

Job = Callable[[], None]
log = logging.getLogger("badsmtp.server")


class WorkerPool:
    """Runs each job on an idle worker, or on a new one when none is idle."""

    def __init__(self, idle_exit: float = 30.0) -> None:
        self._idle_exit = idle_exit  # an idle worker leaves after this long
        self._lock = threading.Lock()
        self._all_done = threading.Condition(self._lock)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._idle = 0  # workers waiting for a job and not yet promised one
        self.busy = 0  # jobs running or handed out
        self.threads: set[threading.Thread] = set()

    def submit(self, job: Job, name: str) -> None:
        """Run ``job`` on a worker; raises (and counts nothing) when no idle
        worker is there and a new thread cannot start."""
        with self._lock:
            self.busy += 1
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)  # one of the idle workers takes it
                return
            thread = threading.Thread(target=self._work, args=(job,), name=name, daemon=True)
            self.threads.add(thread)
        try:
            thread.start()
        except Exception:  # RuntimeError: can't start new thread
            # The job never runs: take back what was counted for it, or
            # wait_done() waits for it until its timeout, on every stop().
            with self._lock:
                self.threads.discard(thread)
                self._job_done()
            raise

    def _work(self, job: Job | None) -> None:
        me = threading.current_thread()
        while job is not None:
            try:
                job()
            except Exception:  # a worker must outlive its job, or _idle would lie
                log.exception("a connection handler failed")
            finally:
                with self._lock:
                    self._job_done()
                    self._idle += 1
            me.name = "badsmtp-idle"
            job = self._next()
        with self._lock:
            self.threads.discard(me)

    def _job_done(self) -> None:
        """With the lock held."""
        self.busy -= 1
        if not self.busy:
            self._all_done.notify_all()

    def _next(self) -> Job | None:
        try:
            return self._jobs.get(timeout=self._idle_exit)
        except queue.Empty:
            with self._lock:
                # A job promised to "an idle worker" while this one timed out
                # is in the queue already: take it rather than strand it.
                try:
                    return self._jobs.get_nowait()
                except queue.Empty:
                    self._idle -= 1
                    return None

    def wait_done(self, timeout: float) -> bool:
        """Wait until no job is running; False if ``timeout`` passed first."""
        with self._all_done:
            return self._all_done.wait_for(lambda: not self.busy, timeout)

    def stop(self) -> None:
        """Let the idle workers go (running jobs finish on their own)."""
        with self._lock:
            idle, self._idle = self._idle, 0
            threads = list(self.threads) if not self.busy else []
        for _ in range(idle):
            self._jobs.put(None)
        for thread in threads:  # all idle: each leaves at once
            if thread is not threading.current_thread():
                thread.join(1.0)
