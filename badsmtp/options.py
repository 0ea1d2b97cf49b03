"""Configuration for the ``badsmtp`` command (badsmtp(1), OPTIONS,
CONFIGURATION and FILES): the keys, the file search, flags > ``BADSMTP_*``
environment > file > defaults (configargparse does the merging), and where
every value came from.

Every failure is a :class:`CLIError`: one line for stderr and an exit status.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import configargparse  # type: ignore[import-untyped]

from . import __version__
from .config import Config, ConfigError, PortConfigError
from .log import FORMATS, LEVELS, LOG_KEYS, OUTPUTS, LogSettings
from .portplan import validate_ports

__all__ = [
    "KEYS",
    "CLIError",
    "ConfigSource",
    "Key",
    "ParserExit",
    "Settings",
    "build_parser",
    "check",
    "format_config",
    "load_settings",
]

CONFIG_NAMES = ("badsmtp.yaml", "badsmtp.yml", "badsmtp.json")


def config_dirs() -> list[Path]:
    """Where a configuration file is looked for, in order (badsmtp(1), FILES)."""
    return [Path("."), Path.home() / ".badsmtp", Path("/etc/badsmtp")]


class CLIError(Exception):
    """A one-line message for stderr, and the exit status that goes with it."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class ParserExit(Exception):
    """``--help`` or ``--version`` was handled: exit with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status


# -- the keys (badsmtp(1), OPTIONS) -----------------------------------------------------
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


_SERVER, _PORTS, _TLS, _LOGGING, _LIMITS = "server", "ports", "TLS", "logging", "limits"


def _one_of(names: tuple[str, ...] | list[str]) -> str:
    """``a, b or c``: the choices of a key, for its help."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def _key(name: str, group: str, kind: type, metavar: str, text: str, *aliases: str) -> Key:
    return Key(name, ("--" + name.replace("_", "-"), *aliases), group, kind, text, metavar)


KEYS: tuple[Key, ...] = (
    _key("port", _SERVER, int, "PORT", "main SMTP port; 0 = ephemeral", "-p", "-port"),
    Key(
        "mailbox_dir",
        ("--mailbox", "-m", "-mailbox", "--mailbox-dir"),
        _SERVER,
        str,
        "store accepted messages in this maildir; without DIR ./mailbox",
        "DIR",
    ),
    _key("listen_address", _SERVER, str, "ADDR", "address of every listener"),
    _key("tls_port", _PORTS, int, "PORT", "implicit TLS port; 0 = ephemeral"),
    _key("starttls_port", _PORTS, int, "PORT", "STARTTLS port; 0 = ephemeral"),
    _key("greeting_delay_port_start", _PORTS, int, "PORT", "first of 100 greeting delay ports"),
    _key("command_delay_port_start", _PORTS, int, "PORT", "first of 100 command delay ports"),
    _key("drop_delay_port_start", _PORTS, int, "PORT", "first of 100 delayed drop ports"),
    _key("immediate_drop_port", _PORTS, int, "PORT", "drops at once; 0 = ephemeral"),
    _key("tls_hostname", _TLS, str, "NAME", "server identity, name of the generated certificate"),
    _key("tls_cert_file", _TLS, str, "FILE", "PEM certificate (chain) to present"),
    _key("tls_key_file", _TLS, str, "FILE", "PEM private key for --tls-cert-file"),
    _key("log_level", _LOGGING, str, "LEVEL", _one_of(list(LEVELS))),
    _key("log_format", _LOGGING, str, "FORMAT", _one_of(FORMATS)),
    _key("log_output", _LOGGING, str, "OUTPUT", _one_of(OUTPUTS)),
    _key("log_remote_addr", _LOGGING, str, "HOST:PORT", "receiver of tcp/udp log records"),
    _key("syslog_facility", _LOGGING, str, "FACILITY", "mail, daemon or local0..local7"),
    _key("idle_timeout", _LIMITS, float, "SECONDS", "silence before 421; 0 = never"),
    _key("max_recipients", _LIMITS, int, "N", "recipients per transaction; more get 452"),
    _key("shutdown_timeout", _LIMITS, float, "SECONDS", "wait for sessions on shutdown"),
)
KEY_BY_NAME = {key.name: key for key in KEYS}


