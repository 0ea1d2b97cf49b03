"""The shared test helpers do what the tests that use them assume."""

from __future__ import annotations

import socket

import pytest
from helpers import ROOT, Client, serving, split_command
from wire import GREETING, UNAVAILABLE

from badsmtp.session import Session


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("NOOP", ("NOOP", [])),
        ("mail FROM:<a@example.com>", ("MAIL", ["FROM:<a@example.com>"])),
        ("Rcpt  \t TO:<B@Example.com> \tNOTIFY=NEVER", ("RCPT", ["TO:<B@Example.com>", "NOTIFY=NEVER"])),
        # Only spaces and tabs separate: the twins that str.split() would cut.
        ("VRFY a\xa0b@example.com", ("VRFY", ["a\xa0b@example.com"])),
        ("HELO x\u2028y", ("HELO", ["x\u2028y"])),
    ],
)
def test_split_command(line: str, expected: tuple[str, list[str]]) -> None:
    assert split_command(line) == expected


def test_root_is_the_checkout() -> None:
    assert (ROOT / "README.md").is_file() and (ROOT / "man" / "badsmtp.1").is_file()


def test_serving_fails_the_test_on_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Session, data: bytes) -> list[object]:
        raise RuntimeError("injected bug")

    monkeypatch.setattr(Session, "receive_data", broken)
    failed = pytest.raises(AssertionError, match="injected bug")
    with failed, serving(ports=[0]) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        c.send(b"NOOP\r\n")
        assert c.read_to_eof() == UNAVAILABLE
    [error] = srv.errors
    assert str(error) == "injected bug"
    with pytest.raises(ConnectionRefusedError):  # stopped all the same
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_serving_a_server_without_errors_passes() -> None:
    with serving(ports=[0]) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        assert c.command(b"NOOP") == b"250 OK\r\n"
