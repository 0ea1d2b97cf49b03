"""Logging set-up for the ``badsmtp`` command (badsmtp(1), the Logging options
and LOGGING).

Library code only ever calls ``logging.getLogger("badsmtp....")`` and passes
its structured data as ``extra={"fields": {...}}``.  :func:`configure` turns
those records into the documented shapes (:mod:`badsmtp.logformat`: JSON or
text) and sends them where the configuration says: ``stdout``, ``syslog``
(tag ``badsmtp``), ``tcp`` or ``udp``, always through the buffer and writer
thread of :mod:`badsmtp.logbuffer`, so a slow or dead receiver never stalls
a session.  When a send fails, the record goes to stdout instead (badsmtp(1),
--log-output).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import IO, TYPE_CHECKING, Any

from . import sessionlog
from .logbuffer import (
    QUEUE_SIZE,
    Buffer,
    BufferHandler,
    BufferListener,
    BurstStreamHandler,
    DirectWriter,
    Flushed,
)
from .logformat import TextFormatter, level_name

if TYPE_CHECKING:
    from .logjson import JsonFormatter

__all__ = [
    "LEVELS",
    "LOG_KEYS",
    "JsonFormatter",
    "LogConfigError",
    "LogSettings",
    "LogSetup",
    "LogSetupError",
    "RemoteHandler",
    "TextFormatter",
    "configure",
    "level_name",
    "local_syslog_address",
]

# The level names, defined with the session log events that the IO shell
# writes (so the shell need not import this module's formatters).
LEVELS = sessionlog.LEVELS
FORMATS = ("json", "text")
OUTPUTS = ("stdout", "syslog", "tcp", "udp")
FACILITIES = ("mail", "daemon", *(f"local{n}" for n in range(8)))
# The local syslog socket by sys.platform (badsmtp(1), FILES); any other POSIX
# system: /dev/log.  None: there is none (Windows), so "syslog" cannot work.
SYSLOG_ADDRESSES: dict[str, str | None] = {
    "linux": "/dev/log",
    "darwin": "/var/run/syslog",
    "freebsd": "/var/run/log",
    "win32": None,
}
PLATFORM = sys.platform  # whose syslog socket configure() looks for; tests change it
SEND_TIMEOUT = 1.0  # seconds: connect and send to a remote receiver
RETRY_AFTER = 5.0  # seconds: after a failed send, records go to stdout this long


class LogSetupError(Exception):
    """Logging cannot be set up as configured; the message is one line."""


class LogConfigError(LogSetupError):
    """The logging settings themselves are wrong (not the world outside)."""


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The five logging keys, normalised as badsmtp(1) (the Logging options)
    says: unknown values fall back to the defaults instead of failing."""

    log_level: str = "INFO"
    log_format: str = "json"
    log_output: str = "stdout"
    log_remote_addr: str = ""
    syslog_facility: str = "mail"

    def __post_init__(self) -> None:
        level = self.log_level.strip().upper()
        level = "WARN" if level == "WARNING" else level  # a synonym (badsmtp(1), --log-level)
        fmt, output = self.log_format.strip().lower(), self.log_output.strip().lower()
        facility = self.syslog_facility.strip().lower()
        object.__setattr__(self, "log_level", level if level in LEVELS else "INFO")
        object.__setattr__(self, "log_format", fmt if fmt in FORMATS else "json")
        object.__setattr__(self, "log_output", output if output in OUTPUTS else "stdout")
        object.__setattr__(self, "log_remote_addr", self.log_remote_addr.strip())
        object.__setattr__(self, "syslog_facility", facility if facility in FACILITIES else "mail")

    @property
    def levelno(self) -> int:
        return LEVELS[self.log_level]


# The configuration keys that belong to logging: LogSettings' fields.
LOG_KEYS = tuple(field.name for field in fields(LogSettings))


