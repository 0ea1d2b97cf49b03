"""Accepting connections under load: the listen backlog, running out of
descriptors, and a handler thread that cannot start."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from badsmtp import BadSMTP
from badsmtp.accepting import SOMAXCONN_FILE, max_backlog


def _accept_queue_limit(port: int) -> int:
    """A listening socket's backlog, as the kernel holds it: ``ss`` shows it
    in the Send-Q column (iproute2; .ci/run installs it)."""
    ss = shutil.which("ss")
    assert ss is not None, "this test needs ss (iproute2)"
    out = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.split()
    assert out[0] == "LISTEN", out
    return int(out[2])


def test_a_listener_gets_the_largest_backlog_the_system_allows() -> None:
    with open(SOMAXCONN_FILE, encoding="ascii") as file:
        somaxconn = int(file.read())
    with BadSMTP(ports=[0]) as server:
        assert _accept_queue_limit(server.port) == somaxconn


def test_max_backlog_reads_somaxconn(tmp_path: Path) -> None:
    path = tmp_path / "somaxconn"
    path.write_text("65535\n")
    assert max_backlog(str(path)) == 65535


def test_max_backlog_falls_back_to_the_constant(tmp_path: Path) -> None:
    assert max_backlog(str(tmp_path / "absent")) == socket.SOMAXCONN  # macOS, Windows
    (tmp_path / "garbage").write_text("many\n")
    assert max_backlog(str(tmp_path / "garbage")) == socket.SOMAXCONN
