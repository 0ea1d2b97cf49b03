"""The ``badsmtp`` command: run the server in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from . import __version__
from .api import BadSMTP
from .config import Config, ConfigError
from .storage import StorageError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="badsmtp",
        description="The reliably unreliable SMTP server: errors, delays, drops, fake AUTH and TLS on demand.",
    )
    p.add_argument("--port", "-p", "-port", type=int, default=Config().port, help="main port (default 2525)")
    p.add_argument("--listen-address", default=Config().listen_address, help="address for every listener (default 127.0.0.1)")
    p.add_argument(
        "--mailbox", "-m", "-mailbox", "--mailbox-dir", dest="mailbox_dir", nargs="?", const="./mailbox",
        default=None, help="store accepted messages in this maildir (default: off; without a value ./mailbox)",
    )
    p.add_argument("--version", action="version", version=f"badsmtp {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        server = BadSMTP(
            capture=False, port=args.port, listen_address=args.listen_address, mailbox_dir=args.mailbox_dir
        )
        server.serve_in_thread()
    except (OSError, ConfigError, ValueError, StorageError) as exc:  # one line, no traceback
        print(f"badsmtp: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if done.is_set():  # a second signal during shutdown: leave at once
            raise SystemExit(1)
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"badsmtp {__version__} listening on {args.listen_address} port {server.port}", flush=True)
    while not done.wait(3600):
        pass
    server.stop()
    return 0
