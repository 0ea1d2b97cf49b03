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


DOCKERFILE_TEXT = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


class Image:
    """What a Dockerfile says its image is: the runtime (last) stage."""

    def __init__(self, text: str) -> None:
        self.all = instructions(text)
        starts = [i for i, (word, _) in enumerate(self.all) if word == "FROM"]
        self.stages = len(starts)
        self.runtime = self.all[starts[-1] :]

    def only(self, word: str) -> str:
        (value,) = [rest for name, rest in self.runtime if name == word]
        return value

    def env(self) -> dict[str, str]:
        settings = [rest for name, rest in self.runtime if name == "ENV"]
        pairs = [pair.split("=", 1) for rest in settings for pair in rest.split()]
        return {name: value for name, value in pairs}

    def entrypoint(self) -> list[str]:
        return exec_form(self.only("ENTRYPOINT"))

    def healthcheck(self) -> list[str]:
        return exec_form(self.only("HEALTHCHECK").partition("CMD ")[2])


def exec_form(text: str) -> list[str]:
    """An exec-form command (a JSON array), so that signals reach badsmtp;
    ValueError for the shell form."""
    value = json.loads(text)
    if not (isinstance(value, list) and all(isinstance(part, str) for part in value)):
        raise ValueError(f"not an exec-form command: {text}")
    return value


def main_ports() -> set[int]:
    config = Config()
    return {config.port, config.tls_port, config.starttls_port}


def problems(image: Image) -> list[str]:
    """What is wrong with an image for badsmtp's users (README, Container)."""
    found = []
    if image.stages < 2:
        found.append("single stage")
    if {int(port) for port in image.only("EXPOSE").split()} != main_ports():
        found.append("exposed ports are not the main ports")
    ours = {name: value for name, value in image.env().items() if name.startswith("BADSMTP_")}
    if not set(ours) <= SETTING_VARIABLES:
        found.append(f"not settings: {sorted(set(ours) - SETTING_VARIABLES)}")
    try:
        entrypoint, check = image.entrypoint(), image.healthcheck()
    except ValueError:
        return [*found, "shell form"]
    config = Config(**load_settings(entrypoint[1:], ours).server_kwargs())
    if config.listen_address != "0.0.0.0":  # a published port reaches the container's address
        found.append("not listening on 0.0.0.0")
    if config.mailbox_dir is not None or config.shutdown_timeout >= 10:  # docker stop's grace
        found.append("storage on or shutdown longer than docker stop waits")
    user, _, group = image.only("USER").partition(":")
    if not (user.isdigit() and group.isdigit()) or "0" in (user, group):
        found.append("not a numeric non-root user")
    if entrypoint[0] != "badsmtp" or port_file_of(entrypoint) not in " ".join(check):
        found.append("the health check does not read the entry point's port file")
    return found


def port_file_of(entrypoint: list[str]) -> str:
    settings = load_settings(entrypoint[1:], {})
    assert settings.port_file is not None
    return settings.port_file


IMAGE = Image(DOCKERFILE_TEXT)
IMAGE_PORT_FILE = port_file_of(IMAGE.entrypoint())


def test_the_dockerfile_has_no_problems() -> None:
    assert problems(IMAGE) == []
    assert IMAGE.env()["PATH"].startswith("/opt/badsmtp/bin:")
    assert "--timeout=" in IMAGE.only("HEALTHCHECK")


DRIFTS = {  # a line of the Dockerfile: (changed to, the problem reported)
    "EXPOSE 2525 25465 25587": ("EXPOSE 2525 25465 25587 6000", "exposed ports are not the main"),
    "BADSMTP_LISTEN_ADDRESS=0.0.0.0": ("BADSMTP_LISTEN_ADDR=0.0.0.0", "not settings: ['BADSMTP_LI"),
    "BADSMTP_SHUTDOWN_TIMEOUT=5": ("BADSMTP_SHUTDOWN_TIMEOUT=10", "storage on or shutdown longer"),
    'ENTRYPOINT ["badsmtp", "--port-file", "/tmp/badsmtp-ports.json"]': (
        "ENTRYPOINT badsmtp --port-file /tmp/badsmtp-ports.json", "shell form"),
    '"--port-file", "/tmp/badsmtp-ports.json"]': (
        '"--port-file", "/tmp/ports.json"]', "the health check does not read"),
    "USER 2525:2525": ("USER 0:0", "not a numeric non-root user"),
}  # fmt: skip


