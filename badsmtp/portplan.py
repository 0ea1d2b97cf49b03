"""The port plan (badsmtp(1), PORT MAP) and everything derived from it: the
listener each port number gets, the default plan of 309 listeners, its
validation, and what is said about the ports actually bound (the HELP
reply, the ``--port-file`` fields, the start-up line).  Pure functions of the
configuration and the bound listeners.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import replies
from .config import TLS_FAULTS, Config, Listener, PortConfigError, Role
from .replies import Reply

__all__ = [
    "RANGE",
    "STEP",
    "help_reply",
    "listener_for_port",
    "plan_listeners",
    "port_fields",
    "ranges",
    "summary",
    "validate_ports",
]

RANGE = 100  # every range is exactly 100 ports long
STEP = 10.0  # seconds of delay per port of offset


def ranges(config: Config) -> dict[str, tuple[int, int]]:
    """The three ranges by name, first and last port."""
    return {
        "greeting delay": (config.greeting_delay_port_start, config.greeting_delay_port_start + RANGE - 1),
        "command delay": (config.command_delay_port_start, config.command_delay_port_start + RANGE - 1),
        "drop delay": (config.drop_delay_port_start, config.drop_delay_port_start + RANGE - 1),
    }


def fault_span(config: Config) -> tuple[int, int] | None:
    """The TLS fault ports (badsmtp(1), TLS FAULTS), first and last; None
    when ``tls_fault_port_start`` is 0 (five ephemeral ports)."""
    start = config.tls_fault_port_start
    return (start, start + len(TLS_FAULTS) - 1) if start else None


def _spans(config: Config) -> dict[str, tuple[int, int]]:
    """Every range that validation keeps apart: the three delay ranges and the
    TLS fault ports."""
    spans = ranges(config)
    faults = fault_span(config)
    if faults is not None:
        spans["TLS fault"] = faults
    return spans


def _range_starts(config: Config) -> tuple[tuple[int, Role], ...]:
    """The first port and the role of each range, in the plan's order."""
    return (
        (config.greeting_delay_port_start, Role.GREETING_DELAY),
        (config.command_delay_port_start, Role.COMMAND_DELAY),
        (config.drop_delay_port_start, Role.DROP),
    )


def listener_for_port(port: int, config: Config) -> Listener:
    """The role the port map (badsmtp(1), PORT MAP) gives ``port`` under
    ``config``'s plan; any other number (0 included) is a main-role listener."""
    if port == 0:
        return Listener(0)
    singles = {
        config.tls_port: Role.TLS,
        config.starttls_port: Role.STARTTLS,
        config.immediate_drop_port: Role.IMMEDIATE_DROP,
    }
    if port in singles and port != config.port:
        return Listener(port, singles[port])
    for start, role in _range_starts(config):
        if start <= port < start + RANGE:
            return Listener(port, role, (port - start) * STEP)
    faults = fault_span(config)
    if faults is not None and faults[0] <= port <= faults[1]:
        return Listener(port, Role.TLS_FAULT, tls_fault=TLS_FAULTS[port - faults[0]])
    return Listener(port)


def plan_listeners(config: Config) -> list[Listener]:
    """The default listener plan (badsmtp(1), PORT MAP): main first, then the single
    ports, the three ranges, the immediate drop port, then the TLS fault ports —
    309 listeners with the defaults."""
    plan = [
        Listener(config.port, Role.MAIN),
        Listener(config.starttls_port, Role.STARTTLS),
        Listener(config.tls_port, Role.TLS),
    ]
    for start, role in _range_starts(config):
        plan.extend(Listener(start + o, role, o * STEP) for o in range(RANGE))
    plan.append(Listener(config.immediate_drop_port, Role.IMMEDIATE_DROP))
    start = config.tls_fault_port_start
    plan.extend(
        Listener(start and start + offset, Role.TLS_FAULT, tls_fault=fault)
        for offset, fault in enumerate(TLS_FAULTS)
    )
    return plan


