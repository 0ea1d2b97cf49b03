"""Logging (spec 19): the record shapes, levels, and the four outputs, each
received by a listener of our own on 127.0.0.1 (or a UNIX socket for
syslog)."""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from badsmtp import log as badlog
from badsmtp.log import LogConfigError, LogSettings, LogSetupError, configure

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
server_log = logging.getLogger("badsmtp.server")


@pytest.fixture
def stdout_log() -> Iterator[tuple[io.StringIO, badlog.LogSetup]]:
    stream = io.StringIO()
    setup = configure(LogSettings(log_level="DEBUG"), stream=stream)
    yield stream, setup
    setup.close()


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# -- settings ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "level"),
    [("debug", "DEBUG"), ("INFO", "INFO"), ("warn", "WARN"), ("WARNING", "WARN"),
     ("Error", "ERROR"), ("loud", "INFO"), ("", "INFO")],
)  # fmt: skip
def test_levels(given: str, level: str) -> None:
    assert LogSettings(log_level=given).log_level == level


def test_unknown_values_fall_back_to_defaults() -> None:
    s = LogSettings(log_format="xml", log_output="kafka", syslog_facility="local9")
    assert (s.log_format, s.log_output, s.syslog_facility) == ("json", "stdout", "mail")
    s = LogSettings(log_format="TEXT", log_output="UDP", syslog_facility="Local7")
    assert (s.log_format, s.log_output, s.syslog_facility) == ("text", "udp", "local7")


# -- record shapes ---------------------------------------------------------------------------
def test_json_record_shape(stdout_log: tuple[io.StringIO, badlog.LogSetup]) -> None:
    stream, _ = stdout_log
    fields = {"session_id": "sess_" + "0" * 24, "client_ip": "127.0.0.1", "port": 2525,
              "tls_enabled": False, "hostname": "badsmtp.test"}  # fmt: skip
    logging.getLogger("badsmtp.session").info("SMTP connection established", extra={"fields": fields})
    server_log.warning("Port already in use; skipping listener")
    server_log.error("SMTP message storage failed", extra={"fields": {"error": "disk full", "message_size": 3}})
    server_log.debug("debug %s", "args", extra={"error": "boom"})
    records = [json.loads(line) for line in lines(stream)]
    first = records[0]
    assert list(first) == ["timestamp", "level", "message", "fields"]
    assert TIMESTAMP.fullmatch(first["timestamp"])
    assert (first["level"], first["message"], first["fields"]) == (
        "INFO", "SMTP connection established", fields,
    )  # fmt: skip
    assert records[1] == {"timestamp": records[1]["timestamp"], "level": "WARN",
                          "message": "Port already in use; skipping listener"}  # fmt: skip
    assert records[2]["error"] == "disk full" and records[2]["fields"] == {"message_size": 3}
    assert list(records[2]) == ["timestamp", "level", "message", "error", "fields"]
    assert records[3]["message"] == "debug args" and records[3]["error"] == "boom"
    assert "fields" not in records[3]
    assert lines(stream)[0].startswith('{"timestamp":"')  # compact, one object per line


def test_exceptions_become_the_error(stdout_log: tuple[io.StringIO, badlog.LogSetup]) -> None:
    stream, _ = stdout_log
    try:
        raise ValueError("bad thing")
    except ValueError:
        server_log.exception("internal error while serving %s", "127.0.0.1")
    (record,) = [json.loads(line) for line in lines(stream)]
    assert record["level"] == "ERROR"
    assert record["error"] == "ValueError: bad thing"
    assert "Traceback" in record["fields"]["traceback"]


def test_text_record_shape() -> None:
    stream = io.StringIO()
    setup = configure(LogSettings(log_format="text"), stream=stream)
    try:
        fields = {"tls_enabled": True, "port": 2525, "args": ["FROM:<a@b>", "SIZE=1"],
                  "hostname": "badsmtp.test", "mail_from": "with space", "error": "x y"}  # fmt: skip
        server_log.info("SMTP message storage failed", extra={"fields": fields})
        server_log.warning("plain")
        server_log.debug("not shown at INFO")
    finally:
        setup.close()
    first, second = lines(stream)
    stamp, rest = first.split(" ", 1)
    assert TIMESTAMP.fullmatch(stamp)
    assert rest == (
        '[INFO] SMTP message storage failed error="x y" args=["FROM:<a@b>","SIZE=1"] '
        'hostname=badsmtp.test mail_from="with space" port=2525 tls_enabled=true'
    )
    assert second.endswith(" [WARN] plain")


def test_level_filters_and_close_restores(stdout_log: tuple[io.StringIO, badlog.LogSetup]) -> None:
    stream, setup = stdout_log
    logger = logging.getLogger("badsmtp")
    assert logger.getEffectiveLevel() == logging.DEBUG and not logger.propagate
    setup.close()
    server_log.info("after close")
    assert stream.getvalue() == ""
    assert logger.propagate and logger.level == logging.NOTSET
    info = configure(LogSettings(log_level="WARN"), stream=stream)
    try:
        server_log.info("hidden")
        server_log.warning("shown")
    finally:
        info.close()
    assert [json.loads(line)["message"] for line in lines(stream)] == ["shown"]


