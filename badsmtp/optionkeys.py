"""The configuration keys of the ``badsmtp`` command (badsmtp(1), OPTIONS):
one table that the parser, the configuration file, the environment,
``--print-config`` and the man page's test all read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import Config
from .log import FORMATS, LEVELS, LOG_KEYS, OUTPUTS, LogSettings

__all__ = ["GROUPS", "KEYS", "KEY_BY_NAME", "RUN_DEFAULTS", "Key", "defaults"]


@dataclass(frozen=True, slots=True)
class Key:
    name: str
    flags: tuple[str, ...]
    group: str
    kind: type
    help: str
    metavar: str

    @property
    def env(self) -> str:
        return "BADSMTP_" + self.name.upper()

    @property
    def aliases(self) -> tuple[str, ...]:
        """Other variables read for this key, weaker than :attr:`env`: the
        README's un-prefixed logging variables and the reference's spelling
        without inner underscores (``BADSMTP_TLSPORT``)."""
        names = [self.name.upper()] if self.name in LOG_KEYS else []
        squeezed = "BADSMTP_" + self.name.replace("_", "").upper()
        if squeezed != self.env:
            names.append(squeezed)
        return tuple(names)


# The option groups of ``badsmtp --help``, in the order shown.
GROUPS = (SERVER, PORTS, TLS, LOGGING, LIMITS) = ("server", "ports", "TLS", "logging", "limits")


def _one_of(names: tuple[str, ...] | list[str]) -> str:
    """``a, b or c``: the choices of a key, for its help."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def _key(name: str, group: str, kind: type, metavar: str, text: str, *aliases: str) -> Key:
    return Key(name, ("--" + name.replace("_", "-"), *aliases), group, kind, text, metavar)


KEYS: tuple[Key, ...] = (
    _key("port", SERVER, int, "PORT", "main SMTP port; 0 = ephemeral", "-p", "-port"),
    Key(
        "mailbox_dir",
        ("--mailbox", "-m", "-mailbox", "--mailbox-dir"),
        SERVER,
        str,
        "store accepted messages in this maildir; without DIR ./mailbox",
        "DIR",
    ),
    _key("listen_address", SERVER, str, "ADDR", "address of every listener"),
    _key("workers", SERVER, str, "N", "processes serving the listeners: N, or auto (one per CPU)"),
    _key("cpu_affinity", SERVER, str, "MODE", "pin: each process (each worker) on one CPU; none: anywhere"),
    _key("http_port", SERVER, int, "PORT", "inspection API and web page on PORT; 0 = ephemeral; off by default"),
    _key("http_keep", SERVER, int, "N", "sessions and messages the inspection API keeps, newest first"),
    _key("http_memory", SERVER, int, "MIB", "message bodies kept in memory when storage is off; oldest dropped first"),
    _key("tls_port", PORTS, int, "PORT", "implicit TLS port; 0 = ephemeral"),
    _key("starttls_port", PORTS, int, "PORT", "STARTTLS port; 0 = ephemeral"),
    _key("greeting_delay_port_start", PORTS, int, "PORT", "first of 100 greeting delay ports"),
    _key("command_delay_port_start", PORTS, int, "PORT", "first of 100 command delay ports"),
    _key("drop_delay_port_start", PORTS, int, "PORT", "first of 100 delayed drop ports"),
    _key("immediate_drop_port", PORTS, int, "PORT", "drops at once; 0 = ephemeral"),
    _key("tls_fault_port_start", PORTS, int, "PORT", "first of 5 TLS fault ports; 0 = ephemeral"),
    _key("tls_hostname", TLS, str, "NAME", "server identity, name of the generated certificate"),
    _key("tls_cert_file", TLS, str, "FILE", "PEM certificate (chain) to present"),
    _key("tls_key_file", TLS, str, "FILE", "PEM private key for --tls-cert-file"),
    _key("log_level", LOGGING, str, "LEVEL", _one_of(list(LEVELS))),
    _key("log_format", LOGGING, str, "FORMAT", _one_of(FORMATS)),
    _key("log_output", LOGGING, str, "OUTPUT", _one_of(OUTPUTS)),
    _key("log_remote_addr", LOGGING, str, "HOST:PORT", "receiver of tcp/udp log records"),
    _key("syslog_facility", LOGGING, str, "FACILITY", "mail, daemon or local0..local7"),
    _key("idle_timeout", LIMITS, float, "SECONDS", "silence before 421; 0 = never"),
    _key("max_recipients", LIMITS, int, "N", "recipients per transaction; more get 452"),
    _key("shutdown_timeout", LIMITS, float, "SECONDS", "wait for sessions on shutdown"),
    _key("time_scale", LIMITS, float, "FACTOR", "multiplies every delay badsmtp makes; > 0"),
)
KEY_BY_NAME = {key.name: key for key in KEYS}


# Keys of the command alone, neither the server's (Config) nor the log's.
RUN_DEFAULTS: dict[str, Any] = {"workers": "1", "cpu_affinity": "pin"}
AFFINITIES = ("none", "pin")


def defaults() -> dict[str, Any]:
    # An instance, not the class: slotted dataclass fields are descriptors.
    config, logging_ = Config(), LogSettings()
    return {
        key.name: RUN_DEFAULTS[key.name]
        if key.name in RUN_DEFAULTS
        else getattr(logging_ if key.name in LOG_KEYS else config, key.name)
        for key in KEYS
    }