def validate_ports(config: Config) -> None:
    """Check the default plan before anything is bound (badsmtp(1), PORT
    MAP): ports in range, ranges apart, single ports outside the ranges,
    single ports apart, in that order; the first failure raises
    :class:`PortConfigError` with its one-line text (badsmtp(1), EXIT STATUS,
    shows one).  A single port of ``0`` is ephemeral: it gets a port of its
    own, so it conflicts with nothing."""
    singles, spans = _singles(config), list(_spans(config).items())
    problems = itertools.chain.from_iterable(check(singles, spans) for check in _CHECKS)
    problem = next(problems, None)
    if problem is not None:
        raise PortConfigError(problem)


Singles = list[tuple[str, int]]  # (name, port) of each single port
Spans = list[tuple[str, tuple[int, int]]]  # (name, (first, last)) of each range


def _singles(config: Config) -> Singles:
    # Checked in this order, so the first conflict reported is always the same one.
    return [
        ("normal", config.port),
        ("immediate drop", config.immediate_drop_port),
        ("TLS", config.tls_port),
        ("STARTTLS", config.starttls_port),
    ]


def _fixed(singles: Singles) -> Singles:
    """The single ports that are not ephemeral."""
    return [(name, port) for name, port in singles if port != 0]


def _singles_in_range(singles: Singles, spans: Spans) -> Iterator[str]:
    for name, port in singles:
        if not 0 <= port <= 65535:
            yield f"{name} port {port} is out of range (0-65535)"


def _ranges_in_range(singles: Singles, spans: Spans) -> Iterator[str]:
    for name, (first, last) in spans:
        if not (1 <= first <= 65535 and 1 <= last <= 65535):
            yield f"{name} range ({first}-{last}) is out of range (1-65535)"


def _ranges_apart(singles: Singles, spans: Spans) -> Iterator[str]:
    for (name_a, (a1, a2)), (name_b, (b1, b2)) in itertools.combinations(spans, 2):
        if a1 <= b2 and b1 <= a2:
            yield f"port ranges overlap: {name_a} ({a1}-{a2}) and {name_b} ({b1}-{b2})"


def _singles_outside_ranges(singles: Singles, spans: Spans) -> Iterator[str]:
    for name, port in _fixed(singles):
        for range_name, (first, last) in spans:
            if first <= port <= last:
                yield f"{name} port {port} conflicts with {range_name} range ({first}-{last})"


def _singles_apart(singles: Singles, spans: Spans) -> Iterator[str]:
    for (name_a, port_a), (name_b, port_b) in itertools.combinations(_fixed(singles), 2):
        if port_a == port_b:
            yield f"{name_a} port {port_a} conflicts with {name_b} port {port_b}"


# The checks of validate_ports, in the order their failures are reported.
_CHECKS: tuple[Callable[[Singles, Spans], Iterator[str]], ...] = (
    _singles_in_range,
    _ranges_in_range,
    _ranges_apart,
    _singles_outside_ranges,
    _singles_apart,
)


# -- what is said about the ports bound ------------------------------------------------
_SINGLES = (
    ("normal_port", Role.MAIN),
    ("immediate_drop_port", Role.IMMEDIATE_DROP),
    ("tls_port", Role.TLS),
    ("starttls_port", Role.STARTTLS),
)


def _bound(listeners: Iterable[Listener]) -> dict[Role, int]:
    """The first port bound for each role."""
    bound: dict[Role, int] = {}
    for listener in listeners:
        bound.setdefault(listener.role, listener.port)
    return bound


def _fault_ports(listeners: Iterable[Listener]) -> dict[str, int]:
    """The port bound for each TLS fault of the plan, in TLS_FAULTS order."""
    ports: dict[str, int] = {}
    for listener in listeners:
        if listener.role is Role.TLS_FAULT and listener.tls_fault is not None:
            ports.setdefault(listener.tls_fault, listener.port)
    return {fault: ports[fault] for fault in TLS_FAULTS if fault in ports}


