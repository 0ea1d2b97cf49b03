"""``badsmtp --workers N`` (badsmtp(1), WORKERS): N processes serve the same
listeners, and a client sees what it would see with one: the port file once
every worker is ready, counted triggers counted across them, one maildir,
whole log lines, a 421 for every session on SIGTERM or Ctrl-C, a worker
that dies replaced."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (
    Client,
    first_stderr_line,
    free_ranges,
    linux_only,
    posix_signals,
    reap,
    wait_until,
)

from badsmtp import cli
from badsmtp.processes import SharedUses, usable_cpus, worker_count

pytestmark = posix_signals  # fork() and POSIX signals


@dataclass
class Workers:
    proc: subprocess.Popen[bytes]
    ports: dict[str, object]
    log: Path

    @property
    def port(self) -> int:
        return int(self.ports["normal_port"])  # type: ignore[call-overload]

    def records(self) -> list[dict[str, object]]:
        """Every JSON log line, its fields merged in."""
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [{**record, **record.pop("fields", {})} for record in map(json.loads, lines)]

    def record(self, message: str) -> dict[str, object]:
        found = [r for r in self.records() if r["message"] == message]
        assert found, f"no {message!r} record"
        return found[-1]

    def pids(self) -> list[int]:
        return list(self.record("Serving with worker processes")["pids"])  # type: ignore[call-overload]

    def children(self) -> set[int]:
        """The supervisor's live child processes (Linux's /proc)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(p) for p in path.read_text().split()}

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=30)



@contextlib.contextmanager
def workers(tmp_path: Path, *extra: str, count: int = 2, **popen: object) -> Iterator[Workers]:
    greeting, command, drop = free_ranges(3)
    port_file, log = tmp_path / "ports.json", tmp_path / "badsmtp.log"
    argv = [
        sys.executable, "-m", "badsmtp", "--workers", str(count),
        "--port", "0", "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
        "--tls-fault-port-start", "0",
        "--greeting-delay-port-start", str(greeting),
        "--command-delay-port-start", str(command),
        "--drop-delay-port-start", str(drop),
        "--port-file", str(port_file), "--log-format", "json", "--shutdown-timeout", "5", *extra,
    ]  # fmt: skip
    with open(log, "wb") as out:
        # TMPDIR: what a killed supervisor leaves stays in tmp_path
        env = {**os.environ, "TMPDIR": str(tmp_path)}
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env, **popen)  # type: ignore[call-overload]
    try:
        line = first_stderr_line(proc, timeout=60)
        assert line.startswith(b"badsmtp "), line
        yield Workers(proc, json.loads(port_file.read_text(encoding="utf-8")), log)
    finally:
        reap(proc)


def _send(port: int, sender: str = "a@example.com") -> list[bytes]:
    """One transaction; the replies to EHLO, MAIL, RCPT, DATA and the end of data."""
    with Client(port) as client:
        assert client.reply().startswith(b"220 ")
        got = [client.command(b"EHLO client.example")]
        got.append(client.command(f"MAIL FROM:<{sender}>".encode()))
        got.append(client.command(b"RCPT TO:<b@example.com>"))
        if got[-1].startswith(b"250"):
            got.append(client.command(b"DATA"))
            got.append(client.command(b"Subject: hi\r\n\r\nbody\r\n."))
        client.command(b"QUIT")
    return got


# -- the count -------------------------------------------------------------------------
def test_worker_count_takes_a_number_or_auto() -> None:
    assert worker_count("3") == 3
    assert worker_count(" AUTO ") == usable_cpus() >= 1
    for bad in ("0", "-1", "two", "", "257"):
        with pytest.raises(ValueError, match="workers must be auto or a number from 1 to 256"):
            worker_count(bad)


def test_without_fork_more_than_one_worker_is_refused_clearly() -> None:
    assert worker_count("1", can_fork=False) == 1
    with pytest.raises(ValueError, match=r"--workers 2 needs fork\(\), which this platform"):
        worker_count("2", can_fork=False)


def test_a_bad_count_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--workers", "many", "--port", "0"]) == 2
    assert capsys.readouterr().err == (
        "configuration error: workers must be auto or a number from 1 to 256, not 'many'\n"
    )
    assert cli.main(["--cpu-affinity", "all", "--port", "0"]) == 2
    assert "cpu_affinity must be none or pin, not 'all'" in capsys.readouterr().err


