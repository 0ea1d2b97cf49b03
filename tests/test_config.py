"""Port plan validation (badsmtp(1), PORT MAP): exact texts, checked in a fixed
order, and the embedding API running the same checks before it binds
anything."""

from __future__ import annotations

import pytest

from badsmtp import BadSMTP
from badsmtp.config import Config, ConfigError, Listener, PortConfigError, Role
from badsmtp.portplan import validate_ports


def error_for(**settings: int) -> str:
    with pytest.raises(PortConfigError) as info:
        validate_ports(Config(**settings))
    return str(info.value)


def test_defaults_are_valid() -> None:
    validate_ports(Config())


def test_all_single_ports_ephemeral_is_valid() -> None:
    # Port 0 takes part in neither the range nor the equality check.
    validate_ports(Config(port=0, tls_port=0, starttls_port=0, immediate_drop_port=0))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"port": 65536}, "normal port 65536 is out of range (0-65535)"),
        ({"port": -1}, "normal port -1 is out of range (0-65535)"),
        ({"immediate_drop_port": 70000}, "immediate drop port 70000 is out of range (0-65535)"),
        ({"tls_port": 99999}, "TLS port 99999 is out of range (0-65535)"),
        ({"starttls_port": 65536}, "STARTTLS port 65536 is out of range (0-65535)"),
        (
            {"greeting_delay_port_start": 0},
            "greeting delay range (0-99) is out of range (1-65535)",
        ),
        (
            {"command_delay_port_start": 65500},
            "command delay range (65500-65599) is out of range (1-65535)",
        ),
        (
            {"drop_delay_port_start": 65437},
            "drop delay range (65437-65536) is out of range (1-65535)",
        ),
    ],
)
def test_out_of_range(settings: dict[str, int], message: str) -> None:
    assert error_for(**settings) == message


def test_highest_possible_range_is_valid() -> None:
    validate_ports(Config(drop_delay_port_start=65436))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"command_delay_port_start": 3050},
            "port ranges overlap: greeting delay (3000-3099) and command delay (3050-3149)",
        ),
        (
            {"drop_delay_port_start": 2950},
            "port ranges overlap: greeting delay (3000-3099) and drop delay (2950-3049)",
        ),
        (
            {"drop_delay_port_start": 4099},
            "port ranges overlap: command delay (4000-4099) and drop delay (4099-4198)",
        ),
    ],
)
def test_overlapping_ranges(settings: dict[str, int], message: str) -> None:
    assert error_for(**settings) == message


def test_adjacent_ranges_do_not_overlap() -> None:
    validate_ports(Config(command_delay_port_start=3100, drop_delay_port_start=3200))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"port": 3050}, "normal port 3050 conflicts with greeting delay range (3000-3099)"),
        (
            {"immediate_drop_port": 4099},
            "immediate drop port 4099 conflicts with command delay range (4000-4099)",
        ),
        ({"tls_port": 5000}, "TLS port 5000 conflicts with drop delay range (5000-5099)"),
        (
            {"starttls_port": 3000},
            "STARTTLS port 3000 conflicts with greeting delay range (3000-3099)",
        ),
    ],
)
def test_single_port_inside_a_range(settings: dict[str, int], message: str) -> None:
    assert error_for(**settings) == message


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tls_port": 25587}, "TLS port 25587 conflicts with STARTTLS port 25587"),
        ({"immediate_drop_port": 2525}, "normal port 2525 conflicts with immediate drop port 2525"),
        ({"starttls_port": 2525}, "normal port 2525 conflicts with STARTTLS port 2525"),
        ({"tls_port": 6000}, "immediate drop port 6000 conflicts with TLS port 6000"),
    ],
)
def test_equal_single_ports(settings: dict[str, int], message: str) -> None:
    assert error_for(**settings) == message


