"""The command's interpreter-wide thread settings: made while it serves, put
back after, and never made by the library."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from helpers import Client, linux_only, serving
from test_cli import running
from wire import GREETING

from badsmtp.threadsettings import STACK_SIZE, SWITCH_INTERVAL, pinned, serving_threads


def _settings() -> tuple[int, float]:
    return threading.stack_size(), sys.getswitchinterval()


def test_the_settings_hold_while_serving_and_are_put_back() -> None:
    before = _settings()
    assert before != (STACK_SIZE, SWITCH_INTERVAL)
    with serving_threads():
        stack, interval = _settings()
        assert stack == STACK_SIZE
        assert interval == pytest.approx(SWITCH_INTERVAL)  # kept in microseconds
    assert _settings() == before


def test_the_library_leaves_them_to_its_host() -> None:
    before = _settings()
    with serving(ports=[0]) as server, Client(server.port) as client:
        assert client.reply() == GREETING
        assert _settings() == before


def _stacks_of(pid: int, size: int) -> int:
    """Writable anonymous mappings of exactly ``size`` bytes: thread stacks
    (glibc maps the guard page apart, so a stack is a mapping of its own)."""
    count = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if len(fields) == 5 and fields[1] == "rw-p" and end - start == size:
            count += 1
    return count


@linux_only
def test_the_command_starts_its_threads_with_the_smaller_stack(tmp_path: Path) -> None:
    with running(tmp_path, "--port", "0") as (proc, port), Client(port) as client:
        assert client.reply() == GREETING  # the handler thread runs
        # the acceptor, the log writer and the handler, at least
        assert _stacks_of(proc.pid, STACK_SIZE) >= 3


def _allowed(pid: int | str) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return status.split("Cpus_allowed_list:", 1)[1].split()[0]


@linux_only
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_pinned_keeps_the_thread_and_its_new_threads_on_one_cpu_then_gives_them_back() -> None:
    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []
    with pinned(1) as done:
        assert done and len(os.sched_getaffinity(0)) == 1
        thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        thread.start()
        thread.join()
    assert seen == [{sorted(before)[1]}]
    assert os.sched_getaffinity(0) == before
    with pinned(None) as done:
        assert not done and os.sched_getaffinity(0) == before


@linux_only
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPUs")
def test_the_command_keeps_to_one_cpu_unless_told_not_to(tmp_path: Path) -> None:
    (tmp_path / "pin").mkdir()
    (tmp_path / "none").mkdir()
    with running(tmp_path / "pin", "--port", "0") as (proc, port), Client(port) as client:
        assert client.reply() == GREETING
        assert _allowed(proc.pid).isdigit()  # one CPU, every thread of it
        assert {_allowed(f"{proc.pid}/task/{t}") for t in os.listdir(f"/proc/{proc.pid}/task")} == {
            _allowed(proc.pid)
        }
    with running(tmp_path / "none", "--port", "0", "--cpu-affinity", "none") as (proc, port), \
            Client(port) as client:
        assert client.reply() == GREETING
        assert _allowed(proc.pid) == _allowed("self")