# -- shared state ----------------------------------------------------------------------
# pytest's process has threads (Python 3.12 warns at fork); the child only
# takes two counts and exits.  The supervisor itself forks with none.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_counted_triggers_are_counted_across_forked_processes() -> None:
    uses = SharedUses()
    pid = os.fork()
    if pid == 0:  # the child takes two of three
        status = 0 if uses.take("rcpt451x3@example.com", 3) and uses.take("rcpt451x3@example.com", 3) else 1
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert uses.take("rcpt451x3@example.com", 3)
    assert not uses.take("rcpt451x3@example.com", 3)
    assert uses.take("rcpt451x3+other@example.com", 3)  # another key, another count
    uses.clear()
    assert uses.take("rcpt451x3@example.com", 3)
    uses.close()


def test_every_worker_counts_the_same_retries(tmp_path: Path) -> None:
    with workers(tmp_path) as server:
        replies = [_send(server.port, "mail451x3+w@example.com")[1] for _ in range(10)]
        assert [r[:3] for r in replies] == [b"451"] * 3 + [b"250"] * 7
        assert server.stop() == 0


def test_one_maildir_for_every_worker(tmp_path: Path) -> None:
    mailbox = tmp_path / "mail"
    with workers(tmp_path, "--mailbox", str(mailbox)) as server:
        for _ in range(12):
            assert _send(server.port)[-1].startswith(b"250 ")
        names = os.listdir(mailbox / "new")
        assert len(names) == 12
        assert all(re.fullmatch(r"\d+\.\d+_\d+_\d+\..+", name) for name in names)
        assert {int(n.split("_")[1]) for n in names} <= set(server.pids())
        assert os.listdir(mailbox / "tmp") == []
        assert server.stop() == 0


# -- start, stop, restart --------------------------------------------------------------
@linux_only
def test_the_port_file_comes_once_every_worker_is_ready(tmp_path: Path) -> None:
    with workers(tmp_path, count=3) as server:
        pids = server.pids()
        assert len(set(pids)) == 3 and server.children() == set(pids)
        # A plain start logs what one process logs, once: the supervisor's start-up record.
        assert [r["message"] for r in server.records()].count("BadSMTP server started") == 1
        assert server.stop() == 0


def test_sigterm_sends_every_session_its_421_then_exits_0(tmp_path: Path) -> None:
    with workers(tmp_path) as server:
        clients = [Client(server.port) for _ in range(6)]
        try:
            for client in clients:
                assert client.reply().startswith(b"220 ")
                assert client.command(b"EHLO x").startswith(b"250")
            server.proc.send_signal(signal.SIGTERM)
            for client in clients:
                assert client.read_to_eof(timeout=20).startswith(b"421 ")
        finally:
            for client in clients:
                client.close()
        assert server.proc.wait(timeout=30) == 0
        messages = [r["message"] for r in server.records()]
        assert messages[-1] == "All sessions closed; shutdown complete"


def test_ctrl_c_to_the_process_group_stops_once_and_gracefully(tmp_path: Path) -> None:
    with workers(tmp_path, start_new_session=True) as server:
        with Client(server.port) as client:
            assert client.reply().startswith(b"220 ")
            os.killpg(server.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
            assert client.read_to_eof(timeout=20).startswith(b"421 ")
        assert server.proc.wait(timeout=30) == 0


@linux_only
def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    with workers(tmp_path) as server:
        victim = server.pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in server.children() and len(server.children()) == 2,
                   timeout=20, what="a new worker")  # fmt: skip
        record = server.record("Worker exited; starting another")
        assert record["pid"] == victim and record["status"] == "killed by SIGKILL"
        for _ in range(6):  # whichever worker takes them
            assert _send(server.port)[-1].startswith(b"250 ")
        assert server.stop() == 0


@linux_only
def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    with workers(tmp_path) as server:
        pids = server.pids()
        server.proc.kill()
        server.proc.wait()

        def gone() -> bool:
            return not any(Path(f"/proc/{pid}").exists() and
                           "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
                           for pid in pids)  # fmt: skip

        wait_until(gone, timeout=20, what="the orphaned workers to exit")


