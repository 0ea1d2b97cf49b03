"""The handler-thread pool: one connection per thread at a time, threads reused."""

from __future__ import annotations

import threading

import pytest

from badsmtp.workers import WorkerPool


def _run(pool: WorkerPool, n: int = 1) -> list[str]:
    """Submit ``n`` jobs that record their thread's name and wait for them."""
    names: list[str] = []
    done = threading.Event()
    lock = threading.Lock()

    def job() -> None:
        with lock:
            names.append(threading.current_thread().name)
            if len(names) == n:
                done.set()

    for i in range(n):
        pool.submit(job, f"worker-{i}")
    assert done.wait(5)
    assert pool.wait_done(5)
    return names


def test_a_finished_worker_takes_the_next_job() -> None:
    pool = WorkerPool()
    try:
        _run(pool)
        [first] = pool.threads
        _run(pool)
        assert pool.threads == {first}  # reused, not a second thread
    finally:
        pool.stop()
    assert pool.threads == set()


def test_concurrent_jobs_each_get_their_own_thread() -> None:
    pool = WorkerPool()
    release = threading.Event()
    started = threading.Barrier(4, timeout=5)

    def job() -> None:
        started.wait()  # all four must be running at once
        release.wait(5)

    try:
        for i in range(3):
            pool.submit(job, f"w{i}")
        started.wait()
        assert len(pool.threads) == 3 and pool.busy == 3
        assert not pool.wait_done(0.05)  # twin: still busy
        release.set()
        assert pool.wait_done(5)
    finally:
        release.set()
        pool.stop()


def test_an_idle_worker_leaves_after_its_idle_time() -> None:
    pool = WorkerPool(idle_exit=0.05)
    _run(pool)
    [worker] = pool.threads
    worker.join(5)
    assert not worker.is_alive() and pool.threads == set()
    _run(pool)  # a new worker starts for the next job
    pool.stop()


def test_a_failing_job_keeps_the_worker_and_the_count(caplog) -> None:  # type: ignore[no-untyped-def]
    pool = WorkerPool()

    def bad() -> None:
        raise RuntimeError("boom")

    try:
        pool.submit(bad, "bad")
        assert pool.wait_done(5)
        [worker] = pool.threads
        _run(pool)  # the same worker serves the next job
        assert pool.threads == {worker} and worker.is_alive()
    finally:
        pool.stop()
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


def test_a_thread_that_cannot_start_leaves_no_count(monkeypatch: pytest.MonkeyPatch) -> None:
    real = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name == "doomed":  # as at the process's thread limit
            raise RuntimeError("can't start new thread")
        real(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    pool = WorkerPool()
    ran = threading.Event()
    try:
        with pytest.raises(RuntimeError, match="can't start new thread"):
            pool.submit(ran.set, "doomed")
        assert pool.busy == 0 and pool.threads == set()
        assert pool.wait_done(0)  # nothing to wait for: a stop() returns at once
        _run(pool)  # the next job gets its thread as usual
        assert not ran.is_set()
    finally:
        pool.stop()
