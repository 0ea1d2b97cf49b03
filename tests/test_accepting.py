"""Accepting connections under load: the listen backlog, running out of
descriptors, and a handler thread that cannot start."""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Client,
    free_ranges,
    linux_only,
    log_records,
    posix_rlimit,
    serving,
    wait_until,
)
from wire import GREETING, UNAVAILABLE

from badsmtp.accepting import SOMAXCONN_FILE, backoff, max_backlog
from badsmtp.cli import ENOUGH_FILES, OPEN_MAX, open_files_targets, raise_open_files_limit


def _accept_queue_limit(port: int) -> int:
    """A listening socket's backlog, as the kernel holds it: ``ss`` shows it
    in the Send-Q column (iproute2; .ci/run installs it)."""
    ss = shutil.which("ss")
    assert ss is not None, "this test needs ss (iproute2)"
    out = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    assert out[0] == "LISTEN", out
    return int(out[2])


def test_a_listener_gets_the_largest_backlog_the_system_allows() -> None:
    with open(SOMAXCONN_FILE, encoding="ascii") as file:
        somaxconn = int(file.read())
    with serving(ports=[0]) as server:
        assert _accept_queue_limit(server.port) == somaxconn


def test_max_backlog_reads_somaxconn(tmp_path: Path) -> None:
    path = tmp_path / "somaxconn"
    path.write_text("65535\n")
    assert max_backlog(str(path)) == 65535


def test_max_backlog_falls_back_to_the_constant(tmp_path: Path) -> None:
    assert max_backlog(str(tmp_path / "absent")) == socket.SOMAXCONN  # macOS, Windows
    (tmp_path / "garbage").write_text("many\n")
    assert max_backlog(str(tmp_path / "garbage")) == socket.SOMAXCONN


# -- out of descriptors ---------------------------------------------------------------
FD_LIMIT = 400  # the default plan's 309 listeners take about 315 of them
WAITING = 40  # clients beyond the limit


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc(5): fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _accept_records(log: Path) -> list[dict[str, Any]]:
    """The log's records about accepting, from complete lines only."""
    lines = log.read_bytes().split(b"\n")[:-1]  # the last one may be half written
    records = [json.loads(line) for line in lines if line.startswith(b"{")]
    return [r for r in records if "accept" in r["message"].lower()]


# ``python -m badsmtp`` with its descriptor limits set first (soft and hard
# from argv), without preexec_fn: that is unsafe in a process with threads.
LIMITED = (
    "import resource, runpy, sys; soft, hard = int(sys.argv.pop(1)), int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)); "
    "runpy.run_module('badsmtp', run_name='__main__', alter_sys=True)"
)


