"""``python -m badsmtp`` as a subprocess: start-up report, signals, exit status,
maildir storage, bind errors and ``--version`` (badsmtp(1), EXIT STATUS and
SIGNALS)."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Client
from test_server import GREETING, SHUTTING_DOWN, wait_until

STARTED = re.compile(rb"^badsmtp 0\.1\.0 listening on 127\.0\.0\.1 port (\d+)$", re.MULTILINE)


# Prepended to a script run with ``python -c``: the POSIX-only calls gone, as
# on Windows, so badsmtp must take its portable signal path (badsmtp.stopsignals).
WITHOUT_SIGWAIT = """
import signal, sys
for name in ("pthread_sigmask", "sigwait", "sigpending"):
    delattr(signal, name)
"""
# The whole CLI so, and without the resource module either (Windows has none).
CLI_WITHOUT_SIGWAIT = WITHOUT_SIGWAIT + """
sys.modules["resource"] = None
from badsmtp.cli import main
sys.exit(main())
"""
POSIX_SIGNALS = pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals to a subprocess")


def _command(*args: str, portable: bool = False) -> list[str]:
    if portable:
        return [sys.executable, "-c", CLI_WITHOUT_SIGWAIT, *args]
    return [sys.executable, "-m", "badsmtp", *args]


@functools.cache
def _has_port_file() -> bool:
    """Whether this CLI writes a port file (badsmtp(1), --port-file); the first, minimal
    CLI instead prints ``badsmtp 0.1.0 listening on 127.0.0.1 port N``."""
    out = subprocess.run(_command("--help"), check=False, capture_output=True, timeout=30)
    return b"--port-file" in out.stdout


def _bound_port(out: Path, port_file: Path | None) -> int | None:
    if port_file is not None:
        if port_file.exists():  # written atomically: whole or absent
            return int(json.loads(port_file.read_text())["normal_port"])
        return None
    m = STARTED.search(out.read_bytes())
    return int(m.group(1)) if m else None


@contextmanager
def running(
    tmp_path: Path,
    *args: str,
    portable: bool = False,
    command: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start the CLI (``python -m badsmtp``, with the portable signal path if
    asked, or ``command`` such as the single binary, in ``env``) with its
    output in files (a full pipe could block it),
    wait with a deadline until it reports its port, yield it and the port;
    kill it if the test did not make it exit."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    port_file = tmp_path / "ports.json" if _has_port_file() else None
    extra = ["--port-file", str(port_file)] if port_file is not None else []
    argv = [*command, *args, *extra] if command else _command(*args, *extra, portable=portable)
    with out.open("wb") as stdout, err.open("wb") as stderr, subprocess.Popen(
        argv, stdout=stdout, stderr=stderr, env=env
    ) as proc:
        try:
            port: list[int] = []

            def started() -> bool:
                found = _bound_port(out, port_file)
                if found is not None:
                    port.append(found)
                assert proc.poll() is None or port, f"badsmtp exited early: {err.read_bytes()!r}"
                return bool(port)

            wait_until(started, timeout=15, what="badsmtp to report its port")
            yield proc, port[0]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def _stderr(tmp_path: Path) -> bytes:
    return (tmp_path / "stderr").read_bytes()


@POSIX_SIGNALS
@pytest.mark.parametrize("portable", [False, True], ids=["sigwait", "without-sigwait"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_gracefully_with_status_0(
    tmp_path: Path, signum: signal.Signals, portable: bool
) -> None:
    with running(tmp_path, "--port", "0", portable=portable) as (proc, port):
        with Client(port) as c:
            assert c.reply() == GREETING
            t0 = time.monotonic()
            proc.send_signal(signum)
            # The live session was told (badsmtp(1), SIGNALS).
            assert c.read_to_eof() == SHUTTING_DOWN
            assert proc.wait(timeout=5) == 0
            assert time.monotonic() - t0 < 5
        assert b"Traceback" not in _stderr(tmp_path)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


# The CLI's signal handling alone: wait() until the first signal, then a
# "graceful shutdown" that never ends, so only a second signal can end it.
SIGNALS_SCRIPT = """
import os, signal, sys, threading, time
from badsmtp.stopsignals import stop_signals
with stop_signals(threading.Event()) as signals:
    print(type(signals).__name__, flush=True)
    if sys.argv[1] == "early":
        os.kill(os.getpid(), signal.SIGTERM)  # before wait(): it must stay pending
    if sys.argv[1] == "unused":
        os.kill(os.getpid(), signal.SIGINT)  # and the start-up fails: no wait()
        sys.exit(3)
    print("waiting", flush=True)
    signals.wait()
    print("stopping", flush=True)
    threading.Event().wait()
