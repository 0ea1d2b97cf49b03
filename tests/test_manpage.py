"""man/badsmtp.1: documents every option, variable and default of the CLI,
renders without a warning, and is shipped by the package build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from helpers import ROOT

from badsmtp import options

PAGE = ROOT / "man" / "badsmtp.1"


def roff(text: str) -> str:
    """How an option or name is written in the page source: minus signs
    escaped (``\\-``), optionally guarded against hyphenation (``\\%``)."""
    return text.replace("-", "\\-")


def all_option_strings() -> list[str]:
    parser = options.build_parser()
    return [s for action in parser._actions for s in action.option_strings]


@pytest.fixture(scope="module")
def source() -> str:
    return PAGE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rendered() -> str:
    if sys.platform != "linux" and shutil.which("man") is None:
        pytest.skip("man(1) is not installed (Debian/Ubuntu: apt-get install -y man-db)")
    done = subprocess.run(
        ["man", "--warnings", "-l", str(PAGE)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8"},
        check=True,
    )
    assert done.stderr == "", done.stderr
    return done.stdout


def test_every_option_is_in_the_source(source: str) -> None:
    missing = [opt for opt in all_option_strings() if roff(opt) not in source]
    assert not missing


def test_every_option_is_in_the_rendered_page(rendered: str) -> None:
    words = set(re.findall(r"(?<![\w-])-{1,2}[a-z][a-z0-9-]*", rendered))
    assert not [opt for opt in all_option_strings() if opt not in words]


def test_every_option_has_its_variable_and_default(rendered: str) -> None:
    # The OPTIONS section: one paragraph per option, tag first.
    section = rendered.split("\nOPTIONS\n", 1)[1].split("\nPORT MAP\n", 1)[0]
    paragraphs = re.split(r"\n(?=       -)", section)
    defaults = options.defaults()
    for key in options.KEYS:
        (paragraph,) = [p for p in paragraphs if p.lstrip().startswith(key.flags[0] + " ") or
                        p.lstrip().startswith(key.flags[0] + ",")]  # fmt: skip
        text = " ".join(re.sub(r"\u2010\n\s*", "", paragraph).split())  # undo hyphenation
        assert f"Environment: {key.env}" in text, key.name
        default = defaults[key.name]
        shown = {None: "off" if key.name == "mailbox_dir" else "none", "": "none"}.get(
            default, f"{default:g}" if isinstance(default, float) else str(default)
        )
        assert f"Default: {shown}" in text, key.name
        if key.name in options.LOG_KEYS:
            assert f"or {key.name.upper()}" in text, key.name


def test_environment_section_lists_every_variable(rendered: str) -> None:
    section = rendered.split("\nENVIRONMENT\n", 1)[1].split("\nLOGGING\n", 1)[0]
    for key in options.KEYS:
        assert key.env in section
    for name in options.LOG_KEYS:
        assert name.upper() in section


def test_required_sections(rendered: str) -> None:
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "PORT MAP", "ERROR TRIGGERS",
                    "EHLO KEYWORDS", "FILES", "ENVIRONMENT", "EXAMPLES", "EXIT STATUS"):  # fmt: skip
        assert f"\n{heading}\n" in rendered


def test_ehlo_keywords_and_port_map(rendered: str) -> None:
    for keyword in ("noauth", "authplain", "authlogin", "authcram", "authoauth", "no8bit",
                    "nosize", "sizennn", "nopipelining", "nostarttls", "nochunking",
                    "nosmtputf8", "noenhancedstatuscodes", "dlaynnn", "reject, noehl"):  # fmt: skip
        assert keyword in rendered
    for ports in ("2525", "25587", "25465", "3000-3099", "4000-4099", "5000-5099", "6000"):
        assert f"\n       {ports} " in rendered


def test_groff_reports_no_warnings() -> None:
    if sys.platform != "linux" and shutil.which("groff") is None:
        pytest.skip("groff is not installed (Debian/Ubuntu: apt-get install -y groff-base)")
    done = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_no_line_is_wider_than_80_columns(rendered: str) -> None:
    assert max(len(line) for line in rendered.splitlines()) <= 80


def test_the_build_ships_the_page() -> None:
    with open(ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)
    data_files = project["tool"]["setuptools"]["data-files"]
    assert data_files["share/man/man1"] == ["man/badsmtp.1"]
