"""The container files state facts about badsmtp that must stay true
without building the image (README, Container): the exposed ports are the
main ports of the default configuration, every variable the image and the
compose example set is a setting badsmtp reads, the entry point parses, the
health check speaks SMTP to the port badsmtp wrote, and compose.yaml agrees
with the Dockerfile.  Building and running the image is scripts/container-check
(minutes, not a test)."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT, free_ranges

from badsmtp.config import Config
from badsmtp.optionkeys import KEYS
from badsmtp.options import load_settings

SETTING_VARIABLES = {key.env for key in KEYS} | {alias for key in KEYS for alias in key.aliases}


def instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile as (INSTRUCTION, arguments) pairs: comments dropped,
    continuation lines joined."""
    joined = re.sub(r"\s*\\\n(?:\s*#[^\n]*\n)*\s*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_instructions_join_continuations_and_drop_comments() -> None:
    text = "# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\nENV A=1 \\\n    B=2\n"
    assert instructions(text) == [("FROM", "a AS b"), ("RUN", "x && y"), ("ENV", "A=1 B=2")]


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: what the image is."""
    starts = [i for i, (word, _) in enumerate(DOCKERFILE) if word == "FROM"]
    assert len(starts) >= 2, "multi-stage: a build stage and a runtime stage"
    return DOCKERFILE[starts[-1] :]


def only(word: str) -> str:
    (value,) = [rest for name, rest in runtime_stage() if name == word]
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, rest in runtime_stage():
        if name == "ENV":
            env.update(pair.split("=", 1) for pair in rest.split())  # type: ignore[misc]
    return env


def exec_form(text: str) -> list[str]:
    """An exec-form command (a JSON array), so that signals reach badsmtp."""
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value)
    return value


def entrypoint() -> list[str]:
    return exec_form(only("ENTRYPOINT"))


def healthcheck() -> list[str]:
    options, _, command = only("HEALTHCHECK").partition("CMD ")
    assert "--timeout=" in options
    return exec_form(command)


def main_ports() -> set[int]:
    config = Config()
    return {config.port, config.tls_port, config.starttls_port}


def test_the_exposed_ports_are_the_main_ports_of_the_default_configuration() -> None:
    exposed = {int(port) for port in only("EXPOSE").split()}
    assert exposed == main_ports() == {2525, 25465, 25587}


def test_the_base_image_is_a_slim_python_and_both_stages_use_it() -> None:
    (base,) = [rest for word, rest in DOCKERFILE if word == "ARG" and rest.startswith("BASE=")]
    assert re.fullmatch(r"BASE=python:3\.1[1-9]-slim-bookworm", base)
    assert [rest.split()[0] for word, rest in DOCKERFILE if word == "FROM"] == ["${BASE}"] * 2


def test_the_image_sets_only_badsmtp_settings_with_valid_values() -> None:
    env = image_env()
    ours = {name: value for name, value in env.items() if name.startswith("BADSMTP_")}
    assert set(ours) <= SETTING_VARIABLES
    settings = load_settings(entrypoint()[1:], ours)
    config = Config(**settings.server_kwargs())
    assert config.listen_address == "0.0.0.0"  # a published port reaches the container's address
    assert config.mailbox_dir is None  # storage off, as everywhere else
    assert config.shutdown_timeout < 10  # docker stop's grace period
    assert env["PATH"].startswith("/opt/badsmtp/bin:")


def test_the_image_runs_badsmtp_as_a_numeric_non_root_user() -> None:
    user, _, group = only("USER").partition(":")
    assert user.isdigit() and int(user) != 0 and group.isdigit() and int(group) != 0
    assert entrypoint()[0] == "badsmtp"


def test_the_mailbox_volume_is_owned_by_that_user() -> None:
    (volume,) = exec_form(only("VOLUME"))
    setup = " ".join(rest for word, rest in runtime_stage() if word == "RUN")
    uid = only("USER").split(":")[0]
    assert f"install -d -o {uid} -g {uid} -m 0755 {volume}" in setup


def test_compose_builds_this_image_and_publishes_its_ports_and_volume() -> None:
    service = COMPOSE["services"]["badsmtp"]
    assert service["build"] == "."
    published = {int(mapping.rsplit(":", 1)[1]) for mapping in service["ports"]}
    assert published == main_ports()
    assert set(service["environment"]) <= SETTING_VARIABLES
    (volume,) = exec_form(only("VOLUME"))
    assert service["environment"]["BADSMTP_MAILBOX_DIR"] == volume
    (mount,) = service["volumes"]
    name, target = mount.split(":")
    assert target == volume and name in COMPOSE["volumes"]
    assert "healthcheck" not in service  # the image's own


def test_the_build_context_holds_what_the_wheel_is_made_of() -> None:
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}  # fmt: skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    needed = {"pyproject.toml", "LICENSE", project["project"]["readme"], *setuptools["packages"]}
    needed |= {source.split("/")[0] for sources in setuptools.get("data-files", {}).values()
               for source in sources}  # fmt: skip
    assert needed <= allowed


def _start_entrypoint(port_file: Path) -> subprocess.Popen[bytes]:
    """The image's entry point on loopback and free ports, its port file moved."""
    args = [port_file.as_posix() if arg == _image_port_file() else arg for arg in entrypoint()[1:]]
    greeting, command, drop = free_ranges(3)
    ports = ["--port", "0", "--tls-port", "0", "--starttls-port", "0",
             "--immediate-drop-port", "0", "--greeting-delay-port-start", str(greeting),
             "--command-delay-port-start", str(command),
             "--drop-delay-port-start", str(drop)]  # fmt: skip
    env = {**os.environ, **image_env(), "PATH": os.environ["PATH"]}
    env["BADSMTP_LISTEN_ADDRESS"] = "127.0.0.1"  # the test's loopback, not every interface
    return subprocess.Popen([sys.executable, "-m", "badsmtp", *args, *ports], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _image_port_file() -> str:
    settings = load_settings(entrypoint()[1:], {})
    assert settings.port_file is not None
    return settings.port_file


def _run_healthcheck(port_file: Path) -> subprocess.CompletedProcess[bytes]:
    program, *args = healthcheck()
    assert program == "python3"  # the venv's, first on PATH
    args = [arg.replace(_image_port_file(), port_file.as_posix()) for arg in args]
    return subprocess.run([sys.executable, *args], check=False, capture_output=True, timeout=30)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM: POSIX only")
def test_the_healthcheck_passes_on_the_port_badsmtp_wrote_and_fails_once_it_stopped(
    tmp_path: Path,
) -> None:
    port_file = tmp_path / "ports.json"
    proc = _start_entrypoint(port_file)
    try:
        assert proc.stderr is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stderr, selectors.EVENT_READ)
            assert sel.select(30), "badsmtp printed no start-up line"
        assert proc.stderr.readline().startswith(b"badsmtp ")
        healthy = _run_healthcheck(port_file)
        assert healthy.returncode == 0, healthy.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        unhealthy = _run_healthcheck(port_file)
        assert unhealthy.returncode != 0 and b"ConnectionRefusedError" in unhealthy.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Container\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_readme_section_states_what_the_image_does() -> None:
    text = readme_section()
    assert set(re.findall(r"\bBADSMTP_\w+", text)) <= SETTING_VARIABLES
    assert {"LOG_LEVEL"} <= SETTING_VARIABLES
    for name, value in re.findall(r"\b(BADSMTP_\w+)=(\S+?)[`\s]", text):
        if name in image_env():
            assert image_env()[name] == value, name
    assert f"--port-file {_image_port_file()}" in text
    exposed = re.search(r"exposes the main ports (\d+) .*?, (\d+) .*?and\s+(\d+) ", text, re.DOTALL)
    assert exposed and {int(port) for port in exposed.groups()} == main_ports()
    (volume,) = exec_form(only("VOLUME"))
    assert f"-v badsmtp-mail:{volume}" in text and f"uid {only('USER').split(':')[0]}" in text
    assert "docker build -t badsmtp ." in text
