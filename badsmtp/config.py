"""Server settings, listener descriptions and the README's port conventions.

A port's behaviour belongs to a :class:`Listener`, never to its number: one
pure function (:func:`listener_for_port`) maps the port conventions
(badsmtp(1), PORT MAP) to listeners, and embedders can describe any role on
any port, port 0 included, with sub-second delays (README, Embedding in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum

__all__ = [
    "Role",
    "Listener",
    "Config",
    "ConfigError",
    "PortConfigError",
    "listener_for_port",
    "plan_listeners",
    "validate_ports",
]

DEFAULT_ADDRESS = "127.0.0.1"  # loopback only: a safe default
DEFAULT_HOSTNAME = "badsmtp.test"  # the server's identity and its default certificate's name
RANGE = 100  # every range is exactly 100 ports long (badsmtp(1), PORT MAP)
STEP = 10.0  # seconds of delay per port of offset


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line, fit for a user."""


class PortConfigError(ConfigError):
    """The port plan cannot work (badsmtp(1), PORT MAP); the CLI prefixes
    ``port configuration error:``."""


class Role(str, Enum):
    MAIN = "main"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS: handshake first (RFC 8314)
    GREETING_DELAY = "greeting_delay"
    COMMAND_DELAY = "command_delay"
    DROP = "drop_delay"
    IMMEDIATE_DROP = "immediate_drop"


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening port and what a connection to it gets.

    ``delay`` is in seconds, fractions allowed: the greeting delay, the delay
    before each command, or the time before the connection is dropped."""

    port: int = 0
    role: Role = Role.MAIN
    delay: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range (0-65535)")
        if self.delay < 0:
            raise ConfigError(f"delay {self.delay} must not be negative")

    @property
    def tls(self) -> bool:
        return self.role is Role.TLS


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting the server itself uses (badsmtp(1), OPTIONS), with its default."""

    port: int = 2525
    listen_address: str = DEFAULT_ADDRESS
    mailbox_dir: str | None = None
    greeting_delay_port_start: int = 3000
    command_delay_port_start: int = 4000
    drop_delay_port_start: int = 5000
    immediate_drop_port: int = 6000
    tls_port: int = 25465
    starttls_port: int = 25587
    tls_hostname: str = DEFAULT_HOSTNAME
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    idle_timeout: float = 300.0
    max_recipients: int = 1000
    shutdown_timeout: float = 10.0
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.max_recipients < 1:
            raise ConfigError(f"max_recipients must be at least 1, not {self.max_recipients}")
        if self.idle_timeout < 0:
            raise ConfigError(f"idle_timeout must not be negative, not {self.idle_timeout}")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]

    def ranges(self) -> dict[str, tuple[int, int]]:
        return {
            "greeting delay": (self.greeting_delay_port_start, self.greeting_delay_port_start + RANGE - 1),
            "command delay": (self.command_delay_port_start, self.command_delay_port_start + RANGE - 1),
            "drop delay": (self.drop_delay_port_start, self.drop_delay_port_start + RANGE - 1),
        }


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
    return Listener(port)


def plan_listeners(config: Config) -> list[Listener]:
    """The default listener plan (badsmtp(1), PORT MAP): main first, then the single
    ports, then the three ranges — 304 listeners with the defaults."""
    plan = [
        Listener(config.port, Role.MAIN),
        Listener(config.starttls_port, Role.STARTTLS),
        Listener(config.tls_port, Role.TLS),
    ]
    for start, role in _range_starts(config):
        plan.extend(Listener(start + o, role, o * STEP) for o in range(RANGE))
    plan.append(Listener(config.immediate_drop_port, Role.IMMEDIATE_DROP))
    return plan


def _singles(config: Config) -> list[tuple[str, int]]:
    # Checked in this order, so the first conflict reported is always the same one.
    return [
        ("normal", config.port),
        ("immediate drop", config.immediate_drop_port),
        ("TLS", config.tls_port),
        ("STARTTLS", config.starttls_port),
    ]


def validate_ports(config: Config) -> None:
    """Check the default plan before anything is bound (badsmtp(1), PORT
    MAP): ports in range, ranges apart, single ports outside the ranges,
    single ports apart, in that order; the first failure raises
    :class:`PortConfigError` with its one-line text (badsmtp(1), EXIT STATUS,
    shows one).  A single port of ``0`` is ephemeral: it gets a port of its
    own, so it conflicts with nothing."""
    singles = _singles(config)
    ranges = list(config.ranges().items())
    for name, port in singles:
        if not 0 <= port <= 65535:
            raise PortConfigError(f"{name} port {port} is out of range (0-65535)")
    for name, (first, last) in ranges:
        if not (1 <= first <= 65535 and 1 <= last <= 65535):
            raise PortConfigError(f"{name} range ({first}-{last}) is out of range (1-65535)")
    for i, (name_a, (a1, a2)) in enumerate(ranges):
        for name_b, (b1, b2) in ranges[i + 1 :]:
            if a1 <= b2 and b1 <= a2:
                raise PortConfigError(
                    f"port ranges overlap: {name_a} ({a1}-{a2}) and {name_b} ({b1}-{b2})"
                )
    fixed = [(name, port) for name, port in singles if port != 0]
    for name, port in fixed:
        for range_name, (first, last) in ranges:
            if first <= port <= last:
                raise PortConfigError(
                    f"{name} port {port} conflicts with {range_name} range ({first}-{last})"
                )
    for i, (name_a, port_a) in enumerate(fixed):
        for name_b, port_b in fixed[i + 1 :]:
            if port_a == port_b:
                raise PortConfigError(f"{name_a} port {port_a} conflicts with {name_b} port {port_b}")
