"""The single ``badsmtp`` executable (scripts/build-binary, PyInstaller --onefile)
runs without Python: started with no Python on PATH and no PYTHONPATH or
virtualenv, it prints its version, greets, negotiates STARTTLS (cryptography is
bundled: the certificate is generated at start) and answers SIGTERM with 421s
and exit status 0 (badsmtp(1), SIGNALS).

Built once per run (tests/buildonce.py), in 20 to 45 s on the project's 2-CPU
machine; PyInstaller comes with the test extra.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from buildonce import build_once
from helpers import ROOT, Client
from httpjson import call, get, send_mail
from test_cli import running
from test_cli_config import ephemeral_argv
from test_server import GREETING, SHUTTING_DOWN

from badsmtp import __version__


def _build(out: Path) -> None:
    build = [sys.executable, str(ROOT / "scripts" / "build-binary"), "--dist", str(out)]
    result = subprocess.run(build, check=False, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"build-binary failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import PyInstaller  # noqa: F401  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail(
            "PyInstaller is not installed: it comes with the test extra, pip install '.[test]'"
        )
    found = shutil.which(
        "badsmtp", path=build_once(tmp_path_factory, "binary", _build, timeout=900)
    )
    assert found is not None
    return Path(found)


def bare_env() -> dict[str, str]:
    """An environment in which no Python is found: only the system's bin directories."""
    if sys.platform == "win32":  # Windows needs SYSTEMROOT and friends to run anything
        return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return {"PATH": "/usr/bin:/bin"}


def test_the_binary_prints_its_version(binary: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [binary, "--version"],
        check=False,
        env=bare_env(),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"badsmtp {__version__}\n".encode(),
        b"",
    )


def test_the_binary_greets_and_negotiates_starttls(binary: Path, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    argv = [*ephemeral_argv(), "--write-tls-cert", str(cert)]
    with running(tmp_path, *argv, command=[str(binary)], env=bare_env()) as (proc, port):
        with Client(port) as c:
            assert c.reply() == GREETING
        starttls_port = json.loads((tmp_path / "ports.json").read_text())["starttls_port"]
        with smtplib.SMTP("127.0.0.1", starttls_port, timeout=10) as smtp:
            smtp.ehlo("client.test")
            assert smtp.has_extn("starttls")
            code, _ = smtp.starttls(context=ssl.create_default_context(cafile=str(cert)))
            assert code == 220
            assert smtp.ehlo("client.test")[0] == 250
            assert smtp.noop()[0] == 250
        # Not killed: the bootloader passes SIGTERM on to the server, not SIGKILL.
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no SIGTERM to send")
def test_the_binary_answers_sigterm_with_421_and_exit_status_0(
    binary: Path, tmp_path: Path
) -> None:
    argv = ephemeral_argv()
    with (
        running(tmp_path, *argv, command=[str(binary)], env=bare_env()) as (proc, port),
        Client(port) as c,
    ):
        assert c.reply() == GREETING
        proc.send_signal(signal.SIGTERM)
        assert c.read_to_eof() == SHUTTING_DOWN
        assert proc.wait(timeout=10) == 0
    assert b"Traceback" not in (tmp_path / "stderr").read_bytes()


def test_the_binary_serves_the_inspection_api_and_its_page(binary: Path, tmp_path: Path) -> None:
    argv = [*ephemeral_argv(), "--http-port", "0"]
    with running(tmp_path, *argv, command=[str(binary)], env=bare_env()) as (proc, port):
        http_port = json.loads((tmp_path / "ports.json").read_text())["http_port"]
        base = f"http://127.0.0.1:{http_port}"
        send_mail(port, b"Subject: bundled\r\n\r\nhi\r\n")
        assert get(base, "/api/v1/messages?wait=10")["messages"][0]["Subject"] == "bundled"
        for path in ("/", "/static/app.js", "/static/app.css"):
            status, _, _ = call(base, path)
            assert status == 200, path
        proc.terminate()
        proc.wait(timeout=10)
