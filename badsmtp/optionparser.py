"""The command line of ``badsmtp`` (badsmtp(1), SYNOPSIS and OPTIONS): the
configargparse parser built from the key table, which merges flags >
``BADSMTP_*`` environment > configuration file > defaults and remembers
which option strings set each value.

Every failure is a :class:`CLIError`: one line for stderr and an exit status.
"""

from __future__ import annotations

import io
import sys
from typing import Any, NoReturn

import configargparse  # type: ignore[import-untyped]

from . import __version__
from .log import LOG_KEYS
from .optionkeys import GROUPS, KEY_BY_NAME, KEYS, TLS, Key, defaults

__all__ = ["CLIError", "ParserExit", "build_parser"]


class CLIError(Exception):
    """A one-line message for stderr, and the exit status that goes with it."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class ParserExit(Exception):
    """``--help`` or ``--version`` was handled: exit with ``status``."""

    def __init__(self, status: int) -> None:
        self.status = status


class _FileParser(configargparse.ConfigFileParser):  # type: ignore[misc]
    """Hands configargparse the already-validated file values, keyed by the
    long option name it knows (``listen_address`` -> ``listen-address``)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get_syntax_description(self) -> str:
        return "YAML (or JSON): a flat mapping of snake_case keys"

    def parse(self, stream: Any) -> dict[str, str]:
        return {KEY_BY_NAME[k].flags[0][2:]: v for k, v in self.values.items()}


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
and TLS on demand, for testing SMTP clients. Listens on 309 ports by default
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


def build_parser(values: dict[str, str] | None = None) -> _Parser:
    """The parser of badsmtp(1), OPTIONS; ``values`` are the configuration
    file's, already read and checked."""
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
    _add_general(parser.add_argument_group("general"))
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    shown = defaults()
    for key in KEYS:
        _add_key(groups[key.group], key, shown[key.name])
    groups[TLS].add_argument(
        "--write-tls-cert",
        metavar="FILE",
        help="once bound, write the default self-signed certificate (PEM) to FILE (command line only)",
    )
    groups[TLS].add_argument(
        "--write-tls-ca",
        metavar="FILE",
        help="once bound, write the test CA of the TLS faults (PEM) to FILE (command line only)",
    )
    return parser


def _add_general(group: Any) -> None:
    """The options that are not configuration keys."""
    group.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file to load (else searched, see below)",
    )
    group.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration and the source of every value, then exit",
    )
    group.add_argument(
        "--port-file",
        metavar="FILE",
        help="once bound, write the actual ports to FILE as JSON (command line only)",
    )
    group.add_argument("--version", action="version", version=f"badsmtp {__version__}")


def _add_key(group: Any, key: Key, default: Any) -> None:
    # --mailbox alone means ./mailbox (badsmtp(1), --mailbox).
    optional = {"nargs": "?", "const": "./mailbox"} if key.name == "mailbox_dir" else {}
    group.add_argument(
        *key.flags,
        dest=key.name,
        action=_Store,
        metavar=key.metavar,
        env_var=key.env,
        help=f"{key.help} ({_help_default(key, default)}env {' or '.join(_env_names(key))})",
        **optional,
    )


def _help_default(key: Key, default: Any) -> str:
    if key.name == "mailbox_dir":
        return "default: off; "
    if isinstance(default, float):
        default = f"{default:g}"
    return f"default: {default or 'none'}; "


def _env_names(key: Key) -> list[str]:
    return [key.env, key.name.upper()] if key.name in LOG_KEYS else [key.env]
