"""Build an artifact once per test run, even under pytest-xdist: the first worker
to ask builds it into a directory shared by all workers, the others wait for it.

Used for what takes seconds to minutes to build (the sdist and wheel, the
single binary); each module then reads the shared result from a fixture.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import wait_until


def _shared_root(factory: pytest.TempPathFactory) -> Path:
    base = factory.getbasetemp()
    # Under xdist each worker's base is <run>/popen-gwN: the run's is its parent.
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def build_once(
    factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None], timeout: float
) -> Path:
    """Return the directory ``build`` filled, running ``build`` only in the first
    caller of this run; a failure is reported to every caller."""
    root = _shared_root(factory)
    out, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    try:
        os.close(os.open(root / f"{name}.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        wait_until(
            lambda: done.exists() or failed.exists(), timeout=timeout, what=f"{name} to be built"
        )
    else:
        out.mkdir()
        try:
            build(out)
        except BaseException:
            failed.write_text(traceback.format_exc())
            raise
        done.touch()
    if failed.exists():
        pytest.fail(f"building {name} failed in another worker:\n{failed.read_text()}")
    return out
