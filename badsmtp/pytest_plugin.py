"""pytest fixtures for testing SMTP clients against badsmtp.

Installed with badsmtp (entry point ``pytest11``), so a test only names a
fixture:

- ``badsmtp_server``: a fresh server on an ephemeral 127.0.0.1 port for
  each test;
- ``badsmtp_session_server``: one server shared by every test of the run
  (cheaper; its ``messages`` and ``sessions`` accumulate across tests);
- ``badsmtp_factory``: ``badsmtp_factory(ports=[...], mailbox_dir=...,
  **settings)`` starts servers of your own, all stopped after the test.

A test fails (an error at teardown) when a server it used recorded an
internal error while it ran: the server answered 421 and kept going, the
test must not.  Every fixture listens on port 0, so parallel runs
(pytest-xdist) never collide.

Opt-in: the ini option ``badsmtp_findings`` (``ignore``, the default;
``error``; ``all``) or the marker ``@pytest.mark.badsmtp_findings("error")``
(which wins) also fails a test whose client broke the protocol in a session
of these servers: ``error`` for error-class findings, ``all`` for warnings
too (README, What your client did wrong).  The failure lists each finding
under its session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from badsmtp import BadSMTP, Listener
    from badsmtp.transcript import Transcript

__all__ = ["badsmtp_server", "badsmtp_session_server", "badsmtp_factory", "ServerErrors"]

FINDINGS_MODES = {"ignore": (), "error": ("error",), "all": ("error", "warning")}
_FINDINGS_HELP = (
    "fail a test whose SMTP client broke the protocol with a badsmtp fixture's server: "
    "ignore (default), error (error-class findings), all (warnings too)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("badsmtp_findings", _FINDINGS_HELP, default="ignore")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "badsmtp_findings(mode): for this test, the badsmtp_findings ini option's mode "
        "(ignore, error, all)",
    )


class ServerErrors(ExceptionGroup[Exception]):
    """The internal errors a badsmtp server recorded during a test (each
    with its server-side traceback)."""


def _check(errors: list[BaseException], what: str) -> None:
    if errors:
        # The server records only Exception instances (it catches Exception).
        found = [e if isinstance(e, Exception) else RuntimeError(repr(e)) for e in errors]
        raise ServerErrors(f"{what} recorded {len(found)} internal error(s) during the test", found)


def _findings_mode(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The severities that fail this test: its marker's, else the ini option's."""
    marker = request.node.get_closest_marker("badsmtp_findings")
    chosen = request.config.getini("badsmtp_findings")
    if marker is not None and marker.args:
        chosen = marker.args[0]
    mode = str(chosen).strip().lower() or "ignore"
    if mode not in FINDINGS_MODES:
        raise pytest.UsageError(f"badsmtp_findings: {mode!r} is not one of ignore, error, all")
    return FINDINGS_MODES[mode]


def _sessions(server: BadSMTP) -> list[Transcript]:
    try:
        return server.sessions
    except RuntimeError:  # record=False: no transcripts, no findings
        return []


def _check_findings(sessions: Iterable[Transcript], severities: tuple[str, ...]) -> None:
    """Fail the test when a session had findings of these severities,
    listing each under its session."""
    lines: list[str] = []
    for t in sessions:
        found = [f for f in t.findings if f.severity in severities]
        if found:
            lines.append(f"session {t.client_ip}:{t.client_port} -> port {t.port}:")
            lines.extend(f"  {f}" for f in found)
    if lines:
        count = sum(1 for line in lines if line.startswith("  "))
        head = f"the SMTP client broke the protocol: {count} badsmtp finding(s)"
        pytest.fail("\n".join([head, *lines]), pytrace=False)


def _start(ports: Iterable[int | Listener] | None = None, **settings: Any) -> BadSMTP:
    from badsmtp import BadSMTP  # imported on use: pytest start-up stays cheap

    return BadSMTP(ports=[0] if ports is None else ports, **settings).serve_in_thread()


@pytest.fixture
def badsmtp_server(request: pytest.FixtureRequest) -> Iterator[BadSMTP]:
    """A running badsmtp server on 127.0.0.1, an ephemeral port
    (``badsmtp_server.port``), stopped after the test."""
    severities = _findings_mode(request)
    server = _start()
    try:
        yield server
    finally:
        server.stop()
    _check(server.errors, "the badsmtp server")
    _check_findings(_sessions(server), severities)


@pytest.fixture(scope="session")
def _badsmtp_shared_server() -> Iterator[BadSMTP]:
    server = _start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def badsmtp_session_server(
    _badsmtp_shared_server: BadSMTP, request: pytest.FixtureRequest
) -> Iterator[BadSMTP]:
    """One badsmtp server for the whole run.  Only the internal errors (and
    findings) recorded while *this* test ran fail it."""
    server, severities = _badsmtp_shared_server, _findings_mode(request)
    before, sessions_before = len(server.errors), len(_sessions(server))
    yield server
    _check(server.errors[before:], "the shared badsmtp server")
    if severities:
        _check_findings(_ended(_sessions(server)[sessions_before:]), severities)


def _ended(sessions: list[Transcript]) -> list[Transcript]:
    """The test's sessions, once the server is done with them (a client
    that has just hung up may still be read), or as they are after a moment."""
    for t in sessions:
        try:
            t.wait_closed(1.0)
        except TimeoutError:
            pass  # left open by the test: what it has so far
    return sessions


@pytest.fixture
def badsmtp_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., BadSMTP]]:
    """Start servers with any settings: ``badsmtp_factory(ports=[0,
    Listener(0, "greeting_delay", 0.2)], mailbox_dir=tmp_path)``.  ``ports``
    defaults to ``[0]``; every server is stopped after the test."""
    severities = _findings_mode(request)
    servers: list[BadSMTP] = []

    def start(ports: Iterable[int | Listener] | None = None, **settings: Any) -> BadSMTP:
        server = _start(ports, **settings)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
    _check([e for s in servers for e in s.errors], "a badsmtp_factory server")
    _check_findings([t for s in servers for t in _sessions(s)], severities)
