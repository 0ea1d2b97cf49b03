"""Load 9 of scripts/bench: a connection burst, held, then closed.

The client is scripts/burst's (imported, not copied): N non-blocking
connects from one thread as fast as it can issue them, then reading until
every client has its 220 or the deadline passes; greeted clients stay
connected.  Against a running server process (and its children: the
workers of a multi-process server), this measures:

  greeted      clients that got a 220 before the deadline (of N)
  greet_s      seconds from the first connect to the last 220 (inf: not all)
  rss_kib      (RSS while they are held - RSS before the burst) / greeted,
               summed over the server's process tree (/proc/PID/status VmRSS)
  close_rate   greeted / seconds from the first client close until the
               server has closed its end of all of them.  Each client shuts
               down its sending side (shutdown(SHUT_WR): the server reads end
               of input, as from a close()) and waits for the server's own
               close (end of input here); cheaper and more exact than counting
               the server's descriptors, and the same for every server.  At
               the deadline: the connections closed so far over the deadline

Linux only (/proc); the caller raises RLIMIT_NOFILE (N client sockets here).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import os
import resource
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from _bench_clients import BenchError


def _burst_script() -> ModuleType:
    """scripts/burst as a module (it has no .py suffix, so no plain import)."""
    name = "_burst_script"
    if name not in sys.modules:
        path = str(Path(__file__).with_name("burst"))
        loader = importlib.machinery.SourceFileLoader(name, path)
        spec = importlib.util.spec_from_loader(name, loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclass looks itself up there
        loader.exec_module(module)
    return sys.modules[name]


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant still running (parents from /proc/*/stat)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # "pid (comm) state ppid ...": comm may hold spaces and parentheses
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = [pid], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        tree += children
        frontier = children
    return tree


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total


@dataclass
class BurstResult:
    greeted: int
    greet_s: float
    rss_kib: float
    close_rate: float
    closed_all: bool
    lost: str  # what became of the clients not greeted, "" when all were


def run(pid: int, port: int, count: int, deadline: float) -> BurstResult:
    """One burst of `count` connections against the server process `pid` on `port`."""
    burst = _burst_script()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < count + 64:
        raise BenchError(f"descriptor limit {soft} is too low for a burst of {count}")
    try:
        rss0 = rss_kib(process_tree(pid))
    except OSError as exc:
        raise BenchError(f"cannot read /proc for pid {pid}: {exc}") from None
    tally = burst.Tally()
    held: list[socket.socket] = []
    try:
        burst.burst(port, count, deadline, tally, held)
        greeted = sorted(tally.greeted)
        if not greeted:
            raise BenchError(f"burst: no greeting ({tally.closed} closed, {tally.refused} refused)")
        greet_s = greeted[-1] if len(greeted) == count else math.inf
        # the whole tree as of now: the workers of a multi-process server too
        rss = (rss_kib(process_tree(pid)) - rss0) / len(greeted)
        rate, closed_all = _close_rate(held, deadline)
    finally:
        for sock in held:
            sock.close()
    return BurstResult(len(greeted), greet_s, rss, rate, closed_all, _lost(tally, count))


def _lost(tally: Any, count: int) -> str:
    waiting = tally.issued - len(tally.greeted) - tally.closed - tally.other
    counts = {
        "refused": tally.refused,
        "closed without 220": tally.closed,
        "other first reply": tally.other,
        "still waiting": waiting,
        "not issued": count - tally.issued - tally.refused,
    }
    return ", ".join(f"{n} {what}" for what, n in counts.items() if n)


def _close_rate(held: list[socket.socket], deadline: float) -> tuple[float, bool]:
    """Shut down our side of every held connection; per second, how many the server closes."""
    sel = selectors.DefaultSelector()
    try:
        t0 = last = time.perf_counter()
        open_ = len(held)
        for sock in held:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server has closed (reset) this one already
                open_ -= 1
                continue
            sel.register(sock, selectors.EVENT_READ)
        while open_ and (left := t0 + deadline - time.perf_counter()) > 0:
            for key, _ in sel.select(min(left, 0.5)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:  # reset: closed too
                    data = b""
                if not data:  # a 221 or other last words may come first
                    sel.unregister(sock)
                    open_ -= 1
                    last = time.perf_counter()
        if open_:
            return (len(held) - open_) / deadline, False
        return len(held) / max(last - t0, 1e-6), True
    finally:
        sel.close()


KEYS = ("burst_greeted", "burst_greet_s", "burst_rss", "burst_close")


def measure(pid: int, port: int, count: int, deadline: float) -> tuple[float, ...]:
    """run(), as the values of KEYS; what the figures leave out goes to stderr."""
    result = run(pid, port, count, deadline)
    if result.lost or not result.closed_all:
        unclosed = "" if result.closed_all else f"; not all closed within {deadline:g} s"
        print(f"  burst: {result.lost or 'all greeted'}{unclosed}", file=sys.stderr, flush=True)
    return (float(result.greeted), result.greet_s, result.rss_kib, result.close_rate)
