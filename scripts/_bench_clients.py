"""Raw-socket SMTP clients for scripts/bench: greeting poll, churn, latency.

Raw sockets rather than smtplib: smtplib adds a makefile() layer and its own
parsing per reply, which is noise at the sub-millisecond scale we measure.
Every loop here is bounded by a count and a deadline.
"""

from __future__ import annotations

import itertools
import math
import socket
import statistics
import threading
import time
from dataclasses import dataclass

HOST = "127.0.0.1"


class BenchError(Exception):
    """A load could not be measured; the message says why."""


class Wire:
    """One client connection with its own receive buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def reply(self) -> tuple[int, bytes]:
        """Read one complete (possibly multi-line) reply; RFC 5321 §4.2.1."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise BenchError(f"connection closed, partial reply {self.buf[:80]!r}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                break
        try:
            return int(lines[-1][:3]), b"\r\n".join(lines)
        except ValueError:
            raise BenchError(f"malformed reply {lines[-1][:80]!r}") from None

    def expect(self, code: int) -> None:
        got, text = self.reply()
        if got != code:
            raise BenchError(f"expected {code}, got {text[:120]!r}")


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def wait_greeting(port: int, deadline: float, alive=lambda: True) -> float:
    """Poll until a 220 greeting is read; return perf_counter() at that moment.

    Refused connects are retried after 0.5 ms: a pure busy loop would steal a
    core from the server being started on this 2-core machine.
    """
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise BenchError("server process exited before greeting")
        try:
            with connect(port, timeout=max(0.1, deadline - time.monotonic())) as sock:
                wire = Wire(sock)
                wire.expect(220)
                now = time.perf_counter()
                sock.sendall(b"QUIT\r\n")
                return now
        except (ConnectionRefusedError, ConnectionResetError, BenchError) as exc:
            last_error = exc
            time.sleep(0.0005)
        except OSError as exc:
            last_error = exc
            time.sleep(0.005)
    raise BenchError(f"no 220 greeting before deadline (last error: {last_error})")


@dataclass
class ChurnResult:
    done: int
    errors: int
    first_error: str
    seconds: float


def churn(port: int, total: int, threads: int, timeout: float) -> ChurnResult:
    """Connect, read 220, QUIT, read 221, close; `total` times over `threads`."""
    tickets = itertools.count()  # next() on count is atomic under the GIL
    deadline = time.monotonic() + timeout
    lock = threading.Lock()
    stats = {"done": 0, "errors": 0, "first_error": ""}
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        done = errors = 0
        first = ""
        start.wait()
        while next(tickets) < total and time.monotonic() < deadline:
            try:
                with connect(port) as sock:
                    wire = Wire(sock)
                    wire.expect(220)
                    sock.sendall(b"QUIT\r\n")
                    wire.expect(221)
                done += 1
            except (OSError, BenchError) as exc:
                errors += 1
                first = first or f"{type(exc).__name__}: {exc}"
        with lock:
            stats["done"] += done
            stats["errors"] += errors
            stats["first_error"] = stats["first_error"] or first

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in pool:
        thread.join(max(0.0, deadline - time.monotonic()) + 10)
    seconds = time.perf_counter() - t0
    if any(thread.is_alive() for thread in pool):
        raise BenchError("churn client threads did not finish in time")
    return ChurnResult(stats["done"], stats["errors"], stats["first_error"], seconds)


_BODY = b"From: <sender@example.com>\r\nSubject: bench\r\n\r\nhello\r\n.\r\n"


def _transaction(sock: socket.socket, wire: Wire) -> None:
    # Lock-step, no pipelining: each round trip is part of what we time.
    sock.sendall(b"MAIL FROM:<sender@example.com>\r\n")
    wire.expect(250)
    sock.sendall(b"RCPT TO:<rcpt@example.com>\r\n")
    wire.expect(250)
    sock.sendall(b"DATA\r\n")
    wire.expect(354)
    sock.sendall(_BODY)
    wire.expect(250)


def latency(port: int, count: int, warmup: int, timeout: float) -> tuple[list[float], list[float]]:
    """Per-transaction and per-NOOP wall times in ms on one persistent connection.

    A transaction is four lock-step round trips; the NOOP round trip shows the
    floor this client and the loopback impose on each of them.
    """
    deadline = time.monotonic() + timeout
    samples: list[float] = []
    noops: list[float] = []
    with connect(port) as sock:
        wire = Wire(sock)
        wire.expect(220)
        sock.sendall(b"EHLO localhost\r\n")
        wire.expect(250)
        for i in range(warmup + count):
            if time.monotonic() > deadline:
                raise BenchError(f"latency run timed out after {len(samples)} transactions")
            t0 = time.perf_counter()
            _transaction(sock, wire)
            if i >= warmup:
                samples.append((time.perf_counter() - t0) * 1e3)
        for _ in range(count):
            if time.monotonic() > deadline:
                raise BenchError(f"NOOP run timed out after {len(noops)} round trips")
            t0 = time.perf_counter()
            sock.sendall(b"NOOP\r\n")
            wire.expect(250)
            noops.append((time.perf_counter() - t0) * 1e3)
        sock.sendall(b"QUIT\r\n")
        wire.expect(221)
    return samples, noops


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 is a measured value)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)
