"""The shared test helpers do what the tests that use them assume."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
from helpers import ROOT, Client, b64, b64b, free_ranges, log_records, serving, split_command
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


def test_b64() -> None:
    assert b64("\0user\0pw") == "AHVzZXIAcHc=" and b64b(b"\0user\0pw") == b"AHVzZXIAcHc="


def test_free_ranges_are_free_and_apart() -> None:
    first, second = free_ranges(2, size=10)
    assert second == first + 10
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", first))
        b.bind(("127.0.0.1", second + 9))


def test_log_records_wait_for_a_record_from_another_thread() -> None:
    log = logging.getLogger("badsmtp.test_helpers")
    with log_records("badsmtp.test_helpers") as logged:
        thread = threading.Thread(target=log.warning, args=("from a thread",))
        thread.start()
        logged.wait_for(lambda got: [r.getMessage() for r in got] == ["from a thread"])
        thread.join()
        with pytest.raises(AssertionError, match="timed out waiting for a second record"):
            logged.wait_for(lambda got: len(got) == 2, timeout=0.05, what="a second record")
    log.warning("after the block")
    assert len(logged.records) == 1  # the handler is gone