# -- logs and CPUs ---------------------------------------------------------------------
def test_log_lines_of_all_workers_stay_whole(tmp_path: Path) -> None:
    with workers(tmp_path, "--log-level", "debug") as server:
        for _ in range(40):
            _send(server.port)
        assert server.stop() == 0
    records = server.records()  # every line parses: none was cut by another
    assert sum(r["message"] == "SMTP connection closed" for r in records) == 40


@linux_only
@pytest.mark.skipif(usable_cpus() < 2, reason="needs two usable CPUs to pin to")
def test_pinned_workers_each_get_a_cpu_of_their_own(tmp_path: Path) -> None:
    with workers(tmp_path, "--cpu-affinity", "pin") as server:
        allowed = [
            re.search(r"Cpus_allowed_list:\s*(\S+)", Path(f"/proc/{pid}/status").read_text())
            for pid in server.pids()
        ]
        cpus = [m.group(1) for m in allowed if m]
        assert len(cpus) == 2 and len(set(cpus)) == 2 and all(c.isdigit() for c in cpus)
        assert server.stop() == 0


@linux_only
def test_second_signal_during_the_shutdown_exits_at_once(tmp_path: Path) -> None:
    with workers(tmp_path) as server:
        stuck = server.pids()[0]
        os.kill(stuck, signal.SIGSTOP)  # a worker that cannot finish its shutdown
        server.proc.send_signal(signal.SIGTERM)
        began = "Shutdown signal received, initiating graceful shutdown"
        wait_until(lambda: any(r["message"] == began for r in server.records()),
                   timeout=10, what="the shutdown to begin")  # fmt: skip
        start = time.monotonic()
        assert server.stop(signal.SIGINT) == 128 + signal.SIGINT
        assert time.monotonic() - start < 5
        wait_until(lambda: not Path(f"/proc/{stuck}").exists(), what="the stuck worker killed")


def _certificate(port: int, name: str) -> bytes:
    """The certificate an implicit TLS port presents for SNI ``name``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def test_every_worker_presents_the_same_certificates(tmp_path: Path) -> None:
    written = tmp_path / "cert.pem"
    with workers(tmp_path, "--write-tls-cert", str(written)) as server:
        port = int(server.ports["tls_port"])  # type: ignore[call-overload]
        default = {_certificate(port, "localhost") for _ in range(8)}
        assert default == {ssl.PEM_cert_to_DER_cert(written.read_text())}
        assert len({_certificate(port, "mx.example.org") for _ in range(8)}) == 1
        assert server.stop() == 0


@linux_only
@pytest.mark.skipif(usable_cpus() < 2, reason="needs two usable CPUs")
def test_unpinned_workers_may_run_anywhere(tmp_path: Path) -> None:
    mine = re.search(r"Cpus_allowed_list:\s*(\S+)", Path("/proc/self/status").read_text())
    with workers(tmp_path, "--cpu-affinity", "none") as server:
        for pid in server.pids():
            theirs = re.search(r"Cpus_allowed_list:\s*(\S+)", Path(f"/proc/{pid}/status").read_text())
            assert theirs and mine and theirs.group(1) == mine.group(1)
        assert server.stop() == 0


@linux_only
def test_a_new_connection_wakes_one_worker_not_all() -> None:
    # EPOLLEXCLUSIVE on every listening socket: /proc shows each epoll
    # registration's event mask (tfd: <fd> events: <hex mask> ...).
    from badsmtp import BadSMTP

    with BadSMTP(ports=[0, 0]) as server:
        fds = {s.socket.fileno() for s in server._servers}
        masks: dict[int, int] = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                info = Path(f"/proc/self/fdinfo/{fd}").read_text()
            except FileNotFoundError:  # the listing's own descriptor, closed since
                continue
            for line in info.splitlines():
                found = re.match(r"tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)", line)
                if found and int(found.group(1)) in fds:
                    masks[int(found.group(1))] = int(found.group(2), 16)
        assert set(masks) == fds
        assert all(mask & select.EPOLLEXCLUSIVE and mask & select.EPOLLIN for mask in masks.values())
