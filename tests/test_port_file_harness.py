"""A harness that starts ``badsmtp`` as a subprocess learns every port from
``--port-file`` (badsmtp(1), --port-file): no fixed port, no polling a port,
no sleeping.  It waits for the process's first line on stderr (printed once
every listener is bound and the port file is in place), then reads the file
and connects at once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import Client, first_stderr_line, free_ranges, posix_signals, terminate


@posix_signals
def test_ports_come_from_the_port_file(tmp_path: Path) -> None:
    greeting, command, drop = free_ranges(3)
    port_file = tmp_path / "ports.json"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "badsmtp",
            "--port", "0", "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
            "--tls-fault-port-start", "0",
            "--greeting-delay-port-start", str(greeting),
            "--command-delay-port-start", str(command),
            "--drop-delay-port-start", str(drop),
            "--port-file", str(port_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"},
    )
    try:
        line = first_stderr_line(proc, timeout=30)
        assert line.startswith(b"badsmtp "), line
        ports = json.loads(port_file.read_text(encoding="utf-8"))
        assert ports["greeting_delay_ports"] == f"{greeting}-{greeting + 99}"
        assert ports["command_delay_ports"] == f"{command}-{command + 99}"
        assert ports["drop_delay_ports"] == f"{drop}-{drop + 99}"
        singles = [ports[k] for k in ("normal_port", "tls_port", "starttls_port", "immediate_drop_port")]
        assert all(isinstance(p, int) and p > 0 for p in singles) and len(set(singles)) == 4

        # Connect at once: every listener was bound before the file appeared.
        for port in (ports["normal_port"], ports["starttls_port"], greeting, command):
            with Client(port) as client:  # offset 0 in a delay range: no delay
                assert client.reply().startswith(b"220 ")
                assert client.command(b"QUIT").startswith(b"221 ")
        for port in (ports["immediate_drop_port"], drop):
            with Client(port) as client:
                assert client.read_to_eof() == b""
        with socket.create_connection(("127.0.0.1", ports["tls_port"]), timeout=5):
            pass  # implicit TLS: accepted (the handshake is tested elsewhere)
    finally:
        terminate(proc)
