"""A plain start stays light: what the CLI imports before its first greeting."""

from __future__ import annotations

import subprocess
import sys

# Loaded only when something needs them: TLS certificates, message parsing,
# transcripts (the CLI never records).
LAZY = ("cryptography", "email.parser", "email.utils", "badsmtp.transcript", "yaml")


def _loaded(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_importing_the_cli_loads_none_of_the_lazy_modules() -> None:
    assert _loaded("import badsmtp.cli") == []


def test_the_checker_sees_a_module_that_is_loaded() -> None:
    # Twin: the same probe reports modules once something does need them.
    assert _loaded("import badsmtp; badsmtp.Transcript; import email.utils") == [
        "email.utils",
        "badsmtp.transcript",
    ]
