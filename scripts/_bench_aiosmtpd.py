"""Minimal aiosmtpd sink, the asyncio peer for scripts/bench.

Usage: python scripts/_bench_aiosmtpd.py PORT

Listens on 127.0.0.1:PORT until killed; every message is accepted with
"250 OK" and dropped. The hostname is fixed so that aiosmtpd does not call
socket.getfqdn() for every connection (resolver speed is not what we measure),
and the listen backlog is raised from asyncio's default of 100 so connection
bursts measure the server rather than the accept queue.
"""

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP


class _Sink:
    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        return "250 OK"


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = _Sink()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost"),
        host="127.0.0.1",
        port=port,
        backlog=1024,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> int:
    asyncio.run(_serve(int(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
