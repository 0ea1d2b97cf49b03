"""The README's two commands (``python3 scripts/bootstrap run|test``): a fresh
virtual environment made from a Python that is not one, badsmtp installed
into it and run as the same process (signals reach it), pip fetched from
PyPI where ``ensurepip`` is missing (Debian/Ubuntu without python3-venv),
and an active virtualenv used as it is.  Each test runs a copy of the
checkout, so builds never share the source tree's ``build/``."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, Client, wait_until

import badsmtp

GREETING_CODE = b"220 "
# The interpreter this virtualenv (if any) was made from: the one a new user has.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
HIDE_ENSUREPIP = (
    "import runpy, sys; sys.modules['ensurepip'] = None; sys.argv[0:1] = []; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"^```bash\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)]


def test_the_readme_commands_are_the_bootstrap_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    run, test = _bash_blocks(readme)[:2]
    assert (run, test) == ("python3 scripts/bootstrap run", "python3 scripts/bootstrap test")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == test


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``pip install .`` needs from the checkout, copied."""
    copy = tmp_path_factory.mktemp("checkout")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, copy / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    for name in ("badsmtp", "man", "scripts"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    return copy


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["BADSMTP_VENV"] = str(venv)
    return env


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _bootstrap(checkout: Path, venv: Path, *args: str, python: str = BASE_PYTHON,
               hide_ensurepip: bool = False) -> subprocess.CompletedProcess[str]:
    script = str(checkout / "scripts" / "bootstrap")
    prefix = ["-c", HIDE_ENSUREPIP] if hide_ensurepip else []
    return subprocess.run([python, *prefix, script, *args], env=_env(venv), capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def made(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment the bootstrap made and installed badsmtp into."""
    venv = tmp_path_factory.mktemp("made") / "venv"
    result = _bootstrap(checkout, venv, "run", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"badsmtp {badsmtp.__version__}\n"
    assert f"creating a virtual environment in {venv}" in result.stderr
    return venv


def test_run_makes_a_virtualenv_and_installs_badsmtp_into_it(made: Path) -> None:
    assert (made / "pyvenv.cfg").is_file()
    # Linked, not copied, as `python -m venv` does: a copied interpreter runs
    # its old binary against the new standard library after a system update.
    assert os.name == "nt" or _venv_python(made).is_symlink()
    found = subprocess.run([str(_venv_python(made)), "-c", "import badsmtp; print(badsmtp.__file__)"],
                           capture_output=True, text=True, timeout=60, check=True, cwd=made,
                           env=_env(made))
    assert Path(found.stdout.strip()).is_relative_to(made)  # installed, not the checkout


@pytest.fixture
def started(checkout: Path, made: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port_file = tmp_path / "ports.json"
    command = [BASE_PYTHON, str(checkout / "scripts" / "bootstrap"), "run", "--port", "0",
               "--port-file", str(port_file)]
    with (tmp_path / "err").open("wb") as err, subprocess.Popen(
        command, env=_env(made), stdout=subprocess.DEVNULL, stderr=err
    ) as proc:
        try:
            wait_until(lambda: port_file.exists() or proc.poll() is not None, timeout=120,
                       what="badsmtp to write its port file")
            assert port_file.exists(), (tmp_path / "err").read_text()
            yield proc, int(json.loads(port_file.read_text())["normal_port"])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals; Windows waits for its child instead")
def test_run_is_badsmtp_itself_so_sigterm_shuts_it_down(
    started: tuple[subprocess.Popen[bytes], int]
) -> None:
    proc, port = started
    with Client(port) as client:
        assert client.reply().startswith(GREETING_CODE)
        proc.send_signal(signal.SIGTERM)  # to the bootstrap's pid: exec() made it badsmtp
        assert client.read_to_eof().startswith(b"421 ")
    assert proc.wait(timeout=10) == 0


def test_inside_a_virtualenv_it_installs_there(checkout: Path, made: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "unused"
    result = _bootstrap(checkout, elsewhere, "run", "--version", python=str(_venv_python(made)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"badsmtp {badsmtp.__version__}\n"
    assert f"installing badsmtp into {_venv_python(made)}" in result.stderr
    assert not elsewhere.exists()


def test_without_ensurepip_pip_is_fetched_from_pypi(checkout: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = _bootstrap(checkout, venv, "run", "--version", hide_ensurepip=True)
    assert result.returncode == 0, result.stderr
    assert "this Python has no ensurepip" in result.stderr
    assert result.stdout == f"badsmtp {badsmtp.__version__}\n"
    pip = subprocess.run([str(_venv_python(venv)), "-m", "pip", "--version"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert pip.returncode == 0 and str(venv) in pip.stdout


def test_a_directory_that_is_not_a_virtualenv_is_left_alone(checkout: Path, tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    result = _bootstrap(checkout, target, "run")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"bootstrap: {target} exists and is not a virtual environment"
    )
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


def test_without_a_mode_it_prints_its_usage(checkout: Path, tmp_path: Path) -> None:
    result = _bootstrap(checkout, tmp_path / "venv")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python3 scripts/bootstrap {run|test}")
    assert not (tmp_path / "venv").exists()
