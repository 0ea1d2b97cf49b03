"""The ``badsmtp`` command with ``--http-port`` (badsmtp(1), INSPECTION API;
README, From any language): the port file names the HTTP port, storage off
still keeps contents for the API, and the README's curl examples run
against a real server as written (only the port numbers replaced)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import ROOT, first_stderr_line, free_ranges, needs_tool, posix_signals, terminate
from httpjson import call, get, send_mail
from test_auth_e2e import _curl_has_smtp

HEADING = "## From any language"
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)


@contextmanager
def cli(tmp_path: Path, *extra: str) -> Iterator[dict[str, int]]:
    """``badsmtp --http-port 0`` with every other port ephemeral or free;
    yields the port file's fields; stopped with SIGTERM, exit status 0."""
    greeting, command, drop = free_ranges(3)
    port_file = tmp_path / "ports.json"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "badsmtp", "--http-port", "0",
            "--port", "0", "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
            "--tls-fault-port-start", "0", "--greeting-delay-port-start", str(greeting),
            "--command-delay-port-start", str(command), "--drop-delay-port-start", str(drop),
            "--port-file", str(port_file), *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"},
    )  # fmt: skip
    try:
        assert first_stderr_line(proc, timeout=30).startswith(b"badsmtp ")
        yield json.loads(port_file.read_text(encoding="utf-8"))
    finally:
        terminate(proc)


@posix_signals
def test_the_port_file_names_the_http_port_and_storage_off_keeps_contents(tmp_path: Path) -> None:
    with cli(tmp_path) as ports:
        assert isinstance(ports["http_port"], int) and ports["http_port"] > 0
        base = f"http://127.0.0.1:{ports['http_port']}"
        send_mail(ports["normal_port"], b"Subject: from the CLI\r\n\r\nhello\r\n")
        (summary,) = get(base, "/api/v1/messages?wait=10")["messages"]
        assert summary["Subject"] == "from the CLI"
        status, raw, _ = call(base, f"/api/v1/message/{summary['ID']}/raw")
        assert (status, raw) == (200, b"Subject: from the CLI\r\n\r\nhello\r\n")
        (session,) = get(base, "/api/v1/sessions?wait=10")["sessions"]
        assert session["ID"] == summary["SessionID"] and session["Messages"] == 1


@posix_signals
def test_with_a_mailbox_the_cli_reads_contents_from_the_maildir(tmp_path: Path) -> None:
    with cli(tmp_path, "--mailbox", str(tmp_path / "mail"), "--http-keep", "2") as ports:
        base = f"http://127.0.0.1:{ports['http_port']}"
        for n in range(3):
            send_mail(ports["normal_port"], b"Subject: %d\r\n\r\nhello\r\n" % n)
        listing = get(base, "/api/v1/messages?wait=10&count=2")
        assert [m["Subject"] for m in listing["messages"]] == ["2", "1"]
        detail = get(base, f"/api/v1/message/{listing['messages'][0]['ID']}")
        assert detail["Stored"] == "maildir"


def test_http_port_with_workers_is_a_configuration_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "badsmtp", "--http-port", "0", "--workers", "2", "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("configuration error: --http-port needs one process")
    assert done.stderr.count("\n") == 1


def test_the_settings_come_from_the_environment_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "badsmtp", "--print-config"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "BADSMTP_HTTP_PORT": "8025", "BADSMTP_HTTP_KEEP": "5"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"^http_port: 8025 +# env BADSMTP_HTTP_PORT$", done.stdout, re.MULTILINE)
    assert re.search(r"^http_keep: 5 +# env BADSMTP_HTTP_KEEP$", done.stdout, re.MULTILINE)
    assert re.search(r'^http_port: "" +# default$', _print_config(), re.MULTILINE)


def _print_config() -> str:
    return subprocess.run(
        [sys.executable, "-m", "badsmtp", "--print-config"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip


def test_bad_values_are_one_line_errors() -> None:
    for option, value in (("--http-port", "70000"), ("--http-keep", "0"), ("--http-port", "x")):
        done = subprocess.run(
            [sys.executable, "-m", "badsmtp", option, value, "--port", "0"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, (option, value, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


# -- README, From any language --------------------------------------------------------------
def readme_commands() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(HEADING) + len(HEADING)
    end = readme.find("\n## ", start)
    (block,) = _SH_BLOCK.findall(readme[start:end])
    return str(block)


def test_the_readme_starts_the_server_as_the_test_does() -> None:
    first, *rest = readme_commands().splitlines()
    assert first == "badsmtp --http-port 8025 &"
    assert any("swaks" in line or "curl" in line for line in rest)


@posix_signals
@needs_tool("curl", "curl", present=_curl_has_smtp())
def test_the_readme_curl_examples_run(tmp_path: Path) -> None:
    script = readme_commands().split("\n", 1)[1]  # the server is started here
    with cli(tmp_path) as ports:
        script = script.replace("127.0.0.1:2525", f"127.0.0.1:{ports['normal_port']}")
        script = script.replace("localhost:8025", f"localhost:{ports['http_port']}")
        assert "8025" not in script and "2525" not in script
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert '"Subject": "Hello"' in out
        assert "\nHi Bob.\n" in out  # the raw content (newlines translated by text=True)
        assert '"Headers": {"Subject": ["Hello"]}' in out
        assert '"Commands": ' in out and '"Role": "main"' in out
        assert out.rstrip().endswith('{"reset": true}')
        base = f"http://127.0.0.1:{ports['http_port']}"
        assert get(base, "/api/v1/messages")["total"] == 0
