"""Shared fixtures: a live server on an ephemeral loopback port, and a tiny
raw SMTP client that shows the exact bytes on the wire."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from helpers import serving
from hypothesis import HealthCheck, settings

from badsmtp import BadSMTP

# Property-based tests: bounded by default (seconds); ``--hypothesis-profile=long``
# fuzzes for as long as BADSMTP_FUZZ_EXAMPLES says (tests/test_fuzz_core.py).
_FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("bounded", max_examples=300, **_FUZZ)
settings.register_profile(
    "long", max_examples=int(os.environ.get("BADSMTP_FUZZ_EXAMPLES", "20000")), **_FUZZ
)
settings.load_profile("bounded")  # --hypothesis-profile, applied after this, wins


@pytest.fixture
def server() -> Iterator[BadSMTP]:
    """A running server on 127.0.0.1, port 0.  The test fails if the server
    recorded an internal error while it ran."""
    with serving(ports=[0]) as srv:
        yield srv


class Client:
    """A raw SMTP client over a blocking socket: ``send`` bytes, ``expect``
    replies.  Reads are bounded by a timeout, never by sleeping."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, predicate: "callable", timeout: float = 5.0) -> bytes:  # type: ignore[valid-type]
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

        def complete(buf: bytes) -> bool:
            return _reply_end(buf) >= 0

        self.read_until(complete, timeout)
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

    def __enter__(self) -> "Client":
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


@pytest.fixture
def client(server: BadSMTP) -> Iterator[Client]:
    """A raw client connected to ``server``, greeting already read."""
    with Client(server.port) as c:
        assert c.reply().startswith(b"220 ")
        yield c
