"""The README's "Running in CI" recipes use only what exists: every flag
given to ``badsmtp`` and every ``BADSMTP_*`` variable is one the command
reads, every port-file field read is one it writes, and the plain shell
recipe runs as printed, with a real client as the test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from badsmtp import portplan
from badsmtp.config import Config
from badsmtp.optionkeys import KEYS
from badsmtp.optionparser import build_parser

HEADING = "## Running in CI"


def _section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(HEADING)
    return readme[start : readme.index("\n## ", start + len(HEADING))]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", _section(), re.DOTALL | re.MULTILINE)


def _badsmtp_flags(text: str) -> set[str]:
    """The flags on every line that runs ``badsmtp``."""
    flags: set[str] = set()
    for line in text.splitlines():
        m = re.search(r"(?:^|[\s;&|-])badsmtp (.*)", line)
        if m and "pip install" not in line:
            flags.update(re.findall(r"(?<!\S)(--?[a-z][a-z-]*)", m.group(1)))
    return flags


def test_the_section_has_a_shell_a_github_and_a_gitlab_recipe() -> None:
    assert len(_blocks("sh")) == 1
    yamls = [yaml.safe_load(block) for block in _blocks("yaml")]
    assert len(yamls) == 2
    github, gitlab = yamls
    assert [step["name"] for step in github] == ["Start badsmtp", "Test"]
    assert set(gitlab) == {"test"}


def test_every_flag_is_one_badsmtp_takes() -> None:
    used = _badsmtp_flags(_section())
    assert used >= {"--port-file", "--port", "--mailbox"}  # the check has something to check
    known = set(build_parser()._option_string_actions)
    assert used <= known, used - known


def test_every_variable_is_one_badsmtp_reads() -> None:
    used = set(re.findall(r"\bBADSMTP_[A-Z_]+\b", _section()))
    assert used, "the recipes set no BADSMTP_ variable: nothing to check"
    known = {key.env for key in KEYS} | {name for key in KEYS for name in key.aliases}
    assert used <= known, used - known


def test_every_port_file_field_read_is_one_written() -> None:
    used = set(re.findall(r'\["(\w+)"\]', _section()))
    assert used == {"normal_port"}
    config = Config()
    assert used <= set(portplan.port_fields(config, portplan.plan_listeners(config)))


def test_the_recipes_port_is_the_default_one() -> None:
    assert "127.0.0.1:2525" in _section() and Config().port == 2525


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell recipe")
def test_the_shell_recipe_runs_as_printed(tmp_path: Path) -> None:
    """The recipe in sh, in a fresh directory; ``your-test-command`` sends one
    message with smtplib and the stored message is then in ``mail/new``."""
    client = tmp_path / "bin" / "your-test-command"
    client.parent.mkdir()
    client.write_text(
        f"#!{sys.executable}\nimport os, smtplib\n"
        "with smtplib.SMTP('127.0.0.1', int(os.environ['SMTP_PORT']), timeout=10) as s:\n"
        "    s.sendmail('a@example.com', ['b@example.com'], 'Subject: ci\\r\\n\\r\\nhello\\r\\n')\n"
    )
    client.chmod(0o755)
    scripts = Path(sys.executable).parent  # badsmtp's console script lives beside python
    assert shutil.which("badsmtp", path=str(scripts)), "badsmtp is not installed beside python"
    path = os.pathsep.join([str(client.parent), str(scripts), os.environ.get("PATH", "")])
    done = subprocess.run(["sh", "-ec", _blocks("sh")[0]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "PATH": path})
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "badsmtp.log").read_text()
    stored = list((tmp_path / "mail" / "new").iterdir())
    assert len(stored) == 1 and stored[0].read_bytes().endswith(b"\r\n\r\nhello\r\n")
    assert '"Shutdown signal received' in (tmp_path / "badsmtp.log").read_text()