@pytest.mark.parametrize("line", DRIFTS)
def test_each_drift_is_caught(line: str) -> None:
    """The negative twins: each fact, changed in the real Dockerfile."""
    assert line in DOCKERFILE_TEXT
    changed, problem = DRIFTS[line]
    found = problems(Image(DOCKERFILE_TEXT.replace(line, changed)))
    assert [text for text in found if text.startswith(problem)], found


def test_the_base_image_is_a_slim_python_and_both_stages_use_it() -> None:
    (base,) = [rest for word, rest in IMAGE.all if word == "ARG" and rest.startswith("BASE=")]
    assert re.fullmatch(r"BASE=python:3\.1[1-9]-slim-bookworm", base)
    assert [rest.split()[0] for word, rest in IMAGE.all if word == "FROM"] == ["${BASE}"] * 2


def test_the_mailbox_volume_is_owned_by_that_user() -> None:
    (volume,) = exec_form(IMAGE.only("VOLUME"))
    setup = " ".join(rest for word, rest in IMAGE.runtime if word == "RUN")
    uid = IMAGE.only("USER").split(":")[0]
    assert f"install -d -o {uid} -g {uid} -m 0755 {volume}" in setup


def test_compose_builds_this_image_and_publishes_its_ports_and_volume() -> None:
    service = COMPOSE["services"]["badsmtp"]
    assert service["build"] == "."
    published = {int(mapping.rsplit(":", 1)[1]) for mapping in service["ports"]}
    assert published == main_ports()
    assert set(service["environment"]) <= SETTING_VARIABLES
    (volume,) = exec_form(IMAGE.only("VOLUME"))
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
    packages = {package.split(".")[0] for package in setuptools["packages"]}  # badsmtp.web: in badsmtp/
    needed = {"pyproject.toml", "LICENSE", project["project"]["readme"], *packages}
    needed |= {source.split("/")[0] for sources in setuptools.get("data-files", {}).values()
               for source in sources}  # fmt: skip
    assert needed <= allowed


def _start_entrypoint(port_file: Path) -> subprocess.Popen[bytes]:
    """The image's entry point on loopback and free ports, its port file moved."""
    moved = {IMAGE_PORT_FILE: port_file.as_posix()}
    args = [moved.get(arg, arg) for arg in IMAGE.entrypoint()[1:]]
    greeting, command, drop = free_ranges(3)
    ports = ["--port", "0", "--tls-port", "0", "--starttls-port", "0", "--tls-fault-port-start", "0",
             "--immediate-drop-port", "0", "--greeting-delay-port-start", str(greeting),
             "--command-delay-port-start", str(command),
             "--drop-delay-port-start", str(drop)]  # fmt: skip
    env = {**os.environ, **IMAGE.env(), "PATH": os.environ["PATH"]}
    env["BADSMTP_LISTEN_ADDRESS"] = "127.0.0.1"  # the test's loopback, not every interface
    return subprocess.Popen([sys.executable, "-m", "badsmtp", *args, *ports], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _run_healthcheck(port_file: Path) -> subprocess.CompletedProcess[bytes]:
    program, *args = IMAGE.healthcheck()
    assert program == "python3"  # the venv's, first on PATH
    args = [arg.replace(IMAGE_PORT_FILE, port_file.as_posix()) for arg in args]
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
        if name in IMAGE.env():
            assert IMAGE.env()[name] == value, name
    assert f"--port-file {IMAGE_PORT_FILE}" in text
    exposed = re.search(r"exposes the main ports (\d+) .*?, (\d+) .*?and\s+(\d+) ", text, re.DOTALL)
    assert exposed and {int(port) for port in exposed.groups()} == main_ports()
    (volume,) = exec_form(IMAGE.only("VOLUME"))
    assert f"-v badsmtp-mail:{volume}" in text and f"uid {IMAGE.only('USER').split(':')[0]}" in text
    assert "docker build -t badsmtp ." in text
