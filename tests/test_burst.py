"""A connection burst over real sockets: every client of a burst is greeted
and held, and when they all close at once the server processes every close
promptly (scripts/burst measures the same at 10,000 connections)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from helpers import serving, wait_until

from badsmtp import BadSMTP

GREETING_START = b"220 "
MOST = 1000  # connections: enough for a burst, few enough to take seconds
FEWEST = 200
DESCRIPTORS_PER_CONNECTION = 2  # the client's and the server's, both in this process
SPARE_DESCRIPTORS = 200  # pytest, the listener, the wake sockets, logs


@contextmanager
def descriptors_for(wanted: int) -> Iterator[int]:
    """How many connections this process can hold at once, up to ``wanted``:
    the soft descriptor limit raised towards the hard one for the ``with``
    block (and put back after).  Windows has no such limit to raise."""
    try:
        import resource
    except ImportError:
        yield FEWEST
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted * DESCRIPTORS_PER_CONNECTION + SPARE_DESCRIPTORS
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    raised = soft != resource.RLIM_INFINITY and target > soft
    if raised:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:
        limit = target if raised else soft
        room = wanted if limit == resource.RLIM_INFINITY else limit - SPARE_DESCRIPTORS
        yield max(FEWEST, min(wanted, room // DESCRIPTORS_PER_CONNECTION))
    finally:
        if raised:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_burst(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, all opened before any greeting is read: the
    kernel completes each handshake while the server is still accepting."""
    clients: list[socket.socket] = []
    try:
        for _ in range(count):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
    except BaseException:
        close_all(clients)
        raise
    return clients


def close_all(clients: list[socket.socket]) -> None:
    for client in clients:
        client.close()
    clients.clear()


def first_line(client: socket.socket) -> bytes:
    """The first reply line (a 220 arrives in one segment; a few more reads
    cover a split)."""
    data = b""
    while b"\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def live_connections(server: BadSMTP) -> int:
    runtime = server._runtime
    assert runtime is not None
    return len(runtime.connections)


def test_a_burst_is_greeted_held_and_every_close_processed() -> None:
    with descriptors_for(MOST) as count, serving(ports=[0]) as server:
        clients = open_burst(server.port, count)
        try:
            greetings = [first_line(client) for client in clients]
            not_greeted = [line for line in greetings if not line.startswith(GREETING_START)]
            assert not_greeted == [], f"{len(not_greeted)} of {count} not greeted"
            wait_until(lambda: live_connections(server) == count, 10, "every connection held")
        finally:
            t0 = time.monotonic()
            close_all(clients)
        # All clients closed at once: each handler thread wakes to its EOF.
        # Closing 1,000 takes well under a second when a close costs the
        # same however many are closing; the deadline catches a cost that
        # grows with their number (~150 per second at 10,000 once).
        wait_until(lambda: live_connections(server) == 0, 10, "every close processed")
        closed_in = time.monotonic() - t0
        runtime = server._runtime
        assert runtime is not None
        wait_until(lambda: runtime.pool.busy == 0, 5, "every handler job finished")
    print(f"{count} connections: closes processed in {closed_in:.2f} s", file=sys.stderr)
