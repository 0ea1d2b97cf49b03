"""examples/test_unittest_example.py runs green under ``python -m unittest``,
and its error check fails a test when the server recorded an internal error
(the failing twin)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

EXAMPLES = ROOT / "examples"

# Reuses the example's set-up (server, cleanup check) for one test that
# plants a bug in the server but passes on the client side.
TWIN = """
import socket

import test_unittest_example as example
from badsmtp import session


class Twin(example.SendMailTest):
    def test_planted_bug(self):
        original = session.Session.greeting
        def broken(self):
            raise RuntimeError("planted bug")
        session.Session.greeting = broken
        self.addCleanup(setattr, session.Session, "greeting", original)
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as sock:
            self.assertTrue(sock.recv(1024).startswith(b"421 "))
"""


def run_unittest(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-m", "unittest", "-v", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_unittest_example_passes() -> None:
    result = run_unittest("test_unittest_example", cwd=EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert "Ran 2 tests" in result.stderr and result.stderr.rstrip().endswith("OK")
    assert "ResourceWarning" not in result.stderr


def test_an_internal_error_fails_the_unittest(tmp_path: Path) -> None:
    (tmp_path / "test_twin.py").write_text(TWIN, encoding="utf-8")
    result = run_unittest("test_twin.Twin.test_planted_bug", cwd=tmp_path, pythonpath=EXAMPLES)
    assert result.returncode == 1
    assert "FAILED (failures=1)" in result.stderr
    assert "badsmtp recorded internal errors" in result.stderr
    assert "RuntimeError('planted bug')" in result.stderr
