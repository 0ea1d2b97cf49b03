"""TLS and full-plan timing for badsmtp and its TLS peer, run by scripts/bench (load 7).

Usage: python scripts/_bench_tls.py TRANSACTIONS CLIENTS ROUNDS PLAN_CYCLES [SERVERS]
       python scripts/_bench_tls.py serve        (internal: the badsmtp server process)

SERVERS is a comma-separated list of "badsmtp" (the default) and "aiosmtpd"
(scripts/_bench_aiosmtpd.py tls: aiosmtpd's implicit TLS and STARTTLS, with
the same kind of certificate).  Each server runs in a child process of its
own (badsmtp: BadSMTP(ports=[0, Listener(0, "tls")], capture=False)) so that
the Python client pool here does not share a GIL with it.  Each round, for
each server in turn, CLIENTS threads share TRANSACTIONS connections per
mode; every connection does the handshake with certificate and host-name
verification on (the server's own PEM trusted, like a test suite would),
EHLO, MAIL, RCPT, DATA, QUIT and closes:
  implicit  TLS first (port 465 style), then the SMTP exchange
  starttls  220, EHLO, STARTTLS, handshake, EHLO again, then the exchange
Then PLAN_CYCLES times, in this process: BadSMTP(...the 309-listener default
plan on free high ports...).serve_in_thread() and stop(), timed apart.
Prints one JSON object on stdout:
  {"servers": {"badsmtp": {"implicit_tps": [...], "starttls_tps": [...]},
               "aiosmtpd": {..., or "error": "why not"}},
   "plan_start_ms": [...], "plan_stop_ms": [...], "plan_listeners": 309,
   "plan_planned": 309, "tls_version": "TLSv1.3"}
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _bench_clients import HOST, BenchError, Wire

_BODY = b"From: <sender@example.com>\r\nSubject: bench tls\r\n\r\nhello\r\n.\r\n"


# --------------------------------------------------------------------------- server side


def serve() -> int:
    from badsmtp import BadSMTP, Listener

    with BadSMTP(ports=[0, Listener(0, "tls")], capture=False) as server:
        info = {
            "plain": server.port,
            "tls": server.port_for("tls"),
            "pem": server.certificate_pem(),
        }
        print(json.dumps(info), flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin
    return 0


# --------------------------------------------------------------------------- client pool


def _exchange(sock: socket.socket, wire: Wire) -> None:
    for line, code in (
        (b"EHLO bench.example\r\n", 250),
        (b"MAIL FROM:<sender@example.com>\r\n", 250),
        (b"RCPT TO:<rcpt@example.com>\r\n", 250),
        (b"DATA\r\n", 354),
        (_BODY, 250),
        (b"QUIT\r\n", 221),
    ):
        sock.sendall(line)
        wire.expect(code)


def _one(mode: str, port: int, context: ssl.SSLContext) -> str:
    raw = socket.create_connection((HOST, port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock: socket.socket = raw
    try:
        if mode == "starttls":
            wire = Wire(raw)
            wire.expect(220)
            raw.sendall(b"EHLO bench.example\r\nSTARTTLS\r\n")  # EHLO's reply, then 220
            wire.expect(250)
            wire.expect(220)
        sock = context.wrap_socket(raw, server_hostname="localhost")
        wire = Wire(sock)
        if mode == "implicit":
            wire.expect(220)
        _exchange(sock, wire)
        return sock.version() or "?"  # type: ignore[attr-defined]
    finally:
        sock.close()


def pool(
    mode: str, port: int, context: ssl.SSLContext, total: int, clients: int
) -> tuple[float, str]:
    """`total` connections over `clients` threads; (transactions/s, TLS version)."""
    tickets = itertools.count()
    errors: list[str] = []
    versions: set[str] = set()
    start = threading.Barrier(clients + 1)
    deadline = time.monotonic() + 120

    def worker() -> None:
        start.wait()
        while next(tickets) < total and time.monotonic() < deadline and not errors:
            try:
                versions.add(_one(mode, port, context))
            except (OSError, BenchError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 10)
    seconds = time.perf_counter() - t0
    if errors:
        raise BenchError(f"{mode}: {errors[0]}")
    if any(thread.is_alive() for thread in threads) or time.monotonic() > deadline:
        raise BenchError(f"{mode}: client threads did not finish in time")
    return total / seconds, ",".join(sorted(versions))


# --------------------------------------------------------------------------- full plan


def _free_block(size: int = 300) -> int:
    """A start port with `size` free ports after it, below the ephemeral range."""
    rng = random.Random()
    for _ in range(100):
        start = rng.randrange(10000, 32000 - size, 100)
        probes: list[socket.socket] = []
        try:
            for port in range(start, start + size):
                probe = socket.socket()
                probes.append(probe)
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((HOST, port))
            return start
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise BenchError("no block of 300 free ports in 10000-32000")


def plan_cycles(cycles: int) -> tuple[list[float], list[float], int]:
    from badsmtp import BadSMTP

    starts, stops, bound, planned = [], [], 0, 0
    for _ in range(cycles):
        first = _free_block()
        server = BadSMTP(
            greeting_delay_port_start=first,
            command_delay_port_start=first + 100,
            drop_delay_port_start=first + 200,
            port=0,
            tls_port=0,
            starttls_port=0,
            immediate_drop_port=0,
            tls_fault_port_start=0,
        )
        t0 = time.perf_counter()
        server.serve_in_thread()
        t1 = time.perf_counter()
        bound = len(server.listeners)
        planned = len(server._requested)  # the whole plan: every listener must bind
        server.stop()
        t2 = time.perf_counter()
        starts.append((t1 - t0) * 1e3)
        stops.append((t2 - t1) * 1e3)
    return starts, stops, bound, planned


# --------------------------------------------------------------------------- main


_SERVERS = {
    "badsmtp": [__file__, "serve"],
    "aiosmtpd": [str(Path(__file__).with_name("_bench_aiosmtpd.py")), "tls"],
}


def start(name: str, stack: contextlib.ExitStack) -> tuple[dict[str, Any], ssl.SSLContext]:
    """Start one server process (stopped when `stack` closes); its ports and a client context."""
    child = subprocess.Popen(
        [sys.executable, *_SERVERS[name]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    stack.callback(_stop, child)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise BenchError(f"{name} TLS server process exited (rc={child.wait()})")
    info = json.loads(line)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verification on
    context.load_verify_locations(cadata=info["pem"])
    _one("implicit", info["tls"], context)  # warm-up: badsmtp generates its first certificate
    return info, context


def _stop(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.close()
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    child.stdout.close()


def measure(names: list[str], total: int, clients: int, rounds: int) -> dict[str, Any]:
    """Every round, every server in turn, both modes; a server that fails gets an "error"."""
    result: dict[str, Any] = {
        "servers": {n: {"implicit_tps": [], "starttls_tps": []} for n in names}
    }
    with contextlib.ExitStack() as stack:
        live: dict[str, tuple[dict[str, Any], ssl.SSLContext]] = {}
        for name in names:
            try:
                live[name] = start(name, stack)
            except (BenchError, OSError, ValueError) as exc:
                result["servers"][name] = {"error": f"did not start: {exc}"}
        for _ in range(rounds):
            for name, (info, context) in list(live.items()):
                try:
                    for mode, port in (("implicit", info["tls"]), ("starttls", info["plain"])):
                        tps, version = pool(mode, port, context, total, clients)
                        result["servers"][name][f"{mode}_tps"].append(tps)
                        result["tls_version"] = version
                except BenchError as exc:
                    result["servers"][name] = {"error": str(exc)}
                    del live[name]
    return result


def main() -> int:
    if sys.argv[1:] == ["serve"]:
        return serve()
    total, clients, rounds, cycles = (int(a) for a in sys.argv[1:5])
    names = sys.argv[5].split(",") if len(sys.argv) > 5 else ["badsmtp"]
    result = measure(names, total, clients, rounds)
    (
        result["plan_start_ms"],
        result["plan_stop_ms"],
        result["plan_listeners"],
        result["plan_planned"],
    ) = plan_cycles(cycles)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench-tls: {exc}", file=sys.stderr)
        sys.exit(1)