"""
# Both ways of taking signals: sigwait() (POSIX), the wake-up socket (Windows).
WAYS = pytest.mark.parametrize(
    "way", [("BlockedSignals", ""), ("WakeupSignals", WITHOUT_SIGWAIT)], ids=["sigwait", "without-sigwait"]
)


def _signals_command(mode: str, way: tuple[str, str]) -> list[str]:
    return [sys.executable, "-c", way[1] + SIGNALS_SCRIPT, mode]


def _signals_script(mode: str, way: tuple[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(_signals_command(mode, way), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == f"{way[0]}\n".encode()
    assert proc.stdout.readline() == b"waiting\n"
    return proc


@POSIX_SIGNALS
@WAYS
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_shutdown_exits_at_once(
    second: signal.Signals, way: tuple[str, str]
) -> None:
    with _signals_script("late", way) as proc:
        assert proc.stdout is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == b"stopping\n"
        t0 = time.monotonic()
        proc.send_signal(second)
        assert proc.wait(timeout=5) == 128 + second
        assert time.monotonic() - t0 < 2


@POSIX_SIGNALS
@WAYS
def test_a_signal_during_a_failed_start_leaves_no_traceback(way: tuple[str, str]) -> None:
    done = subprocess.run(
        _signals_command("unused", way), check=False, capture_output=True, timeout=30
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, f"{way[0]}\n".encode(), b"")


@POSIX_SIGNALS
@WAYS
def test_a_signal_sent_while_starting_is_not_lost(way: tuple[str, str]) -> None:
    with _signals_script("early", way) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"stopping\n"  # wait() took the pending signal
        proc.kill()


def test_mailbox_option_stores_a_message(tmp_path: Path) -> None:
    mb = tmp_path / "mb"
    with running(tmp_path, "--port", "0", "--mailbox", str(mb)) as (proc, port):
        assert sorted(os.listdir(mb)) == ["cur", "new", "tmp"]
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            assert smtp.sendmail("alice@example.com", ["bob@example.com"], b"Subject: cli\r\n\r\nbody\r\n") == {}
        [name] = os.listdir(mb / "new")
        data = (mb / "new" / name).read_bytes()
        assert data.startswith(b"From: alice@example.com\r\nTo: bob@example.com\r\nReceived: by badsmtp.test; ")
        assert data.endswith(b"\r\n\r\nSubject: cli\r\n\r\nbody\r\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    assert os.listdir(mb / "tmp") == []


def test_busy_port_exits_non_zero_with_one_line_on_stderr() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = subprocess.run(_command("--port", str(port)), check=False, capture_output=True, timeout=30)
    assert result.returncode != 0
    assert b"Traceback" not in result.stdout + result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0]
    assert "Address already in use" in lines[0]


def test_unwritable_mailbox_exits_non_zero_with_one_line_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_bytes(b"")
    result = subprocess.run(_command("--port", "0", "--mailbox", str(path)), check=False, capture_output=True, timeout=30)
    assert result.returncode != 0
    assert b"Traceback" not in result.stdout + result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr
    assert "failed to create mailbox: " in lines[0]


def test_version() -> None:
    result = subprocess.run(_command("--version"), check=False, capture_output=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout == b"badsmtp 0.1.0\n"
    assert result.stderr == b""


def test_main_is_callable_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    from badsmtp import cli

    try:
        status = cli.main(["--version"])
    except SystemExit as exc:  # argparse's own exit
        status = exc.code  # type: ignore[assignment]
    assert status == 0
    assert capsys.readouterr().out == "badsmtp 0.1.0\n"


def test_the_signal_path_is_chosen_by_what_the_platform_has(monkeypatch: pytest.MonkeyPatch) -> None:
    from badsmtp.stopsignals import BlockedSignals, WakeupSignals, sigwait_available, stop_signals

    native = BlockedSignals if sys.platform != "win32" else WakeupSignals
    assert type(stop_signals(threading.Event())) is native
    assert type(stop_signals(threading.Event(), portable=True)) is WakeupSignals
    monkeypatch.delattr(signal, "sigpending", raising=False)
    assert not sigwait_available()
    assert type(stop_signals(threading.Event())) is WakeupSignals
