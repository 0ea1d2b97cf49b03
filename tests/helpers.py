"""Helpers shared by the test modules (``from helpers import ...``): the
checkout's ROOT, command splitting, base64, port finders, the raw
:class:`Client`, :func:`serving` a BadSMTP that fails the test on an
internal error, and waiting (:func:`wait_until`, :func:`log_records`).
The fake shell that drives the pure core without sockets is ``fakeshell``."""

from __future__ import annotations

import base64
import logging
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import pytest

from badsmtp import BadSMTP

ROOT = Path(__file__).resolve().parent.parent  # the checkout: README.md, man/, examples/, scripts/


# What the operating system offers, for the workflow's macOS and Windows jobs:
# each says why the test cannot run there.
linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="reads /proc or uses prlimit(2): Linux only"
)
posix_signals = pytest.mark.skipif(
    sys.platform == "win32",
    reason="sends SIGTERM/SIGINT to another process, which Windows cannot; the portable "
    "path is tested on every platform with the POSIX calls removed (test_cli.py)",
)
posix_rlimit = pytest.mark.skipif(
    sys.platform == "win32", reason="the resource module (RLIMIT_NOFILE) is POSIX only"
)


def needs_tool(name: str, package: str, present: bool | None = None) -> pytest.MarkDecorator:
    """For a test that drives a Unix tool.  On Linux it runs, and fails if the
    tool is missing: .ci/run installs it.  Elsewhere (the workflow's macOS and
    Windows jobs) it skips when the tool is missing, and says which.
    ``present`` overrides the PATH lookup (a curl built without SMTP)."""
    found = shutil.which(name) is not None if present is None else present
    return pytest.mark.skipif(
        sys.platform != "linux" and not found,
        reason=f"{name} is not installed (Debian/Ubuntu: apt-get install -y {package})",
    )


def split_command(line: str) -> tuple[str, list[str]]:
    """Verb (upper-cased) and arguments (case kept) of a trimmed, non-empty
    command line, split at runs of spaces and tabs as the session splits
    them: ``str.split()`` would also split at CR, NBSP, U+2028 and the like.
    Verbs are case-insensitive (RFC 5321 §2.4)."""
    words = [word for word in line.replace("\t", " ").split(" ") if word]
    return words[0].upper(), words[1:]


def b64(text: str | bytes) -> str:
    """Base64 of ``text`` (UTF-8), as a SASL client sends it (RFC 4954 §4)."""
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def b64b(text: str | bytes) -> bytes:
    """:func:`b64` as octets, for a line sent on the wire."""
    return b64(text).encode("ascii")


# -- ports -------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port that is free right now.  Port 0 is better wherever
    it fits: this is for a test that must name the port before it binds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ranges(count: int, size: int = 100) -> list[int]:
    """``count`` adjacent ranges of ``size`` loopback ports, each free right
    now.  Below the kernel's ephemeral range (32768+), so that port-0
    listeners and client sockets never take one of them."""
    for _ in range(50):
        start = random.randrange(20000, 32000 - count * size, size)
        socks: list[socket.socket] = []
        try:
            for port in range(start, start + count * size):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return [start + i * size for i in range(count)]
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port ranges found")


# -- a raw client ------------------------------------------------------------------
class Client:
    """A raw SMTP client over a blocking socket: ``send`` bytes, read each
    ``reply`` exactly as sent.  Reads are bounded by a timeout, never by sleeping."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, predicate: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not predicate(self.buf):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply; have {self.buf!r}")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; have {self.buf!r}")
            self.buf += chunk
        return self.buf

    def reply(self, timeout: float = 5.0) -> bytes:
        """One complete (possibly multi-line) reply, exactly as sent."""
        self.read_until(lambda buf: _reply_end(buf) >= 0, timeout)
        end = _reply_end(self.buf)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def replies(self, count: int, timeout: float = 5.0) -> list[bytes]:
        return [self.reply(timeout) for _ in range(count)]

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def read_to_eof(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection still open; have {self.buf!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                out, self.buf = self.buf, b""
                return out
            self.buf += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reply_end(buf: bytes) -> int:
    """Index just past the first complete reply in ``buf``, or -1."""
    pos = 0
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return -1
        line = buf[pos:nl]
        if len(line) < 4 or line[3:4] != b"-":
            return nl + 1
        pos = nl + 1


# -- servers -----------------------------------------------------------------------
@contextmanager
def serving(*args: Any, **kwargs: Any) -> Iterator[BadSMTP]:
    """``BadSMTP(*args, **kwargs)``, serving in a thread for the ``with``
    block, then stopped.  Like the ``server`` fixture, the test fails if the
    server recorded an internal error (a bug in badsmtp, answered 421)."""
    srv = BadSMTP(*args, **kwargs).serve_in_thread()
    try:
        yield srv
    finally:
        srv.stop()
    assert srv.errors == [], f"internal errors in the server: {srv.errors!r}"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` with a deadline (no sleeping: a short event wait).
    Only for what nothing can be waited on: prefer ``wait_for_sessions``,
    ``wait_for_messages``, ``Transcript.wait_closed`` or an event."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.005)


class LogRecords(logging.Handler):
    """The records a logger emits, kept as they come, so that a test can
    wait for one (:meth:`wait_for`) instead of polling ``caplog``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._added = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._added:
            self.records.append(record)
            self._added.notify_all()

    def wait_for(
        self,
        predicate: Callable[[list[logging.LogRecord]], bool],
        timeout: float = 5.0,
        what: str = "records",
    ) -> None:
        with self._added:
            if not self._added.wait_for(lambda: predicate(self.records), timeout):
                raise AssertionError(f"timed out waiting for {what}: {self.records!r}")


@contextmanager
def log_records(name: str = "badsmtp") -> Iterator[LogRecords]:
    """Every record of logger ``name`` (and its children) while the block runs."""
    handler, logger = LogRecords(), logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def first_stderr_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The first line a ``badsmtp`` subprocess prints on stderr: printed once
    every listener is bound and the port file is in place; TimeoutError if
    none comes within ``timeout`` (waited for with a selector, not a sleep)."""
    assert proc.stderr is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"badsmtp printed nothing within {timeout} s")
    return proc.stderr.readline()


def terminate(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM a ``badsmtp`` process, which must exit 0 within ``timeout``
    (badsmtp(1), SIGNALS); reaped whatever happens."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=timeout) == 0
    finally:
        reap(proc)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` if it still runs, wait for it and close its stderr pipe."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()