def _fault_text(ports: dict[str, int]) -> str:
    """``25800-25804`` when the five are bound in order, else each one."""
    numbers = list(ports.values())
    if len(numbers) == len(TLS_FAULTS) and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(f"{fault} {port}" for fault, port in ports.items()) or "not bound"


def port_fields(config: Config, listeners: Iterable[Listener]) -> dict[str, Any]:
    """The port fields of ``BadSMTP server started`` and of the port file:
    the numbers actually bound (a single port that could not be bound is
    left out) and the three ranges as ``"start-end"``."""
    bound = _bound(listeners)
    spans = {name: f"{a}-{b}" for name, (a, b) in ranges(config).items()}
    fields: dict[str, Any] = {}
    if Role.MAIN in bound:
        fields["normal_port"] = bound[Role.MAIN]
    fields["greeting_delay_ports"] = spans["greeting delay"]
    fields["command_delay_ports"] = spans["command delay"]
    fields["drop_delay_ports"] = spans["drop delay"]
    for name, role in _SINGLES[1:]:
        if role in bound:
            fields[name] = bound[role]
    faults = _fault_ports(listeners)
    if faults:
        fields["tls_fault_ports"] = faults
    return fields


def help_reply(config: Config, listeners: Iterable[Listener]) -> Reply:
    """HELP as a person at a telnet prompt needs it, with the ports in force
    (a single port that is not bound shows its configured number)."""
    bound = _bound(listeners)
    spans = ["{}-{}".format(*span) for span in ranges(config).values()]
    configured = {Role.IMMEDIATE_DROP: config.immediate_drop_port, Role.TLS: config.tls_port,
                  Role.STARTTLS: config.starttls_port}  # fmt: skip
    singles = [str(bound.get(role, port)) for role, port in configured.items()]
    faults, span = _fault_ports(listeners), fault_span(config)
    if faults:
        text = _fault_text(faults)
    else:  # none bound: the configured ports
        text = "ephemeral" if span is None else "{}-{}".format(*span)
    (greeting, command, drop), (immediate, tls, starttls) = spans, singles
    return replies.help_reply(greeting, command, drop, immediate, tls, starttls, text)


SHOWN = 10  # skipped ports named per reason in the start-up line; the log has them all


def summary(
    config: Config,
    listeners: list[Listener],
    version: str,
    skipped: Iterable[tuple[Listener, str]] = (),
) -> str:
    """One human line for stderr: what listens where, and which ports of
    the plan were skipped and why (``skipped 5000 (address already in
    use)``: on macOS the AirPlay receiver holds 5000)."""
    f = port_fields(config, listeners)
    faults = _fault_text(f.get("tls_fault_ports", {}))

    def single(name: str) -> str:
        return str(f.get(name, "not bound"))

    text = (
        f"badsmtp {version} on {config.listen_address}: SMTP {single('normal_port')}, "
        f"STARTTLS {single('starttls_port')}, implicit TLS {single('tls_port')}, "
        f"greeting delay {f['greeting_delay_ports']}, command delay {f['command_delay_ports']}, "
        f"drop {f['drop_delay_ports']}, immediate drop {single('immediate_drop_port')}, "
        f"TLS faults {faults}; "
        f"storage {config.mailbox_dir or 'off'}; {len(listeners)} listeners"
    )
    skipped = list(skipped)
    if skipped:
        return f"{text}; skipped {_skipped(skipped)}"
    missing = len(plan_listeners(config)) - len(listeners)
    if missing:
        text += f" ({missing} could not be bound, see the log)"
    return text


def _skipped(skipped: list[tuple[Listener, str]]) -> str:
    """``5000, 5001 (address already in use)``, one group per reason."""
    by_reason: dict[str, list[int]] = {}
    for listener, reason in skipped:
        by_reason.setdefault(reason[:1].lower() + reason[1:], []).append(listener.port)
    groups = []
    for reason, ports in by_reason.items():
        named = ", ".join(str(port) for port in ports[:SHOWN])
        more = f" and {len(ports) - SHOWN} more" if len(ports) > SHOWN else ""
        groups.append(f"{named}{more} ({reason})")
    return "; ".join(groups)
