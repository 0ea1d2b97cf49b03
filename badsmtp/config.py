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
    "TLS_FAULTS",
]

DEFAULT_ADDRESS = "127.0.0.1"  # loopback only: a safe default
DEFAULT_HOSTNAME = "badsmtp.test"  # the server's identity and its default certificate's name
# badssl for SMTP (badsmtp(1), TLS FAULTS), in the order of the tls_fault port range.
TLS_FAULTS = ("certexpired", "certfuture", "certwronghost", "certselfsigned", "tlsabort")


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
    TLS_FAULT = "tls_fault"  # implicit TLS with a TLS fault (badsmtp(1), TLS FAULTS)


# The behaviour the README's third argument sets, by role.
_DELAY_OF = {
    Role.GREETING_DELAY: "greeting_delay",
    Role.COMMAND_DELAY: "command_delay",
    Role.DROP: "drop_after",
}


def _check(port: int, **seconds: float) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range (0-65535)")
    for name, value in seconds.items():
        if value < 0:
            raise ConfigError(f"{name} {value} must not be negative")


@dataclass(frozen=True, slots=True, init=False)
class Listener:
    """One listening port and what a connection to it gets, as behaviour:

    - ``greeting_delay``: seconds before the 220;
    - ``command_delay``: seconds before each command is handled;
    - ``drop_after``: the connection is closed after this many seconds
      without a word (``0``: at once; ``None``: never);
    - ``tls``: implicit TLS, the handshake first (RFC 8314);
    - ``tls_fault``: on implicit TLS, one of :data:`TLS_FAULTS` instead of the
      default certificate (``Listener(0, "tls", tls_fault="certexpired")``;
      the role becomes ``tls_fault``).

    ``role`` names the kind of listener (logs, HELP, the port file).  The
    README's form ``Listener(port, role, delay)`` gives ``delay`` the meaning
    its role has (``Listener(0, "greeting_delay", 0.2)``); behaviours can
    also be given by name and combined (``Listener(0, greeting_delay=0.2,
    command_delay=0.1)``).  Fractions of a second are allowed everywhere."""

    port: int
    role: Role
    greeting_delay: float
    command_delay: float
    drop_after: float | None
    tls: bool
    tls_fault: str | None

    def __init__(
        self,
        port: int = 0,
        role: Role | str = Role.MAIN,
        delay: float = 0.0,
        *,
        greeting_delay: float = 0.0,
        command_delay: float = 0.0,
        drop_after: float | None = None,
        tls_fault: str | None = None,
    ) -> None:
        role = _fault_role(Role(role), tls_fault)
        _check(port, delay=delay, greeting_delay=greeting_delay, command_delay=command_delay,
               drop_after=drop_after or 0.0)  # fmt: skip
        behaviour: dict[str, object] = {
            "greeting_delay": greeting_delay, "command_delay": command_delay, "drop_after": drop_after,
        }  # fmt: skip
        if role in _DELAY_OF and (delay or role is Role.DROP):
            behaviour[_DELAY_OF[role]] = delay or drop_after or 0.0 if role is Role.DROP else delay
        if role is Role.IMMEDIATE_DROP:
            behaviour["drop_after"] = 0.0
        tls = role in (Role.TLS, Role.TLS_FAULT)
        behaviour.update(tls=tls, tls_fault=tls_fault)
        for name, setting in {"port": port, "role": role, **behaviour}.items():
            object.__setattr__(self, name, setting)

    @property
    def delay(self) -> float:
        """The delay the role is about (the README's third argument)."""
        seconds = getattr(self, _DELAY_OF.get(self.role, "drop_after"))
        return float(seconds or 0.0)

    def at(self, port: int) -> Listener:
        """The same behaviour on another port (the one the kernel gave port 0)."""
        return Listener(port, self.role, greeting_delay=self.greeting_delay,
                        command_delay=self.command_delay, drop_after=self.drop_after,
                        tls_fault=self.tls_fault)  # fmt: skip


def _fault_role(role: Role, tls_fault: str | None) -> Role:
    """The role of a listener with ``tls_fault``: implicit TLS only."""
    if tls_fault is None:
        if role is Role.TLS_FAULT:
            raise ConfigError(f"a tls_fault listener needs tls_fault= (one of {', '.join(TLS_FAULTS)})")
        return role
    if tls_fault not in TLS_FAULTS:
        raise ConfigError(f"tls_fault {tls_fault!r} is not one of {', '.join(TLS_FAULTS)}")
    if role not in (Role.TLS, Role.TLS_FAULT, Role.MAIN):
        raise ConfigError(f"tls_fault is for implicit TLS listeners, not {role.value}")
    return Role.TLS_FAULT


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
    tls_fault_port_start: int = 25800
    tls_hostname: str = DEFAULT_HOSTNAME
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    idle_timeout: float = 300.0
    max_recipients: int = 1000
    shutdown_timeout: float = 10.0
    time_scale: float = 1.0  # multiplies every delay badsmtp makes (README, Time scaling)
    # The inspection API and web page (badsmtp(1), INSPECTION API): off unless a port is given.
    http_port: int | None = None
    http_keep: int = 1000  # sessions and messages kept, newest first
    http_memory: int = 64  # MiB of message bodies kept in memory when storage is off
    extra: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.max_recipients < 1:
            raise ConfigError(f"max_recipients must be at least 1, not {self.max_recipients}")
        if self.idle_timeout < 0:
            raise ConfigError(f"idle_timeout must not be negative, not {self.idle_timeout}")
        if not self.time_scale > 0:  # NaN too
            raise ConfigError(f"time_scale must be greater than 0, not {self.time_scale:g}")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(f"http_port {self.http_port} is out of range (0-65535)")
        if self.http_keep < 1:
            raise ConfigError(f"http_keep must be at least 1, not {self.http_keep}")
        if self.http_memory < 0:
            raise ConfigError(f"http_memory must not be negative, not {self.http_memory}")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "extra"]
