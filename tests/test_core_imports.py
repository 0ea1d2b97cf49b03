"""The pure core stays pure: none of its modules imports
a socket, a clock, a thread, the file system or a process.  The checker is
proven to catch a bad import on sample sources (the negative twins)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import badsmtp

CORE = (
    "actions", "readers", "state", "verbs", "protocol", "session", "commands", "replies", "triggers", "auth",
    "findings",
)
FORBIDDEN = frozenset(
    {
        "socket",
        "ssl",
        "threading",
        "time",
        "os",
        "selectors",
        "select",
        "asyncio",
        "subprocess",
        "logging.handlers",
    }
)
PACKAGE = Path(badsmtp.__file__).parent


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, as dotted names, with each parent
    (``import logging.handlers`` also imports ``logging``).  Relative imports
    (``from . import x``) stay inside the package and are skipped."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module is None:
                continue
            # "from logging import handlers" imports logging.handlers.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def forbidden_imports(source: str) -> set[str]:
    return imported_modules(source) & FORBIDDEN


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_nothing_impure(module: str) -> None:
    source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
    assert forbidden_imports(source) == set()


@pytest.mark.parametrize("module", CORE)
def test_core_module_is_parsed_for_real(module: str) -> None:
    # Twin: the checker does see this module's real imports (so an empty
    # result above is not an accident of parsing nothing).
    source = (PACKAGE / f"{module}.py").read_text(encoding="utf-8")
    assert "__future__" in imported_modules(source)


@pytest.mark.parametrize(
    "source, bad",
    [
        ("import socket\n", {"socket"}),
        ("import os.path\n", {"os"}),
        ("from time import monotonic\n", {"time"}),
        ("import ssl as _ssl\n", {"ssl"}),
        ("from threading import Event, Lock\n", {"threading"}),
        ("import logging.handlers\n", {"logging.handlers"}),
        ("from logging import handlers\n", {"logging.handlers"}),
        ("import json, selectors\n", {"selectors"}),
        ("def f():\n    import subprocess\n    return subprocess\n", {"subprocess"}),
        ("try:\n    import asyncio\nexcept ImportError:\n    pass\n", {"asyncio"}),
        ("if True:\n    from select import select\n", {"select"}),
    ],
)
def test_checker_catches_a_bad_import(source: str, bad: set[str]) -> None:
    assert forbidden_imports(source) == bad


@pytest.mark.parametrize(
    "source",
    [
        "import logging\n",  # getLogger is fine; only the handlers are IO
        "from . import replies\n",
        "from .session import Session\n",
        "import ipaddress, re, base64\n",
        "import timeit_like_name\n",  # a prefix of a name is not the name
        "x = 'import socket'\n",  # text, not an import
    ],
)
def test_checker_accepts_a_clean_source(source: str) -> None:
    assert forbidden_imports(source) == set()


# auth's SASL exchanges keep out of even more: no logging, no files, no
# randomness (the challenge comes from the shell).
AUTH_ALSO = frozenset({"logging", "io", "pathlib", "shutil", "secrets"})


def test_auth_also_keeps_out_of_logging_files_and_randomness() -> None:
    source = (PACKAGE / "auth.py").read_text(encoding="utf-8")
    assert imported_modules(source) & AUTH_ALSO == set()


def test_the_auth_check_catches_those_too() -> None:
    source = "import secrets\nfrom pathlib import Path\nimport base64\n"
    assert imported_modules(source) & AUTH_ALSO == {"secrets", "pathlib"}