def defaults() -> dict[str, Any]:
    # An instance, not the class: slotted dataclass fields are descriptors.
    config, logging_ = Config(), LogSettings()
    return {
        key.name: getattr(logging_ if key.name in LOG_KEYS else config, key.name) for key in KEYS
    }


# -- configuration file (badsmtp(1), CONFIGURATION and FILES) -----------------------------
def find_config_file() -> Path | None:
    for directory in config_dirs():
        for name in CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file():
                return candidate if directory != Path(".") else Path(name)
    return None


def read_config_file(path: str) -> dict[str, str]:
    """The flat mapping of a YAML (or JSON) file, values as strings; keys
    starting with ``_`` are comments; any other unknown key is an error
    (badsmtp(1), CONFIGURATION)."""
    import yaml  # type: ignore[import-untyped]  # only when there is a file to read

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CLIError(f"cannot read configuration file {path}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        at = f" at line {where.line + 1}" if where is not None else ""
        raise CLIError(f"cannot parse configuration file {path}: {problem}{at}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CLIError(f"configuration file {path} must hold a mapping of keys to values")
    values: dict[str, str] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key.startswith("_"):
            continue
        if key not in KEY_BY_NAME:
            raise CLIError(f"unknown configuration key {key} in {path}")
        if isinstance(value, (list, dict)):
            raise CLIError(f"invalid value for {key} in {path}: expected a single value")
        if value is None:
            continue  # "key:" with nothing after it leaves the default
        values[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


class _FileParser(configargparse.ConfigFileParser):  # type: ignore[misc]
    """Hands configargparse the already-validated file values, keyed by the
    long option name it knows (``listen_address`` -> ``listen-address``)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get_syntax_description(self) -> str:
        return "YAML (or JSON): a flat mapping of snake_case keys"

    def parse(self, stream: Any) -> dict[str, str]:
        return {KEY_BY_NAME[k].flags[0][2:]: v for k, v in self.values.items()}


# -- the parser -----------------------------------------------------------------------
class _Store(configargparse.Action):  # type: ignore[misc]
    """``store`` that remembers which option strings set the value: config
    file and environment values arrive first (as option_strings[-1]), the
    command line last, so the last one seen tells where a value came from."""

    def __call__(
        self, parser: Any, namespace: Any, values: Any, option_string: str | None = None
    ) -> None:
        setattr(namespace, self.dest, values)
        seen = namespace.__dict__.setdefault("_seen", {})
        seen.setdefault(self.dest, []).append(option_string or self.option_strings[0])


class _Parser(configargparse.ArgumentParser):  # type: ignore[misc]
    def error(self, message: str) -> NoReturn:
        raise CLIError(f"badsmtp: {message} (see badsmtp --help)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise ParserExit(status)


_DESCRIPTION = """\
The reliably unreliable SMTP server: error replies, delays, drops, fake AUTH
and TLS on demand, for testing SMTP clients. Listens on 304 ports by default
(127.0.0.1 only); see badsmtp(1) for the port map and the trigger grammar."""

_EPILOG = """\
Every option can also be set in the environment (BADSMTP_ + the key in upper
case, e.g. BADSMTP_PORT=2525; the logging keys also as LOG_LEVEL, LOG_FORMAT,
LOG_OUTPUT, LOG_REMOTE_ADDR, SYSLOG_FACILITY) or in a configuration file: a
flat YAML/JSON mapping of snake_case keys (port: 2525), given with --config or
found as badsmtp.yaml, badsmtp.yml or badsmtp.json in ., ~/.badsmtp/ and
/etc/badsmtp/. Precedence: options > environment > file > defaults.
Exit status: 0 after a graceful shutdown, 1 if the server cannot start,
2 for a configuration error."""


def _help_default(key: Key, default: Any) -> str:
    if key.name == "mailbox_dir":
        return "default: off; "
    if isinstance(default, float):
        default = f"{default:g}"
    return f"default: {default or 'none'}; "


def _env_names(key: Key) -> list[str]:
    return [key.env, key.name.upper()] if key.name in LOG_KEYS else [key.env]


def build_parser(values: dict[str, str] | None = None) -> _Parser:
    parser = _Parser(
        prog="badsmtp",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        add_config_file_help=False,
        add_env_var_help=False,  # each option's help names its variables
        config_file_parser_class=_FileParser(values or {}),
        default_config_files=[lambda: io.StringIO("")] if values else [],
    )
    general = parser.add_argument_group("general")
    general.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file to load (else searched, see below)",
    )
    general.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration and the source of every value, then exit",
    )
    general.add_argument(
        "--port-file",
        metavar="FILE",
        help="once bound, write the actual ports to FILE as JSON (command line only)",
    )
    general.add_argument("--version", action="version", version=f"badsmtp {__version__}")
    groups = {
        _SERVER: parser.add_argument_group("server"),
        _PORTS: parser.add_argument_group("ports"),
        _TLS: parser.add_argument_group("TLS"),
        _LOGGING: parser.add_argument_group("logging"),
        _LIMITS: parser.add_argument_group("limits"),
    }
    shown = defaults()
    for key in KEYS:
        kwargs: dict[str, Any] = {}
        if key.name == "mailbox_dir":
            kwargs = {"nargs": "?", "const": "./mailbox"}
        groups[key.group].add_argument(
            *key.flags,
            dest=key.name,
            action=_Store,
            metavar=key.metavar,
            env_var=key.env,
            help=f"{key.help} ({_help_default(key, shown[key.name])}env {' or '.join(_env_names(key))})",
            **kwargs,
        )
    groups[_TLS].add_argument(
        "--write-tls-cert",
        metavar="FILE",
        help="once bound, write the default self-signed certificate (PEM) to FILE (command line only)",
    )
    return parser


# -- loading: parse, then convert with the source of every value ------------------------
@dataclass(frozen=True, slots=True)
class ConfigSource:
    kind: str  # "default", "file", "env" or "flag"
    name: str  # the file, variable or option it came from ("" for defaults)

    def __str__(self) -> str:
        return self.kind if not self.name else f"{self.kind} {self.name}"


@dataclass
class Settings:
    values: dict[str, Any]
    sources: dict[str, ConfigSource]
    config_file: str | None
    print_config: bool
    port_file: str | None
    write_tls_cert: str | None

    def server_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k not in LOG_KEYS}

    def log_settings(self) -> LogSettings:
        return LogSettings(**{k: v for k, v in self.values.items() if k in LOG_KEYS})


def _environment(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The environment as configargparse should see it, with each alias
    folded into its ``BADSMTP_`` name unless that is set (the prefixed form
    wins), and which variable each value really came from."""
    env = dict(environ)
    origin: dict[str, str] = {}
    for key in KEYS:
        if key.env in environ:
            origin[key.env] = key.env
            continue
        for alias in key.aliases:
            if alias in environ:
                env[key.env] = environ[alias]
                origin[key.env] = alias
                break
    return env, origin


def _wants_no_file(argv: list[str]) -> bool:
    return any(a in ("-h", "--help", "--version") for a in argv)


def _config_path(argv: list[str]) -> str | None:
    pre = configargparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("-c", "--config")
    known, _ = pre.parse_known_args(argv, env_vars={})
    if known.config:
        return str(known.config)
    found = find_config_file()
    return str(found) if found is not None else None


def _convert(key: Key, raw: str, where: str) -> Any:
    """A raw string as the key's type; ``where`` names the option, variable
    or file key it came from (the message: ``invalid integer for {SOURCE}``)."""
    if key.kind is int:
        try:
            return int(raw.strip())
        except ValueError:
            raise CLIError(f"invalid integer for {where}: {raw}") from None
    if key.kind is float:
        # Seconds; fractions are accepted (handy in tests), the message is an integer's.
        try:
            number = float(raw.strip())
        except ValueError:
            number = float("nan")
        if not math.isfinite(number):
            raise CLIError(f"invalid integer for {where}: {raw}")
        return number
    if key.name in ("mailbox_dir", "tls_cert_file", "tls_key_file"):
        return raw or None  # empty means unset (storage off, generated certificate)
    return raw


def load_settings(argv: list[str], environ: Mapping[str, str]) -> Settings:
    """Parse ``argv`` with ``environ`` and the configuration file, convert
    every value, and record where each one came from."""
    path = None if _wants_no_file(argv) else _config_path(argv)
    file_values = read_config_file(path) if path is not None else {}
    parser = build_parser(file_values)
    env, origin = _environment(environ)
    namespace = parser.parse_args(argv, env_vars=env)
    # configargparse lists what it took from each source (values already on
    # the command line are not taken from the environment or the file).
    taken: dict[str, set[str]] = {"env": set(), "file": set()}
    for label, settings in parser.get_source_to_settings_dict().items():
        kind = "env" if label == "environment_variables" else label.partition("|")[0]
        if kind in ("env", "config_file"):
            dests = {action.dest for action, _ in settings.values() if action is not None}
            taken["env" if kind == "env" else "file"].update(dests)
    seen: dict[str, list[str]] = getattr(namespace, "_seen", {})
    values, sources = defaults(), {k.name: ConfigSource("default", "") for k in KEYS}
    for key in KEYS:
        used = seen.get(key.name)
        if not used:
            continue
        if len(used) == 1 and key.name in taken["env"]:
            source, where = ConfigSource("env", origin[key.env]), origin[key.env]
        elif len(used) == 1 and key.name in taken["file"]:
            source, where = ConfigSource("file", str(path)), key.name
        else:  # the command line comes last, so it wins
            source, where = ConfigSource("flag", used[-1]), used[-1]
        values[key.name] = _convert(key, getattr(namespace, key.name), where)
        sources[key.name] = source
    return Settings(
        values=values,
        sources=sources,
        config_file=path,
        print_config=bool(namespace.print_config),
        port_file=namespace.port_file,
        write_tls_cert=namespace.write_tls_cert,
    )


# -- --print-config -------------------------------------------------------------------
def _yaml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a double-quoted YAML scalar


def _log_values(settings: LogSettings) -> dict[str, str]:
    return {name: getattr(settings, name) for name in LOG_KEYS}


def format_config(settings: Settings) -> str:
    """The effective configuration as a loadable YAML file, each value
    followed by its source: ``default``, ``file PATH``, ``env VAR`` or
    ``flag OPTION``."""
    file_note = settings.config_file or "none found"
    lines = [f"# badsmtp {__version__} effective configuration (configuration file: {file_note})"]
    width = max(len(k.name) for k in KEYS) + 2
    effective = {**settings.values, **_log_values(settings.log_settings())}
    for key in KEYS:
        entry = f"{key.name}: {_yaml_value(effective[key.name])}"
        lines.append(f"{entry:<{width + 20}} # {settings.sources[key.name]}")
    return "\n".join(lines) + "\n"


def check(settings: Settings) -> Config:
    """Everything that can be checked before binding (the configuration errors of
    badsmtp(1), EXIT STATUS)."""
    try:
        config = Config(**settings.server_kwargs())
    except ConfigError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    if config.shutdown_timeout < 0:
        raise CLIError(
            f"configuration error: shutdown_timeout must not be negative, not {config.shutdown_timeout:g}"
        )
    try:
        validate_ports(config)
    except PortConfigError as exc:
        raise CLIError(f"port configuration error: {exc}") from None
    logging_ = settings.log_settings()
    if logging_.log_output in ("tcp", "udp") and not logging_.log_remote_addr:
        raise CLIError(f"remote address required for {logging_.log_output} logging")
    return config