def _limited_badsmtp(
    tmp_path: Path, soft: int, hard: int
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The CLI started with these descriptor limits, its log in a file;
    returns it, its port and the log."""
    greeting, command, drop = free_ranges(3)
    port_file, log = tmp_path / "ports.json", tmp_path / "log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-c", LIMITED, str(soft), str(hard),
                "--port", "0", "--port-file", str(port_file),
                "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
                "--greeting-delay-port-start", str(greeting),
                "--command-delay-port-start", str(command),
                "--drop-delay-port-start", str(drop),
            ],
            stdout=out, stderr=subprocess.STDOUT,
        )

    def started() -> bool:
        assert proc.poll() is None, log.read_text()
        return port_file.exists()

    wait_until(started, timeout=30, what="badsmtp to write its port file")
    return proc, int(json.loads(port_file.read_text())["normal_port"]), log


@linux_only
def test_out_of_descriptors_the_acceptor_pauses_then_serves_everyone(tmp_path: Path) -> None:
    # Both limits low: the CLI raises its soft limit to the hard one.
    proc, port, log = _limited_badsmtp(tmp_path, FD_LIMIT, FD_LIMIT)
    clients: list[Client] = []
    try:
        free = FD_LIMIT - len(os.listdir(f"/proc/{proc.pid}/fd"))
        clients = [Client(port) for _ in range(free + WAITING)]  # all in the accept queue
        served, waiting = clients[:free], clients[free:]
        for client in served:  # the queue is first in, first out
            assert client.reply() == GREETING
        wait_until(lambda: _accept_records(log) != [], what="the pause to be logged")

        # Out of descriptors: the waiting clients stay waiting, without a busy loop.
        cpu = _cpu_seconds(proc.pid)
        with selectors.DefaultSelector() as sel:
            for client in waiting:
                sel.register(client.sock, selectors.EVENT_READ)
            assert sel.select(timeout=1.0) == []
        assert _cpu_seconds(proc.pid) - cpu < 0.3  # it was a whole CPU second
        [paused] = _accept_records(log)
        assert paused["level"] == "WARN"
        assert paused["message"] == "Accept paused: too many open files"
        assert paused["fields"] == {"errno": "EMFILE", "port": port}

        # Descriptors come free: every waiting client is served, no restart.
        for client in served:
            client.close()
        for client in waiting:
            assert client.reply() == GREETING
        wait_until(lambda: len(_accept_records(log)) == 2, what="the end of the pause")
        resumed = _accept_records(log)[1]
        assert resumed["level"] == "WARN" and resumed["message"] == "Accept resumed"
        assert resumed["fields"]["failed"] >= 1 and resumed["fields"]["seconds"] >= 1.0
    finally:
        for client in clients:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert len(_accept_records(log)) == 2  # one record when it starts, one when it ends


@linux_only
def test_the_cli_raises_its_soft_descriptor_limit_to_the_hard_one(tmp_path: Path) -> None:
    import resource

    proc, _, _ = _limited_badsmtp(tmp_path, 256, 4096)  # 256: macOS's default
    try:
        assert resource.prlimit(proc.pid, resource.RLIMIT_NOFILE) == (4096, 4096)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@posix_rlimit
def test_the_library_leaves_the_descriptor_limit_alone() -> None:
    embed = (
        "from badsmtp import BadSMTP; import resource\n"
        "with BadSMTP(ports=[0]):\n"
        "    print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    wrapped = LIMITED.replace("runpy.run_module('badsmtp', run_name='__main__', alter_sys=True)", "exec(sys.argv[1])")
    done = subprocess.run(
        [sys.executable, "-c", wrapped, "256", "4096", embed],
        capture_output=True, check=True, timeout=30,
    )
    assert done.stdout == b"256 4096\n"


def test_without_the_resource_module_the_limit_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows: import fails
    assert raise_open_files_limit() is None  # no error


def test_open_files_targets() -> None:
    unlimited = -1  # resource.RLIM_INFINITY on Linux and macOS (a pure function)
    assert open_files_targets(1024, 4096, unlimited) == [4096]
    assert open_files_targets(1024, 20000, unlimited) == [20000, OPEN_MAX]  # OPEN_MAX if refused
    assert open_files_targets(256, unlimited, unlimited) == [unlimited, OPEN_MAX, ENOUGH_FILES]  # macOS
    assert open_files_targets(256, 20000, unlimited) == [20000, OPEN_MAX, ENOUGH_FILES]
    assert open_files_targets(4096, 4096, unlimited) == []  # already there
    assert open_files_targets(16000, 20000, unlimited) == [20000]  # never lowered
    assert open_files_targets(20000, unlimited, unlimited) == [unlimited]
    assert open_files_targets(unlimited, unlimited, unlimited) == []


# -- accept() failures, injected in-process ----------------------------------------------
class FlakyAccept:
    """``accept()`` on one listening port fails with :attr:`error` while it is
    set (for :attr:`times` calls, when that is set), except for the next
    :attr:`granted` calls (descriptors that came free); counts the failures,
    which a test can wait for (:meth:`wait_for_failures`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, port: int) -> None:
        self.error: int | None = None
        self.times: int | None = None
        self.granted = 0
        self.failures = 0
        self._failed = threading.Condition()
        real = socket.socket.accept

        def accept(sock: socket.socket) -> tuple[socket.socket, Any]:
            if self.error is not None and sock.getsockname()[1] == port:
                if self.granted:
                    self.granted -= 1
                    return real(sock)
                code = self.error
                if self.times is not None:
                    self.times -= 1
                    if not self.times:
                        self.error = None
                with self._failed:
                    self.failures += 1
                    self._failed.notify_all()
                raise OSError(code, os.strerror(code))
            return real(sock)

        monkeypatch.setattr(socket.socket, "accept", accept)

    def wait_for_failures(self, count: int, timeout: float = 5.0) -> None:
        with self._failed:
            assert self._failed.wait_for(lambda: self.failures >= count, timeout), (
                f"{self.failures} of {count} failed accepts within {timeout} s"
            )


def _about_accepting(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if "accept" in r.getMessage().lower()]


def test_an_accept_error_that_persists_pauses_the_acceptor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(ports=[0]) as server:
        flaky = FlakyAccept(monkeypatch, server.port)
        flaky.error = errno.EINVAL
        with Client(server.port) as client:
            flaky.wait_for_failures(4)  # 50+100+200 ms
            flaky.error = None
            assert client.reply() == GREETING  # after the next rest (400 ms)
        assert flaky.failures <= 6  # not one per loop turn: that was thousands
    paused, resumed = _about_accepting(caplog.records)
    assert (paused.levelname, paused.getMessage()) == ("WARNING", "Accept paused: invalid argument")
    assert paused.fields == {"errno": "EINVAL", "port": server.port}  # type: ignore[attr-defined]
    assert (resumed.levelname, resumed.getMessage()) == ("WARNING", "Accept resumed")
    assert resumed.fields["failed"] == flaky.failures  # type: ignore[attr-defined]
    assert resumed.fields["seconds"] >= 0.35  # type: ignore[attr-defined]


def test_a_closing_connection_ends_the_pause_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(ports=[0]) as server:
        flaky = FlakyAccept(monkeypatch, server.port)
        with Client(server.port) as first:
            assert first.reply() == GREETING
            flaky.error = errno.EMFILE
            with Client(server.port) as second:
                # 50+100+200+400+800 ms: the rest now is the longest, 1 s
                flaky.wait_for_failures(6)
                flaky.error = None
                t0 = time.monotonic()
                first.close()  # its descriptor comes free: the acceptor is nudged
                assert second.reply() == GREETING
                assert time.monotonic() - t0 < 0.5
        assert flaky.failures <= 7


def test_one_episode_until_every_waiting_client_is_in(monkeypatch: pytest.MonkeyPatch) -> None:
    with log_records() as logged, serving(ports=[0]) as server:
        flaky = FlakyAccept(monkeypatch, server.port)
        flaky.error = errno.EMFILE
        clients = [Client(server.port) for _ in range(100)]
        try:
            flaky.wait_for_failures(1)
            flaky.granted = 70  # more than one batch of accepts, not all
            for client in clients[:70]:
                assert client.reply() == GREETING
            flaky.wait_for_failures(2)
            flaky.granted = 30
            for client in clients[70:]:
                assert client.reply() == GREETING
            logged.wait_for(lambda got: len(_about_accepting(got)) >= 2, what="the end of the pause")
            failures, flaky.error = flaky.failures, None
        finally:
            for client in clients:
                client.close()
    paused, resumed = _about_accepting(logged.records)  # not a new episode after each batch
    assert paused.getMessage() == "Accept paused: too many open files"
    assert resumed.getMessage() == "Accept resumed"
    assert resumed.fields["failed"] == failures  # type: ignore[attr-defined]


def test_an_aborted_connection_is_logged_and_the_next_one_served(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(ports=[0]) as server:
        flaky = FlakyAccept(monkeypatch, server.port)
        flaky.error, flaky.times = errno.ECONNABORTED, 1
        with Client(server.port) as client:
            assert client.reply(timeout=0.5) == GREETING  # no rest: that connection is gone
    [record] = _about_accepting(caplog.records)
    assert record.getMessage() == (
        f"accept failed on port {server.port}: [Errno {errno.ECONNABORTED}] "
        f"{os.strerror(errno.ECONNABORTED)}"
    )


def test_the_rests_double_up_to_a_second() -> None:
    assert [backoff(n) for n in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff(10_000) == 1.0


# -- a handler thread that cannot start ------------------------------------------------
class FailingStart:
    """``Thread.start`` raises, as at the process's thread limit, for the
    threads named ``name`` while :attr:`on`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.on = True
        real = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            if self.on and thread.name == name:
                raise RuntimeError("can't start new thread")
            real(thread)

        monkeypatch.setattr(threading.Thread, "start", start)


def test_no_handler_thread_means_421_and_stop_still_returns_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # serving() fails the test on an internal error: a full process is no bug of badsmtp's.
    with serving(ports=[0], shutdown_timeout=10) as server:
        failing = FailingStart(monkeypatch, f"badsmtp-{server.port}")
        for _ in range(2):
            with Client(server.port) as client:
                assert client.read_to_eof() == UNAVAILABLE  # not a bare close
        failing.on = False
        with Client(server.port) as client:  # threads start again: served as usual
            assert client.reply() == GREETING
            assert client.command(b"QUIT") == b"221 Bye\r\n"  # no EHLO: no enhanced code
        t0 = time.monotonic()
        server.stop()
        stopped_in = time.monotonic() - t0
    assert stopped_in < 2  # not the 10 s of shutdown_timeout
    assert server._runtime is not None and server._runtime.pool.busy == 0
    refused, again = [r for r in caplog.records if "thread" in r.getMessage()]
    assert refused.getMessage() == "Cannot start a handler thread; refusing connections with 421"
    assert refused.fields == {  # type: ignore[attr-defined]
        "error": "RuntimeError: can't start new thread", "port": server.port
    }
    assert again.getMessage() == "Handler threads start again"
    assert again.fields["refused"] == 2  # type: ignore[attr-defined]
