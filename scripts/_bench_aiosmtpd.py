"""Minimal aiosmtpd sink, the asyncio peer for scripts/bench.

Usage: python scripts/_bench_aiosmtpd.py PORT
       python scripts/_bench_aiosmtpd.py tls     (the TLS peer of scripts/_bench_tls.py)

With PORT: listens on 127.0.0.1:PORT until killed; every message is accepted
with "250 OK" and dropped. The hostname is fixed so that aiosmtpd does not
call socket.getfqdn() for every connection (resolver speed is not what we
measure), and the listen backlog is raised from asyncio's default of 100 so
connection bursts measure the server rather than the accept queue.

With "tls": the same sink on two free ports, one with implicit TLS (the
server socket wrapped, as aiosmtpd's Controller(ssl_context=...) does) and
one offering STARTTLS (SMTP(tls_context=..., require_starttls=False)). The
certificate is the kind badsmtp presents (badsmtp.certificate: self-signed
EC P-256 for "localhost"), so both servers do the same handshake work.
Prints {"plain": PORT, "tls": PORT, "pem": CERT} on stdout, like
_bench_tls.py's badsmtp server, and serves until its stdin is closed.
"""

import asyncio
import datetime
import ipaddress
import json
import os
import signal
import ssl
import sys
import tempfile

from aiosmtpd.smtp import SMTP


class _Sink:
    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        return "250 OK"


def _listen(loop, factory, port: int, context: ssl.SSLContext | None = None):
    return loop.create_server(factory, host="127.0.0.1", port=port, backlog=1024, ssl=context)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = _Sink()
    server = await _listen(loop, lambda: SMTP(handler, hostname="localhost"), port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _tls_context() -> tuple[ssl.SSLContext, str]:
    """A server context like badsmtp's (TLS 1.2 at least), and its certificate PEM."""
    from badsmtp.certificate import generate  # on PYTHONPATH: scripts/bench sets it

    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert, key = generate("localhost", ["localhost"], [ipaddress.IPv4Address("127.0.0.1")], now)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    fd, path = tempfile.mkstemp(suffix=".pem")  # load_cert_chain only takes a path
    try:
        with os.fdopen(fd, "w") as file:
            file.write(cert + key)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)
    return context, cert


async def _serve_tls() -> None:
    loop = asyncio.get_running_loop()
    handler = _Sink()
    context, pem = _tls_context()
    implicit = await _listen(loop, lambda: SMTP(handler, hostname="localhost"), 0, context)
    starttls = await _listen(
        loop,
        lambda: SMTP(handler, hostname="localhost", tls_context=context, require_starttls=False),
        0,
    )
    ports = {
        name: s.sockets[0].getsockname()[1] for name, s in (("tls", implicit), ("plain", starttls))
    }
    print(json.dumps({**ports, "pem": pem}), flush=True)
    async with implicit, starttls:
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


def main() -> int:
    asyncio.run(_serve_tls() if sys.argv[1] == "tls" else _serve(int(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