def test_checks_run_in_order_and_stop_at_the_first() -> None:
    # Out of range beats overlap, overlap beats a single port in a range,
    # which beats two equal single ports.
    assert error_for(port=70000, command_delay_port_start=3050).startswith("normal port 70000")
    assert error_for(port=3050, command_delay_port_start=3050).startswith("port ranges overlap")
    assert error_for(port=3050, tls_port=3050).startswith("normal port 3050 conflicts with greeting")


def test_single_ports_are_checked_in_a_fixed_order() -> None:
    # normal, immediate drop, TLS, STARTTLS
    assert error_for(tls_port=3001, immediate_drop_port=4001).startswith("immediate drop port 4001")
    assert error_for(starttls_port=3001, tls_port=5001).startswith("TLS port 5001")
    assert error_for(starttls_port=7000, tls_port=7000, immediate_drop_port=7000) == (
        "immediate drop port 7000 conflicts with TLS port 7000"
    )


def test_out_of_range_singles_before_ranges() -> None:
    assert error_for(starttls_port=70000, greeting_delay_port_start=0).startswith("STARTTLS port")


def test_overlaps_are_checked_in_a_fixed_order() -> None:
    # greeting/command before greeting/drop before command/drop
    assert error_for(command_delay_port_start=3050, drop_delay_port_start=3060).startswith(
        "port ranges overlap: greeting delay (3000-3099) and command delay"
    )
    assert error_for(command_delay_port_start=5050, drop_delay_port_start=3060).startswith(
        "port ranges overlap: greeting delay (3000-3099) and drop delay"
    )


def test_zero_single_ports_never_conflict() -> None:
    validate_ports(Config(tls_port=0, starttls_port=0))
    validate_ports(Config(port=0, immediate_drop_port=0))


def test_port_config_error_is_a_config_error() -> None:
    assert issubclass(PortConfigError, ConfigError)


def test_api_validates_the_default_plan_before_binding() -> None:
    with pytest.raises(PortConfigError, match="TLS port 25587 conflicts with STARTTLS port 25587"):
        BadSMTP(tls_port=25587)


def test_api_does_not_validate_explicit_ports() -> None:
    # Explicit listeners are the caller's choice; the plan keys are not used.
    server = BadSMTP(ports=[0], tls_port=25587)
    assert server.listeners == []


# -- a Listener says what it does (README, Embedding in tests) ------------------------
@pytest.mark.parametrize(
    "listener, behaviour",
    [
        (Listener(0), (0.0, 0.0, None, False)),
        (Listener(0, "greeting_delay", 0.2), (0.2, 0.0, None, False)),
        (Listener(0, "command_delay", 0.1), (0.0, 0.1, None, False)),
        (Listener(0, "drop_delay", 0.5), (0.0, 0.0, 0.5, False)),
        (Listener(0, "drop_delay"), (0.0, 0.0, 0.0, False)),
        (Listener(0, "immediate_drop"), (0.0, 0.0, 0.0, False)),
        (Listener(0, "tls"), (0.0, 0.0, None, True)),
        (Listener(0, greeting_delay=0.3, command_delay=0.1), (0.3, 0.1, None, False)),
        (Listener(0, "tls", greeting_delay=1.0), (1.0, 0.0, None, True)),
    ],
)
def test_a_listener_is_its_behaviour(listener: Listener, behaviour: tuple[object, ...]) -> None:
    got = (listener.greeting_delay, listener.command_delay, listener.drop_after, listener.tls)
    assert got == behaviour


def test_the_readme_form_keeps_its_delay_and_equality() -> None:
    listener = Listener(3001, Role.GREETING_DELAY, 10.0)
    assert listener.delay == 10.0 and listener == Listener(3001, "greeting_delay", 10.0)
    assert listener.at(40000) == Listener(40000, Role.GREETING_DELAY, 10.0)
    assert Listener(0, "command_delay", 0.1) != Listener(0, "greeting_delay", 0.1)


@pytest.mark.parametrize("bad", [{"port": 70000}, {"delay": -1.0}, {"greeting_delay": -0.1},
                                 {"drop_after": -2.0}])  # fmt: skip
def test_a_listener_that_cannot_work_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Listener(**bad)  # type: ignore[arg-type]
