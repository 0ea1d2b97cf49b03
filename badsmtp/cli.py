"""The ``badsmtp`` command (badsmtp(1)): configuration from flags >
``BADSMTP_*`` environment > configuration file > defaults, validation, the
full listener plan, structured logging, and a graceful exit on SIGINT/SIGTERM
(taken as :mod:`badsmtp.stopsignals` says).

``main(argv)`` returns the exit status, so tests can call it in-process:
0 after a graceful shutdown (and for ``--help``, ``--version``,
``--print-config``), 2 for a configuration error, 1 when the server cannot
start (a port in use, an unreadable certificate, syslog unreachable...).
Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import __version__, portplan
from .api import BadSMTP
from .config import ConfigError, Listener
from .log import LogConfigError, LogSetupError, configure
from .options import CLIError, ParserExit, Settings, check, format_config, load_settings
from .stopsignals import stop_signals
from .storage import StorageError
from .threadsettings import pinned, serving_threads
from .tls import TLSSetupError

__all__ = ["main", "port_fields", "raise_open_files_limit", "write_atomically"]

# -- running ----------------------------------------------------------------------------
_log = logging.getLogger("badsmtp.server")


def port_fields(server: BadSMTP) -> dict[str, Any]:
    """The port fields of the start-up record and the port file; with the
    inspection API on, its port as ``http_port`` (badsmtp(1), --port-file)."""
    fields = portplan.port_fields(server.config, server.listeners)
    if server.http_port is not None:
        fields["http_port"] = server.http_port
    return fields


def write_atomically(path: str, text: str) -> None:
    """Write under a temporary name in the same directory, then rename:
    a reader sees no file or the whole file, never a partial one
    (badsmtp(1), --port-file)."""
    import tempfile  # only for these files: a plain start writes none

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".badsmtp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _describe(listener: Listener) -> str:
    return f"{listener.role.value} {listener.delay:g}s" if listener.delay else listener.role.value


def _start(settings: Settings, prepare: Callable[[BadSMTP], None] | None = None) -> BadSMTP:
    """The server of ``settings``, bound and accepting; or, with ``prepare``,
    bound by that and not accepting (``--workers``: the workers accept)."""
    try:
        # A load-test sink keeps nothing: no captured bodies, no transcripts.
        server = BadSMTP(ports=None, capture=False, record=False, **settings.server_kwargs())
        if prepare is None:
            server.serve_in_thread()
        else:
            prepare(server)
    except ConfigError as exc:
        raise CLIError(f"configuration error: {exc}") from None
    except (StorageError, TLSSetupError) as exc:
        raise CLIError(str(exc), 1) from None
    except OSError as exc:
        raise CLIError(exc.strerror or str(exc), 1) from None
    return server


def _announce(server: BadSMTP, settings: Settings) -> None:
    # The certificate first, then the port file: a harness waiting for the
    # port file can read both at once (badsmtp(1), --write-tls-cert).
    files: list[tuple[str | None, str, Callable[[], str]]] = [
        (settings.write_tls_cert, "certificate file", server.certificate_pem),
        (settings.write_tls_ca, "CA file", server.ca_pem),
        (settings.port_file, "port file", lambda: json.dumps(port_fields(server)) + "\n"),
    ]
    for path, what, produce in files:
        if path:
            try:
                write_atomically(path, produce())
            except OSError as exc:
                raise CLIError(f"cannot write {what} {path}: {exc.strerror or exc}", 1) from None
    # One record per listener only at DEBUG (badsmtp(1), LOGGING): the
    # start-up record below names every port, and the default plan's 309
    # records would hold up the first greeting.
    if _log.isEnabledFor(logging.DEBUG):
        addr = server.config.listen_address
        for listener in server.listeners:
            _log.debug(
                "Listening on TLS port" if listener.tls else "Listening on port",
                extra={"fields": {"port": listener.port, "desc": _describe(listener), "addr": addr}},
            )
    logging_ = settings.log_settings()
    _log.info(
        "BadSMTP server started",
        extra={
            "fields": {
                **port_fields(server),
                "log_level": logging_.log_level,
                "log_output": logging_.log_output,
            }
        },
    )
    line = portplan.summary(server.config, server.listeners, __version__, server.skipped)
    print(line, file=sys.stderr, flush=True)


OPEN_MAX = 10240  # macOS: the most a soft limit may be when the hard one is "unlimited"
ENOUGH_FILES = 1024  # the default plan's 310 descriptors and ~700 connections


def open_files_targets(soft: int, hard: int, unlimited: int) -> list[int]:
    """The soft RLIMIT_NOFILE values to try, best first: the hard limit,
    then macOS's OPEN_MAX, since macOS refuses an unlimited soft limit (and
    one above kern.maxfilesperproc) although its hard limit says unlimited,
    then what the default plan needs with room for connections.  Never
    lower than ``soft``, never above ``hard``; empty when the soft limit is
    already as high as it gets."""
    if soft == unlimited:  # (RLIM_INFINITY is -1 on Linux: no comparing with it)
        return []
    targets: list[int] = []
    for candidate in (hard, OPEN_MAX, ENOUGH_FILES):
        allowed = candidate == hard or hard == unlimited or candidate < hard
        if allowed and (candidate == unlimited or candidate > soft) and candidate not in targets:
            targets.append(candidate)
    return targets


def _resource_module() -> Any:
    try:
        import resource
    except ImportError:  # Windows has no such limit
        return None
    return resource


def raise_open_files_limit(resource: Any = None) -> int | None:
    """Raise the soft descriptor limit to the hard one, as Go programs do at
    start: the default plan's 309 listeners take 315 descriptors before the
    first connection, of a soft limit of 1,024 on Linux and 256 on macOS.
    Only the CLI does this: a library must not change its host's limits.

    ``resource``: the module (by default imported here, where it exists).
    Returns the soft limit in force afterwards, None without the module."""
    resource = resource or _resource_module()
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in open_files_targets(soft, hard, resource.RLIM_INFINITY):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return int(target)
        except (ValueError, OSError):
            continue
    return int(soft)


def _open_shared(server: BadSMTP, directory: str) -> None:
    """Bind, and make what every worker must share before the first fork:
    the counts of counted triggers, the certificates and the test CA."""
    from .certstore import SharedCertificates
    from .processes import ProcessLock, SharedUses

    server._uses = SharedUses()
    server._open()
    server._tls_provider().share(SharedCertificates(directory, ProcessLock()))
    server.certificate_pem()  # made here, before the fork: every worker has it
    if any(listener.tls_fault for listener in server.listeners):
        server.ca_pem()


def run(settings: Settings) -> int:
    raise_open_files_limit()
    with serving_threads():  # forked workers inherit them
        if settings.workers > 1:
            return _run_workers(settings)
        return _serve(settings)


def _serve(settings: Settings) -> int:
    """One process serves (the default)."""
    # By process id: instances started together spread over the CPUs.
    cpu = os.getpid() if settings.cpu_affinity == "pin" else None
    stop = threading.Event()
    with stop_signals(stop) as signals, pinned(cpu):
        try:
            setup = configure(settings.log_settings())
        except LogSetupError as exc:
            raise CLIError(str(exc), 2 if isinstance(exc, LogConfigError) else 1) from None
        try:
            server = _start(settings)
            try:
                _announce(server, settings)
                signals.wait()
                _log.info("Shutdown signal received, initiating graceful shutdown")
            finally:
                server.stop()
            _log.info("All sessions closed; shutdown complete")
        finally:
            setup.close()
    return 0


def _run_workers(settings: Settings) -> int:
    """``--workers N``: N processes serve the listeners bound here (badsmtp(1), WORKERS)."""
    import shutil
    import tempfile

    from .processes import ProcessLock
    from .supervisor import Supervisor

    log_lock = ProcessLock()
    certificates = tempfile.mkdtemp(prefix="badsmtp-certificates-")  # private: mode 0700
    try:
        try:
            setup = configure(settings.log_settings(), threaded=False, guard=log_lock)
        except LogSetupError as exc:
            raise CLIError(str(exc), 2 if isinstance(exc, LogConfigError) else 1) from None
        try:
            server = _start(settings, lambda server: _open_shared(server, certificates))
            supervisor = Supervisor(
                server, settings, settings.workers, setup, log_lock, lambda: _announce(server, settings)
            )
            return supervisor.run()  # only the supervisor returns: a worker exits in it
        finally:
            setup.close()
    finally:
        log_lock.close()
        shutil.rmtree(certificates, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run ``badsmtp`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        settings = load_settings(args, os.environ)
        if settings.print_config:
            sys.stdout.write(format_config(settings))
            sys.stdout.flush()
        check(settings)
        if settings.print_config:
            return 0
        return run(settings)
    except ParserExit as exc:
        return exc.status
    except CLIError as exc:
        print(exc, file=sys.stderr, flush=True)
        return exc.status
