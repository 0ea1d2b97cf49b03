"""The sdist and the wheel are complete, and the wheel installs a working badsmtp.

Built as a user would, with ``python -m build`` (the sdist, then the wheel from
the sdist) from a copy of the checkout into a temporary directory, once per
run (tests/buildonce.py). Building downloads setuptools from PyPI into build's
isolated environment, and installing the wheel into a fresh virtualenv
downloads the dependencies (both through pip's cache).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from buildonce import build_once
from helpers import ROOT

import badsmtp

VERSION = badsmtp.__version__
NOT_SOURCES = shutil.ignore_patterns(
    ".git", "dist", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".venv", "venv"
)


def clean_env() -> dict[str, str]:
    """This environment without what would make a child Python import this
    checkout (PYTHONPATH) or another environment's packages."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONNOUSERSITE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(
            f"{module} is not installed: it comes with the test extra, pip install '.[test]'"
        )


def run(*argv: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; fail the test with its output if it fails."""
    result = subprocess.run(
        [str(a) for a in argv],
        check=False, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def _build(out: Path) -> None:
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    run(sys.executable, "-m", "build", "--outdir", out / "dist", source, cwd=out)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built once per run."""
    require("build")
    out = build_once(tmp_path_factory, "dists", _build, timeout=600)
    return (
        out / "dist" / f"badsmtp-{VERSION}.tar.gz",
        out / "dist" / f"badsmtp-{VERSION}-py3-none-any.whl",
    )


def test_twine_check_strict_passes(dists: tuple[Path, Path]) -> None:
    require("twine")
    result = run(sys.executable, "-m", "twine", "check", "--strict", *dists, cwd=dists[0].parent)
    assert result.stdout.count("PASSED") == 2, result.stdout


def tracked_files() -> set[str]:
    """The files git tracks in this checkout, or none when it is not a git
    checkout (an unpacked sdist)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return set()
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return {name for name in listed.stdout.decode().split("\0") if (ROOT / name).is_file()}


def test_the_sdist_holds_the_whole_source(dists: tuple[Path, Path]) -> None:
    with tarfile.open(dists[0]) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    wanted = {"LICENSE", "README.md", "pyproject.toml", "MANIFEST.in", "man/badsmtp.1"}
    wanted |= {"badsmtp/py.typed", "scripts/build-binary", "scripts/_binary_entry.py", ".ci/run"}
    wanted |= {p.relative_to(ROOT).as_posix() for p in ROOT.glob("tests/*.py")}
    wanted |= tracked_files() - {".gitignore"}  # everything in a git checkout
    assert sorted(wanted - names) == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_wheel_holds_py_typed_the_man_page_and_the_licence(dists: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(dists[1]) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"badsmtp-{VERSION}.dist-info/METADATA").decode()
    assert "badsmtp/py.typed" in names
    assert f"badsmtp-{VERSION}.data/data/share/man/man1/badsmtp.1" in names
    assert f"badsmtp-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "badsmtp/pytest_plugin.py" in names
    assert {"badsmtp/web/index.html", "badsmtp/web/app.js", "badsmtp/web/app.css"} <= names
    assert not [n for n in names if n.startswith(("tests/", "scripts/"))]
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nDescription-Content-Type: text/markdown\n" in metadata


# Run by the virtualenv's Python: what it installed, where.
INSTALLED = """
import importlib.metadata, json, sysconfig, badsmtp
print(json.dumps({"metadata": importlib.metadata.version("badsmtp"), "version": badsmtp.__version__,
                  "package": badsmtp.__file__, "data": sysconfig.get_path("data")}))
"""


def venv_path(venv: Path, name: str) -> Path:
    """``name`` (python, badsmtp) in the virtualenv's scripts directory: bin/ or Scripts/."""
    scripts = sysconfig.get_path("scripts", "venv", vars={"base": str(venv), "platbase": str(venv)})
    found = shutil.which(name, path=scripts)
    assert found is not None, f"no {name} in {scripts}: {sorted(os.listdir(scripts))}"
    return Path(found)


def test_the_wheel_installs_a_working_badsmtp_into_a_fresh_venv(
    dists: tuple[Path, Path], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    # Without pip in it: Debian's Python has no ensurepip unless python3-venv is
    # installed.  This environment's pip installs into it instead (pip --python).
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv_path(venv, "python")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--disable-pip-version-check",
        dists[1], cwd=tmp_path)  # fmt: skip

    installed = json.loads(run(python, "-c", INSTALLED, cwd=tmp_path).stdout)
    assert installed["metadata"] == installed["version"] == VERSION
    package = Path(installed["package"]).parent
    assert package.resolve().is_relative_to(venv.resolve()), package  # not this checkout
    assert (package / "py.typed").is_file()
    assert (Path(installed["data"]) / "share" / "man" / "man1" / "badsmtp.1").is_file()
    for command in ([venv_path(venv, "badsmtp")], [python, "-m", "badsmtp"]):
        assert run(*command, "--version", cwd=tmp_path).stdout == f"badsmtp {VERSION}\n"


def test_the_man_page_names_the_package_version() -> None:
    # The man page is not generated: it must be edited with badsmtp.__version__.
    header = (ROOT / "man" / "badsmtp.1").read_text().split("\n.TH ", 1)[1].splitlines()[0]
    assert re.search(rf'"badsmtp {re.escape(VERSION)}"', header), header