# -- syslog ---------------------------------------------------------------------------------
@pytest.fixture
def syslog_socket() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="bsl")  # short: AF_UNIX paths are limited
    path = os.path.join(directory, "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def test_syslog_output(syslog_socket: tuple[socket.socket, str]) -> None:
    sock, path = syslog_socket
    setup = configure(
        LogSettings(log_output="syslog", syslog_facility="local3"), syslog_address=path
    )
    try:
        server_log.warning("Port already in use; skipping listener", extra={"fields": {"port": 1}})
        server_log.info("BadSMTP server started")
        first, second = sock.recv(65536), sock.recv(65536)
    finally:
        setup.close()
    # <PRI> = facility * 8 + severity: local3 = 19, warning = 4, info = 6.
    prefix = f"<{19 * 8 + 4}>badsmtp[{os.getpid()}]: ".encode()
    assert first.startswith(prefix)
    record = json.loads(first[len(prefix) :].rstrip(b"\x00"))
    assert record["message"] == "Port already in use; skipping listener"
    assert record["level"] == "WARN" and record["fields"] == {"port": 1}
    assert second.startswith(f"<{19 * 8 + 6}>badsmtp[".encode())


def test_syslog_default_facility_is_mail(syslog_socket: tuple[socket.socket, str]) -> None:
    sock, path = syslog_socket
    setup = configure(LogSettings(log_output="syslog", log_format="text"), syslog_address=path)
    try:
        server_log.error("boom")
        data = sock.recv(65536)
    finally:
        setup.close()
    assert data.startswith(b"<19>badsmtp[")  # mail = 2, error = 3
    assert b" [ERROR] boom" in data


def test_syslog_unreachable_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(LogSetupError) as info:
        configure(LogSettings(log_output="syslog"), syslog_address=str(tmp_path / "nothing"))
    assert str(info.value) == "failed to connect to syslog: No such file or directory"


# -- tcp and udp ------------------------------------------------------------------------------
def read_lines(conn: socket.socket, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.splitlines()


def test_tcp_output() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        port = listener.getsockname()[1]
        stream = io.StringIO()
        setup = configure(
            LogSettings(log_output="tcp", log_remote_addr=f"127.0.0.1:{port}"), stream=stream
        )
        try:
            server_log.info("one", extra={"fields": {"n": 1}})
            server_log.info("two")
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                received = read_lines(conn, 2)
        finally:
            setup.close()
    assert [json.loads(line)["message"] for line in received] == ["one", "two"]
    assert json.loads(received[0])["fields"] == {"n": 1}
    assert stream.getvalue() == ""  # nothing fell back to stdout


def test_udp_output() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        port = receiver.getsockname()[1]
        setup = configure(
            LogSettings(log_output="udp", log_remote_addr=f"127.0.0.1:{port}", log_format="text")
        )
        try:
            server_log.info("over udp", extra={"fields": {"k": "v"}})
            datagram = receiver.recv(65536)
        finally:
            setup.close()
    assert datagram.endswith(b" [INFO] over udp k=v\n")


def test_dead_tcp_receiver_falls_back_to_stdout() -> None:
    with socket.socket() as placeholder:  # a port with nobody listening
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        stream = io.StringIO()
        setup = configure(
            LogSettings(log_output="tcp", log_remote_addr=f"127.0.0.1:{port}"), stream=stream
        )
        try:
            server_log.info("first")
            server_log.info("second")
        finally:
            setup.close()  # drains the queue
    assert [json.loads(line)["message"] for line in lines(stream)] == ["first", "second"]


def test_a_receiver_that_never_reads_never_stalls_the_caller() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=1) as listener:
        port = listener.getsockname()[1]  # connections complete, nobody ever reads
        stream = io.StringIO()
        setup = configure(
            LogSettings(log_output="tcp", log_remote_addr=f"127.0.0.1:{port}"), stream=stream
        )
        try:
            started = time.monotonic()
            for n in range(20_000):
                server_log.info("x" * 300, extra={"fields": {"n": n}})
            elapsed = time.monotonic() - started
        finally:
            setup.close()
    # 6 MB of records against a receiver that reads nothing: callers only
    # enqueue (or drop when the queue is full); they never wait on the network.
    assert elapsed < 5.0


def test_a_full_queue_drops_instead_of_blocking() -> None:
    handler = badlog._QueueHandler(queue.Queue(2))
    for n in range(5):
        handler.handle(logging.LogRecord("badsmtp", logging.INFO, __file__, 1, "m%d", (n,), None))
    assert handler.dropped == 3
    assert [handler.queue.get_nowait().message for _ in range(2)] == ["m0", "m1"]


@pytest.mark.parametrize("output", ["tcp", "udp"])
def test_remote_output_needs_an_address(output: str) -> None:
    with pytest.raises(LogConfigError, match=f"^remote address required for {output} logging$"):
        configure(LogSettings(log_output=output))


@pytest.mark.parametrize("addr", ["localhost", "localhost:", ":25", "host:port", "h:70000"])
def test_remote_address_must_be_host_and_port(addr: str) -> None:
    with pytest.raises(LogConfigError, match="^invalid remote address for tcp logging"):
        configure(LogSettings(log_output="tcp", log_remote_addr=addr))


def test_ipv6_remote_address() -> None:
    setup = configure(LogSettings(log_output="udp", log_remote_addr="[::1]:9"))
    setup.close()
