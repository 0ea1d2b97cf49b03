"""The README's "Using badsmtp in your tests" examples cannot drift: every
python block there names its file under examples/ on its first line, must
equal that file byte for byte, and every such file is run here (test
modules under pytest, scripts with python)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers import ROOT

HEADING = "## Using badsmtp in your tests"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_NAME = re.compile(r"# (examples/[\w.]+\.py)\b")


def section(readme: str) -> str:
    start = readme.index(HEADING) + len(HEADING)
    end = readme.find("\n## ", start)
    return readme[start : end if end >= 0 else len(readme)]


def blocks() -> list[tuple[str, str]]:
    """(file named on the first line, block text) for each python block."""
    found = []
    for code in _BLOCK.findall(section((ROOT / "README.md").read_text(encoding="utf-8"))):
        m = _NAME.match(code)
        found.append((m.group(1) if m else "", code))
    return found


def test_the_section_has_the_three_examples() -> None:
    names = [name for name, _ in blocks()]
    assert "" not in names, "every python block in the section must name its examples/ file"
    assert names == [
        "examples/test_pytest_example.py",
        "examples/test_unittest_example.py",
        "examples/embedding.py",
    ]


@pytest.mark.parametrize(("name", "code"), blocks(), ids=[n for n, _ in blocks()])
def test_block_is_the_file_verbatim(name: str, code: str) -> None:
    assert (ROOT / name).read_text(encoding="utf-8") == code


@pytest.mark.parametrize("name", [n for n, _ in blocks()])
def test_example_runs(name: str) -> None:
    path = ROOT / name
    if path.name.startswith("test_"):  # pytest runs unittest modules too
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)]
    else:
        command = [sys.executable, str(path)]
    result = subprocess.run(
        command, cwd=path.parent, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_drift_check_catches_a_changed_block() -> None:
    """The negative twin: one changed character and the block no longer matches."""
    name, code = blocks()[0]
    assert (ROOT / name).read_text(encoding="utf-8") != code.replace("assert", "assert not", 1)
    with pytest.raises(ValueError):
        section("# README without the section\n")
