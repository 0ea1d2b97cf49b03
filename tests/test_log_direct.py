"""Session records' short way out (badsmtp.logbuffer.DirectWriter): while the
CLI's logging owns the ``badsmtp`` logger, a connection queues its records'
parts and the logging thread makes the lines.  The lines must be exactly
what the general way (a LogRecord through the formatter) writes, in the
order the records were logged, to every output."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from badsmtp import log as badlog
from badsmtp import logbuffer
from badsmtp.log import JsonFormatter, LogSettings, TextFormatter, configure
from badsmtp.sessionlog import SessionLog

BASE = {"session_id": "sess_0123456789abcdef01234567", "client_ip": "127.0.0.1",
        "hostname": "badsmtp.test"}  # fmt: skip
CREATED = 1_764_000_000.123_456  # a fixed instant, so both ways share the timestamp

CASES: dict[str, tuple[int, str, str | None, dict[str, Any]]] = {
    "message fields": (logging.INFO, "SMTP message stored successfully", None,
                       {"mail_from": "a@example.com", "rcpt_to": ["b@example.com", "c@example.com"],
                        "message_size": 1100, "storage_type": "none", "duration_ms": 0.012}),
    "no fields": (logging.INFO, "SMTP connection closed", None, {}),
    "error given": (logging.ERROR, "SMTP message storage failed", "disk full",
                    {"storage_type": "local"}),
    "error as a field": (logging.WARNING, "extension failed", None,
                         {"extension": "x", "error": "ValueError: no"}),
    "a field named like a base field": (logging.INFO, "odd", None, {"hostname": "other"}),
    "quotes, spaces and non-ASCII": (logging.WARNING, 'say "hé"', None,
                                     {"trigger": 'a "b"\\c d', "to": ["ü@example.com"]}),
    "other types": (logging.DEBUG, "types", None,
                    {"ok": True, "none": None, "ratio": 0.5, "big": 10**20, "tuple": (1, 2)}),
}  # fmt: skip


def general_line(formatter: logging.Formatter, levelno: int, message: str, error: str | None,
                 fields: dict[str, Any]) -> str:  # fmt: skip
    """The line the general way writes for the same record."""
    record = logging.makeLogRecord({"name": "badsmtp.session", "msg": message, "levelno": levelno,
                                    "levelname": logging.getLevelName(levelno),
                                    "created": CREATED, "fields": {**BASE, **fields}})  # fmt: skip
    if error is not None:
        record.error = error
    return formatter.format(record)


@pytest.mark.parametrize("formatter_class", [JsonFormatter, TextFormatter])
@pytest.mark.parametrize("case", CASES)
def test_session_lines_are_the_general_ways_lines(
    formatter_class: type[JsonFormatter | TextFormatter], case: str
) -> None:
    levelno, message, error, fields = CASES[case]
    formatter = formatter_class()
    make_line = formatter.session_lines(dict(BASE))
    for _ in range(2):  # the second time from the cached parts
        got = make_line(CREATED, levelno, message, error, dict(fields))
        assert got == general_line(formatter, levelno, message, error, fields)
    if formatter_class is JsonFormatter:
        shape = json.loads(got)
        assert list(shape)[:3] == ["timestamp", "level", "message"]
        assert shape["timestamp"] == "2025-11-24T16:00:00.123Z"


def test_session_lines_without_base_fields() -> None:
    formatter = JsonFormatter()
    got = formatter.session_lines({})(CREATED, logging.INFO, "m", None, {"k": 1})
    assert json.loads(got) == {"timestamp": "2025-11-24T16:00:00.123Z", "level": "INFO",
                               "message": "m", "fields": {"k": 1}}  # fmt: skip


@contextlib.contextmanager
def configured(**settings: str) -> Iterator[tuple[io.StringIO, badlog.LogSetup]]:
    stream = io.StringIO()
    setup = configure(LogSettings(**settings), stream=stream)
    try:
        yield stream, setup
    finally:
        setup.close()


def test_session_and_server_records_keep_their_order() -> None:
    with configured(log_level="DEBUG") as (stream, setup):
        log = SessionLog("127.0.0.1", "badsmtp.test")
        assert log._direct is not None  # the short way is taken
        for n in range(300):
            log.event(logging.INFO, f"session {n}", {"n": n})
            if n % 100 == 0:
                logging.getLogger("badsmtp.server").info(f"server {n}")
        log.event(logging.DEBUG, "debug", None)
        assert setup.flush()
        got = [json.loads(line) for line in stream.getvalue().splitlines()]
    expected = []
    for n in range(300):
        expected.append(f"session {n}")
        if n % 100 == 0:
            expected.append(f"server {n}")
    assert [r["message"] for r in got] == [*expected, "debug"]
    for record in got:
        if not record["message"].startswith("server"):
            assert record["fields"]["session_id"] == log.session_id


def test_levels_below_the_configured_one_are_not_queued() -> None:
    with configured(log_level="WARN") as (stream, setup):
        log = SessionLog("127.0.0.1", "badsmtp.test")
        log.event(logging.INFO, "quiet", {})
        log.event(logging.WARNING, "loud", {})
        assert setup.flush()
        assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_a_handler_of_its_own_on_the_session_logger_gets_records() -> None:
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    session_logger = logging.getLogger("badsmtp.session")
    with configured() as (stream, setup):
        handler = Catch()
        session_logger.addHandler(handler)
        try:
            log = SessionLog("127.0.0.1", "badsmtp.test")
            assert log._direct is None  # the general way, so the handler sees every record
            log.event(logging.INFO, "seen", {"k": "v"})
        finally:
            session_logger.removeHandler(handler)
        assert setup.flush()
        written = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r.getMessage() for r in caught] == ["seen"]
    assert caught[0].fields == {**log.base, "k": "v"}  # type: ignore[attr-defined]
    assert [r["message"] for r in written] == ["seen"]


def test_no_short_way_once_logging_is_closed() -> None:
    with configured():
        assert SessionLog("127.0.0.1", "h")._direct is not None
    assert SessionLog("127.0.0.1", "h")._direct is None


def test_session_records_reach_a_remote_output() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        with configured(log_output="udp", log_remote_addr=f"127.0.0.1:{port}") as (stream, _):
            log = SessionLog("127.0.0.1", "badsmtp.test")
            log.event(logging.WARNING, "over udp", {"k": "v"})
            datagram = receiver.recv(65536)
        assert stream.getvalue() == ""
    record = json.loads(datagram)
    assert (record["level"], record["message"]) == ("WARN", "over udp")
    assert record["fields"] == {**log.base, "k": "v"}


def test_a_full_buffer_drops_session_records_too() -> None:
    buffer = logbuffer.Buffer(3)
    write = logbuffer.DirectWriter(JsonFormatter(), buffer)(dict(BASE))
    for n in range(5):
        write(logging.INFO, "m", {"n": n})
    assert buffer.dropped == 2
    assert [item[5] for item in buffer.items] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_a_record_that_cannot_be_encoded_is_reported_and_writing_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with configured() as (stream, setup):
        log = SessionLog("127.0.0.1", "badsmtp.test")
        log.event(logging.INFO, "bad", {"keys": {(1, 2): "a tuple is no JSON key"}})
        log.event(logging.INFO, "good", {})
        assert setup.flush()
        written = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in written] == ["good"]
    assert "--- Logging error ---" in capsys.readouterr().err


def test_a_buffer_that_never_runs_empty_is_still_written_in_bursts() -> None:
    writes: list[int] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text.count("\n"))
            return super().write(text)

    buffer = logbuffer.Buffer(logbuffer.QUEUE_SIZE)
    stream_handler = logbuffer.BurstStreamHandler(Stream(), buffer)
    stream_handler.setFormatter(JsonFormatter())
    listener = logbuffer.BufferListener(buffer, stream_handler)  # not started: drained by hand
    write = logbuffer.DirectWriter(JsonFormatter(), buffer)(dict(BASE))
    for n in range(2 * logbuffer.BATCH_LINES + 10):
        write(logging.INFO, "m", {"n": n})
    with pytest.raises(queue.Empty):
        listener.dequeue(False)
    assert writes == [logbuffer.BATCH_LINES, logbuffer.BATCH_LINES]  # the last 10 wait for the flush
    stream_handler.flush()
    assert writes[-1] == 10


def test_text_format_takes_the_short_way_too() -> None:
    with configured(log_format="text") as (stream, setup):
        log = SessionLog("127.0.0.1", "badsmtp.test")
        assert log._direct is not None
        log.event(logging.INFO, "SMTP connection closed", {"duration_ms": 1.5})
        assert setup.flush()
        (line,) = stream.getvalue().splitlines()
    assert line.endswith(
        f" [INFO] SMTP connection closed client_ip=127.0.0.1 duration_ms=1.5 "
        f"hostname=badsmtp.test session_id={log.session_id}"
    )
