"""In-process lifecycle timing of the embedding API, run by scripts/bench.

Usage: python scripts/_bench_inprocess.py COUNT

Runs in its own interpreter so that a hang or crash in badsmtp cannot take the
benchmark down with it. Prints one JSON object on stdout:
  {"construct_ms": [...], "serve_stop_ms": [...], "total_ms": [...],
   "greeting": "220 ..."}
where serve_stop_ms times serve_in_thread() + stop() (the issue's target) and
total_ms also includes BadSMTP(ports=[0]) (binding the socket).
"""

import json
import socket
import sys
import time


def _greeting(port: int) -> str:
    # One real round trip first, so we know the thing we time actually serves.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        buf = b""
        deadline = time.monotonic() + 5
        while b"\n" not in buf and time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        sock.sendall(b"QUIT\r\n")
    return buf.split(b"\r\n", 1)[0].decode("ascii", "replace")


def main() -> int:
    count = int(sys.argv[1])
    from badsmtp import BadSMTP

    with BadSMTP(ports=[0]) as server:
        greeting = _greeting(server.port)
    construct, serve_stop, total = [], [], []
    for _ in range(count):
        t0 = time.perf_counter()
        server = BadSMTP(ports=[0])
        t1 = time.perf_counter()
        server.serve_in_thread()
        server.stop()
        t2 = time.perf_counter()
        construct.append((t1 - t0) * 1e3)
        serve_stop.append((t2 - t1) * 1e3)
        total.append((t2 - t0) * 1e3)
    json.dump(
        {
            "construct_ms": construct,
            "serve_stop_ms": serve_stop,
            "total_ms": total,
            "greeting": greeting,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
