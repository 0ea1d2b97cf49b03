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
    """``python -m unittest args`` in ``cwd``; ``pythonpath`` goes first on the
    path, before this checkout (so its badsmtp, never another installed one)."""
    path = [str(pythonpath) if pythonpath else "", str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
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


def test_the_subprocess_runs_this_checkouts_badsmtp(tmp_path: Path) -> None:
    # With another badsmtp installed (an editable install of another
    # checkout), a PYTHONPATH of the examples alone would test that one.
    (tmp_path / "test_where.py").write_text(
        "import unittest\n\nimport badsmtp\n\n\n"
        "class Where(unittest.TestCase):\n"
        "    def test_where(self):\n"
        "        print('badsmtp from', badsmtp.__file__)\n",
        encoding="utf-8",
    )
    result = run_unittest("test_where", cwd=tmp_path, pythonpath=EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert f"badsmtp from {ROOT / 'badsmtp' / '__init__.py'}" in result.stdout
