"""``time_scale`` (README, Time scaling; badsmtp(1), --time-scale): every
delay badsmtp makes is multiplied by it, the idle timeout is not.  The core
without a clock (the Wait actions' seconds), the setting's checks, and end
to end: a scaled greeting delay through the API and on a port of the real
plan through the command."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakeshell import greeted
from helpers import Client, serving
from test_cli import running
from test_cli_config import ephemeral_argv, isolated, run_main  # noqa: F401  (isolated: autouse)
from wire import GREETING, OK

from badsmtp import BadSMTP, Listener
from badsmtp.actions import Close, Send, Wait
from badsmtp.config import Config, ConfigError
from badsmtp.protocol import Context
from badsmtp.session import Session

SCALED = Context(time_scale=0.05)


# -- the core: the Wait actions carry scaled seconds -----------------------------------------
def test_a_greeting_delay_is_scaled() -> None:
    session = Session(SCALED, greeting_delay=2.0)
    assert session.greeting() == [Wait(pytest.approx(0.1))]  # type: ignore[arg-type]
    assert session.waited() == [Send(GREETING)]


def test_a_delayed_drop_is_scaled() -> None:
    session = Session(SCALED, drop_after=40.0)
    assert session.greeting() == [Wait(pytest.approx(2.0))]  # type: ignore[arg-type]
    assert session.waited() == [Close()]


def test_the_command_delay_and_dlay_are_scaled() -> None:
    wire = greeted(b"EHLO dlay20.example", ctx=SCALED, command_delay=10.0)
    wire.feed(b"NOOP\r\n")
    assert wire.waits == pytest.approx([0.5, 1.0, 1.0])  # the port's delay, then dlay twice


def test_a_scale_of_one_leaves_every_delay_as_it_is() -> None:
    wire = greeted(b"EHLO dlay7.example", command_delay=3.0)
    assert wire.feed(b"NOOP\r\n") == OK
    assert wire.waits == [3.0, 7.0, 7.0]


# -- the setting ------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_a_scale_that_is_not_positive_is_a_configuration_error(scale: float) -> None:
    with pytest.raises(ConfigError, match="^time_scale must be greater than 0, not "):
        Config(time_scale=scale)
    with pytest.raises(ConfigError, match="^time_scale must be greater than 0"):
        BadSMTP(ports=[0], time_scale=scale)


@pytest.mark.parametrize("argv, env", [(["--time-scale", "0"], {}), ([], {"BADSMTP_TIME_SCALE": "-2"})])
def test_the_command_refuses_a_scale_that_is_not_positive(
    argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, out, err = run_main(argv, capsys)
    assert (status, out) == (2, "")
    assert err.startswith("configuration error: time_scale must be greater than 0, not ")


def test_print_config_shows_the_scale(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BADSMTP_TIME_SCALE", "0.01")
    status, out, _ = run_main(["--print-config"], capsys)
    assert status == 0
    [line] = [line for line in out.splitlines() if line.startswith("time_scale:")]
    assert line.split("#")[0].split() == ["time_scale:", "0.01"]
    assert "env BADSMTP_TIME_SCALE" in line


# -- end to end -------------------------------------------------------------------------------
def _greeting_time(port: int) -> float:
    began = time.monotonic()
    with Client(port) as client:
        assert client.reply() == GREETING
    return time.monotonic() - began


def test_a_scaled_greeting_delay_through_the_api() -> None:
    with serving(ports=[Listener(0, "greeting_delay", 2.0)], time_scale=0.05) as server:
        took = _greeting_time(server.port)
    assert 0.09 <= took < 0.5  # 2 s x 0.05


def test_the_scale_does_not_shorten_the_idle_timeout() -> None:
    with serving(ports=[0], time_scale=0.001, idle_timeout=0.5) as server, Client(server.port) as client:
        assert client.reply() == GREETING
        began = time.monotonic()
        assert client.read_to_eof().startswith(b"421 ")
        assert time.monotonic() - began >= 0.45


def test_the_command_scales_a_greeting_delay_port_of_the_plan(tmp_path: Path) -> None:
    argv = ephemeral_argv()
    ten_seconds = int(argv[argv.index("--greeting-delay-port-start") + 1]) + 1
    with running(tmp_path, *argv, "--time-scale", "0.01"):
        took = _greeting_time(ten_seconds)
    assert 0.09 <= took < 1.0  # 10 s x 0.01
