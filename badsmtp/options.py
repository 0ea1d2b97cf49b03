"""Configuration for the ``badsmtp`` command (badsmtp(1), OPTIONS,
CONFIGURATION and FILES): the file search, flags > ``BADSMTP_*``
environment > file > defaults (configargparse does the merging, see
:mod:`badsmtp.optionparser`), where every value came from, and the checks
made before anything is bound.  The keys themselves are a table in
:mod:`badsmtp.optionkeys`.

Every failure is a :class:`CLIError`: one line for stderr and an exit status.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import configargparse  # type: ignore[import-untyped]

from . import __version__
from .config import Config, ConfigError, PortConfigError
from .log import LOG_KEYS, LogSettings
from .optionkeys import AFFINITIES, KEY_BY_NAME, KEYS, RUN_DEFAULTS, Key, defaults
from .optionparser import CLIError, ParserExit, build_parser
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
    try:
        home = [Path.home() / ".badsmtp"]
    except RuntimeError:  # no HOME and no passwd entry (a container's arbitrary uid): no ~
        home = []
    return [Path("."), *home, Path("/etc/badsmtp")]


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
    data = _parse_yaml(_read_text(path), path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CLIError(f"configuration file {path} must hold a mapping of keys to values")
    values: dict[str, str] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key.startswith("_"):
            continue
        text = _file_value(key, value, path)
        if text is not None:
            values[key] = text
    return values


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CLIError(f"cannot read configuration file {path}: {reason}") from None


def _parse_yaml(text: str, path: str) -> Any:
    import yaml  # type: ignore[import-untyped]  # only when there is a file to read

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        at = f" at line {where.line + 1}" if where is not None else ""
        raise CLIError(f"cannot parse configuration file {path}: {problem}{at}") from None


def _file_value(key: str, value: Any, path: str) -> str | None:
    """One file value as the string an option would carry; None leaves the
    default ("key:" with nothing after it)."""
    if key not in KEY_BY_NAME:
        raise CLIError(f"unknown configuration key {key} in {path}")
    if isinstance(value, (list, dict)):
        raise CLIError(f"invalid value for {key} in {path}: expected a single value")
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


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
    write_tls_ca: str | None = None

    def server_kwargs(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.values.items() if k not in LOG_KEYS and k not in RUN_DEFAULTS
        }

    @property
    def cpu_affinity(self) -> str:
        return str(self.values["cpu_affinity"]).strip().lower()

    @property
    def workers(self) -> int:
        """How many processes serve (``--workers``), ``auto`` counted."""
        text = str(self.values["workers"]).strip()
        if text == "1":
            return 1  # one process: nothing of the supervisor is imported
        from .processes import worker_count

        return worker_count(text)

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
    if key.name == "http_port" and not raw.strip():
        return None  # empty means unset: the inspection API is off
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
    provenance = _Provenance(_taken(parser), origin, path)
    seen: dict[str, list[str]] = getattr(namespace, "_seen", {})
    values, sources = defaults(), {k.name: ConfigSource("default", "") for k in KEYS}
    for key in KEYS:
        used = seen.get(key.name)
        if used:
            source, where = provenance.of(key, used)
            values[key.name] = _convert(key, getattr(namespace, key.name), where)
            sources[key.name] = source
    return Settings(
        values=values,
        sources=sources,
        config_file=path,
        print_config=bool(namespace.print_config),
        port_file=namespace.port_file,
        write_tls_cert=namespace.write_tls_cert,
        write_tls_ca=namespace.write_tls_ca,
    )


# configargparse's labels of the sources it reads besides the command line.
_SOURCE_KINDS = {"environment_variables": "env", "config_file": "file"}


def _taken(parser: Any) -> dict[str, set[str]]:
    """The keys configargparse took from the environment and from the file
    (values already on the command line are not taken from either)."""
    taken: dict[str, set[str]] = {"env": set(), "file": set()}
    for label, settings in parser.get_source_to_settings_dict().items():
        kind = _SOURCE_KINDS.get(label.partition("|")[0])  # "config_file|PATH"
        if kind is not None:
            taken[kind].update(action.dest for action, _ in settings.values() if action is not None)
    return taken


@dataclass(frozen=True, slots=True)
class _Provenance:
    """Where the values of one parse came from."""

    taken: dict[str, set[str]]  # keys taken from "env" and from "file"
    origin: dict[str, str]  # BADSMTP_ name -> the variable really set
    path: str | None  # the configuration file

    def of(self, key: Key, used: list[str]) -> tuple[ConfigSource, str]:
        """The source of ``key``'s value, and the name an error message
        gives it, from the option strings that set it (``used``)."""
        if len(used) == 1 and key.name in self.taken["env"]:
            return ConfigSource("env", self.origin[key.env]), self.origin[key.env]
        if len(used) == 1 and key.name in self.taken["file"]:
            return ConfigSource("file", str(self.path)), key.name
        return ConfigSource("flag", used[-1]), used[-1]  # the command line comes last: it wins


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
    try:
        settings.workers
    except ValueError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    if config.http_port is not None and settings.workers > 1:
        raise CLIError(
            "configuration error: --http-port needs one process: the inspection API "
            "cannot see other workers' sessions (leave --workers at 1)"
        )
    if settings.cpu_affinity not in AFFINITIES:
        raise CLIError(
            f"configuration error: cpu_affinity must be none or pin, not {settings.cpu_affinity!r}"
        )
    logging_ = settings.log_settings()
    if logging_.log_output in ("tcp", "udp") and not logging_.log_remote_addr:
        raise CLIError(f"remote address required for {logging_.log_output} logging")
    return config