def _split_address(addr: str, output: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise LogConfigError(
            f"invalid remote address for {output} logging: {addr} (want host:port)"
        )
    return host, int(port)


class RemoteHandler(logging.Handler):
    """Sends each formatted record, newline-terminated, to ``host:port`` over
    TCP (one persistent connection, re-opened when it breaks) or UDP (one
    datagram per record).  A record that cannot be sent goes to ``fallback``;
    after a failure, records go straight to ``fallback`` for
    :data:`RETRY_AFTER` seconds so a dead receiver costs no timeouts.

    Runs on the queue listener's thread, never on a session's."""

    def __init__(self, output: str, addr: str, fallback: logging.Handler) -> None:
        super().__init__()
        self.output = output
        self.addr = addr
        self.fallback = fallback
        host, port = _split_address(addr, output)
        kind = socket.SOCK_STREAM if output == "tcp" else socket.SOCK_DGRAM
        try:
            info = socket.getaddrinfo(host, port, type=kind)
        except OSError as exc:
            raise LogSetupError(f"cannot resolve {output} log address {addr}: {exc}") from None
        family, kind, proto, _, sockaddr = info[0]
        self._family: socket.AddressFamily = family
        self._type: socket.SocketKind = kind
        self._proto: int = proto
        self._sockaddr: Any = sockaddr
        self._sock: socket.socket | None = None
        self._retry_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)
            return
        if time.monotonic() >= self._retry_at:
            try:
                self._send(data)
                return
            except OSError:
                self._drop_socket()
                self._retry_at = time.monotonic() + RETRY_AFTER
        self.fallback.handle(record)

    def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            sock = socket.socket(self._family, self._type, self._proto)
            sock.settimeout(SEND_TIMEOUT)
            try:
                if self._type == socket.SOCK_STREAM:
                    sock.connect(self._sockaddr)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        if self._type == socket.SOCK_STREAM:
            sock.sendall(data)
        else:
            sock.sendto(data, self._sockaddr)

    def _drop_socket(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.acquire()
        try:
            self._drop_socket()
        finally:
            self.release()
        super().close()


# -- putting it together ------------------------------------------------------------
# What a record costs to make: no caller lookup (a stack walk per record), no
# thread/process names; badsmtp's records (badsmtp(1), LOGGING) use none of them.  These are
# the switches of the logging HOWTO's "Optimization" section.
_SWITCHES = {"_srcfile": None, "logThreads": False, "logProcesses": False,
             "logMultiprocessing": False}  # fmt: skip


class LogSetup:
    """The handlers :func:`configure` installed; :meth:`close` flushes the
    queue and removes them (so tests can configure again)."""

    def __init__(
        self,
        logger: logging.Logger,
        handler: logging.Handler,
        listener: BufferListener | None,
        owned: list[logging.Handler],
    ) -> None:
        self.logger = logger
        self.handler = handler
        self._listener = listener
        self._owned = owned
        self._saved = (logger.level, logger.propagate)
        self._switches = {name: getattr(logging, name) for name in _SWITCHES}
        self._closed = False
        self._direct = False  # whether session records take the short way

    def install(self, level: int, direct: DirectWriter | None) -> None:
        """Put the handler on the logger at ``level``, alone (the CLI owns
        the process: no duplicates via the root), with the logging switches
        set; ``direct``: the session records' short way.  :meth:`close`
        undoes all of it."""
        for name, value in _SWITCHES.items():
            setattr(logging, name, value)
        self.logger.addHandler(self.handler)
        self.logger.setLevel(level)
        self.logger.propagate = False
        if direct is not None:
            sessionlog.set_direct_writer(direct)
            self._direct = True

    @property
    def dropped(self) -> int:
        """Records dropped because the buffer to a slow output was full."""
        return self.handler.buffer.dropped if isinstance(self.handler, BufferHandler) else 0

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record logged so far has been written."""
        if self._listener is None:  # written as logged
            return True
        marker = Flushed()
        self._listener.buffer.items.append(marker)
        self._listener.wake.set()
        return marker.done.wait(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._direct:
            sessionlog.set_direct_writer(None)
        self.logger.removeHandler(self.handler)
        if self._listener is not None:
            self._listener.stop()
        for handler in self._owned:
            handler.close()
        if self.handler not in self._owned:
            self.handler.close()
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]
        for name, value in self._switches.items():
            setattr(logging, name, value)


class _SyslogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler whose failed sends go to ``fallback`` (stdout) instead
    of a traceback on stderr, like the tcp/udp outputs (badsmtp(1), --log-output)."""

    def __init__(self, address: str, facility: int, fallback: logging.Handler) -> None:
        super().__init__(address=address, facility=facility)
        self.fallback = fallback

    def handleError(self, record: logging.LogRecord) -> None:
        self.fallback.handle(record)


def local_syslog_address(platform: str) -> str | None:
    """The local syslog socket of ``platform`` (a ``sys.platform`` value,
    FreeBSD's carrying its version), None where there is none."""
    family = "freebsd" if platform.startswith("freebsd") else platform
    return SYSLOG_ADDRESSES.get(family, "/dev/log")


def _probe_syslog(address: str) -> None:
    """Fail at start-up when syslog cannot be reached, as badsmtp(1),
    --log-output, says: SysLogHandler itself ignores that (as openlog(3) does)."""
    failure: OSError | None = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        sock = socket.socket(socket.AF_UNIX, kind)
        try:
            sock.connect(address)
            return
        except OSError as exc:
            failure = failure or exc
        finally:
            sock.close()
    assert failure is not None
    raise LogSetupError(f"failed to connect to syslog at {address}: {failure.strerror or failure}")


def _syslog_handler(
    settings: LogSettings, address: str | None, fallback: logging.Handler
) -> logging.Handler:
    if address is None:  # a setting that cannot work here: a configuration error
        raise LogConfigError(
            "syslog output is not available on Windows (no local syslog): "
            "use --log-output udp --log-remote-addr HOST:514"
        )
    _probe_syslog(address)
    facility = logging.handlers.SysLogHandler.facility_names[settings.syslog_facility]
    handler = _SyslogHandler(address, facility, fallback)
    handler.ident = f"badsmtp[{os.getpid()}]: "  # the tag is "badsmtp" (badsmtp(1), --log-output)
    return handler


def configure(
    settings: LogSettings,
    *,
    stream: IO[str] | None = None,
    syslog_address: str | None = None,
    logger_name: str = "badsmtp",
    threaded: bool = True,
    guard: AbstractContextManager[Any] | None = None,
) -> LogSetup:
    """Install handlers on the ``badsmtp`` logger as ``settings`` say.

    ``stream`` is where stdout output (and the fallback of the other
    outputs) goes, ``sys.stdout`` by default; ``syslog_address`` is the
    local syslog socket, :func:`local_syslog_address` of :data:`PLATFORM` by default.  Raises
    :class:`LogSetupError` with a one-line text (badsmtp(1), EXIT STATUS).

    ``threaded=False``: records are written by the thread that logs them,
    and no thread is started, so the process may fork (the ``--workers``
    supervisor, :mod:`badsmtp.supervisor`).  ``guard`` is held around each
    write to standard output (a lock shared by the processes writing there)."""
    if settings.log_output in ("tcp", "udp") and not settings.log_remote_addr:
        raise LogConfigError(f"remote address required for {settings.log_output} logging")
    formatter: JsonFormatter | TextFormatter
    if settings.log_format == "text":
        formatter = TextFormatter()
    else:
        from .logjson import JsonFormatter  # python-json-logger: only for JSON records

        formatter = JsonFormatter()
    pending = Buffer(QUEUE_SIZE)
    out = BurstStreamHandler(stream if stream is not None else sys.stdout, pending, guard)
    out.setFormatter(formatter)
    target = _output(settings, out, syslog_address or local_syslog_address(PLATFORM))
    target.setFormatter(formatter)
    owned: list[logging.Handler] = [target] if target is out else [target, out]
    logger = logging.getLogger(logger_name)
    if not threaded:
        setup = LogSetup(logger, target, None, owned)
        setup.install(settings.levelno, None)
        return setup

    handler = BufferHandler(pending)
    handler.setFormatter(formatter)
    listener = BufferListener(pending, target)
    listener.start()
    setup = LogSetup(logger, handler, listener, owned)
    direct = DirectWriter(formatter, pending) if logger_name == "badsmtp" else None
    setup.install(settings.levelno, direct)
    return setup


def _output(
    settings: LogSettings, out: logging.Handler, syslog_address: str | None
) -> logging.Handler:
    """The handler that writes to ``settings.log_output``; ``out``
    (standard output) is also the fallback of the others."""
    if settings.log_output == "stdout":
        return out
    if settings.log_output == "syslog":
        return _syslog_handler(settings, syslog_address, out)
    return RemoteHandler(settings.log_output, settings.log_remote_addr, out)


def __getattr__(name: str) -> Any:
    if name == "JsonFormatter":  # loaded with python-json-logger on first use (PEP 562)
        from .logjson import JsonFormatter

        return JsonFormatter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
