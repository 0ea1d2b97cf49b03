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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from badsmtp import BadSMTP, Listener

__all__ = ["badsmtp_server", "badsmtp_session_server", "badsmtp_factory", "ServerErrors"]


class ServerErrors(ExceptionGroup[Exception]):
    """The internal errors a badsmtp server recorded during a test (each
    with its server-side traceback)."""


def _check(errors: list[BaseException], what: str) -> None:
    if errors:
        # The server records only Exception instances (it catches Exception).
        found = [e if isinstance(e, Exception) else RuntimeError(repr(e)) for e in errors]
        raise ServerErrors(f"{what} recorded {len(found)} internal error(s) during the test", found)


def _start(ports: Iterable[int | Listener] | None = None, **settings: Any) -> BadSMTP:
    from badsmtp import BadSMTP  # imported on use: pytest start-up stays cheap

    return BadSMTP(ports=[0] if ports is None else ports, **settings).serve_in_thread()


@pytest.fixture
def badsmtp_server() -> Iterator[BadSMTP]:
    """A running badsmtp server on 127.0.0.1, an ephemeral port
    (``badsmtp_server.port``), stopped after the test."""
    server = _start()
    try:
        yield server
    finally:
        server.stop()
    _check(server.errors, "the badsmtp server")


@pytest.fixture(scope="session")
def _badsmtp_shared_server() -> Iterator[BadSMTP]:
    server = _start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def badsmtp_session_server(_badsmtp_shared_server: BadSMTP) -> Iterator[BadSMTP]:
    """One badsmtp server for the whole run.  Only the internal errors
    recorded while *this* test ran fail it."""
    before = len(_badsmtp_shared_server.errors)
    yield _badsmtp_shared_server
    _check(_badsmtp_shared_server.errors[before:], "the shared badsmtp server")


@pytest.fixture
def badsmtp_factory() -> Iterator[Callable[..., BadSMTP]]:
    """Start servers with any settings: ``badsmtp_factory(ports=[0,
    Listener(0, "greeting_delay", 0.2)], mailbox_dir=tmp_path)``.  ``ports``
    defaults to ``[0]``; every server is stopped after the test."""
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
