"""Logging (badsmtp(1), the Logging options and LOGGING): the record shapes,
levels, and the four outputs, each received by a listener of our own on
127.0.0.1 (or a UNIX socket for syslog)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Client, serving

unix_syslog = pytest.mark.skipif(
    sys.platform == "win32",
    reason="no Unix datagram sockets; syslog on Windows is a configuration error (test_platforms)",
)

from badsmtp import Listener, logbuffer, tls
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
    stream, setup = stdout_log
    fields = {"session_id": "sess_" + "0" * 24, "client_ip": "127.0.0.1", "port": 2525,
              "tls_enabled": False, "hostname": "badsmtp.test"}  # fmt: skip
    logging.getLogger("badsmtp.session").info("SMTP connection established", extra={"fields": fields})
    server_log.warning("Port already in use; skipping listener")
    server_log.error("SMTP message storage failed", extra={"fields": {"error": "disk full", "message_size": 3}})
    server_log.debug("debug %s", "args", extra={"error": "boom"})
    assert setup.flush()  # records are written by the logging thread
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
    stream, setup = stdout_log
    try:
        raise ValueError("bad thing")
    except ValueError:
        server_log.exception("internal error while serving %s", "127.0.0.1")
    assert setup.flush()
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


@unix_syslog
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


@unix_syslog
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
    assert str(info.value) == f"failed to connect to syslog at {tmp_path / 'nothing'}: No such file or directory"


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


def test_a_full_buffer_drops_instead_of_blocking() -> None:
    buffer = logbuffer.Buffer(2)
    handler = logbuffer.BufferHandler(buffer)
    for n in range(5):
        handler.handle(logging.LogRecord("badsmtp", logging.INFO, __file__, 1, "m%d", (n,), None))
    assert buffer.dropped == 3
    assert [record.message for record in buffer.items] == ["m0", "m1"]


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


# -- session events from a live server (badsmtp(1), LOGGING) ------------------------------------
SESSION_ID = re.compile(r"sess_[0-9a-f]{24}")


@pytest.fixture
def records() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """Configure logging at a level, return the records written so far."""
    stream = io.StringIO()
    setups: list[badlog.LogSetup] = []

    def at(level: str) -> list[dict[str, Any]]:
        if not setups:
            setups.append(configure(LogSettings(log_level=level), stream=stream))
        assert setups[0].flush()  # records are written by the logging thread
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield at
    for setup in setups:
        setup.close()


def session_records(all_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in all_records if "session_id" in r.get("fields", {})]


def send_message(client: Client, sender: bytes = b"a@example.com") -> None:
    assert client.command(b"EHLO client.example").startswith(b"250-")
    assert client.command(b"MAIL FROM:<" + sender + b">").startswith(b"250 ")
    assert client.command(b"RCPT TO:<b@example.com>").startswith(b"250 ")
    assert client.command(b"DATA").startswith(b"354 ")
    assert client.command(b"Subject: hi\r\n\r\nbody\r\n.").startswith(b"250 ")


def test_info_session_events(records: Callable[[str], list[dict[str, Any]]]) -> None:
    records("INFO")
    with serving(ports=[0]) as server:
        with Client(server.port) as client:
            client.reply()
            send_message(client)
            client.command(b"QUIT")
        with Client(server.port) as other:
            other.reply()
    got = session_records(records("INFO"))
    ids = list(dict.fromkeys(r["fields"]["session_id"] for r in got))  # in order of appearance
    assert len(ids) == 2 and all(SESSION_ID.fullmatch(i) for i in ids)
    first = [r for r in got if r["fields"]["session_id"] == ids[0]]
    second = [r for r in got if r["fields"]["session_id"] == ids[1]]
    assert [r["message"] for r in first] == [
        "SMTP connection established",
        "SMTP message processing started",
        "SMTP message stored successfully",
        "SMTP connection closed",
    ]
    assert [r["message"] for r in second] == [
        "SMTP connection established",
        "SMTP connection closed",
    ]
    got = first + second
    for r in got:
        assert r["level"] == "INFO"
        assert r["fields"]["client_ip"] == "127.0.0.1"
        assert r["fields"]["hostname"] == "badsmtp.test"
    assert got[0]["fields"]["port"] == server.port and got[0]["fields"]["tls_enabled"] is False
    started, stored = got[1]["fields"], got[2]["fields"]
    assert (started["mail_from"], started["rcpt_to"], started["rcpt_count"]) == (
        "a@example.com", ["b@example.com"], 1,
    )  # fmt: skip
    assert stored["storage_type"] == "memory" and stored["message_size"] > 0
    assert isinstance(stored["duration_ms"], float) and isinstance(got[3]["fields"]["duration_ms"], float)


def test_debug_adds_per_command_events_and_redacts_auth(
    records: Callable[[str], list[dict[str, Any]]],
) -> None:
    import base64

    records("DEBUG")
    secret = base64.b64encode(b"\0someone\0hunter2-secret").decode()
    with serving(ports=[0]) as server, Client(server.port) as client:
        client.reply()
        client.command(b"EHLO client.example")
        assert client.command(f"AUTH PLAIN {secret}".encode()).startswith(b"235 ")
        assert client.command(b"RCPT TO:<b@example.com>").startswith(b"503 ")
        client.command(b"QUIT")
    got = session_records(records("DEBUG"))
    text = json.dumps(got)
    assert secret not in text and "hunter2" not in text
    commands = [r["fields"] for r in got if r["message"] == "SMTP command received"]
    assert [c["command"] for c in commands] == ["EHLO", "AUTH", "RCPT", "QUIT"]
    assert commands[0] == {**commands[0], "smtp_state": "HELO", "args": ["client.example"]}
    assert commands[1]["args"] == ["PLAIN", "[redacted]"] and commands[1]["smtp_state"] == "MAIL"
    assert "args" not in commands[3]
    sent = [r for r in got if r["message"].startswith("SMTP ") and "response" in r["message"]]
    assert sent[0]["fields"]["response"].startswith("220 ")  # the greeting
    assert sent[1]["fields"]["response"].startswith("250-badsmtp.test\r\n250-")  # CRLF-joined
    errors = [r for r in got if r["message"] == "SMTP error response sent"]
    assert [r["fields"]["response_code"] for r in errors] == [503]
    (transition,) = [r["fields"] for r in got if r["message"] == "SMTP state transition"]
    assert (transition["from_state"], transition["to_state"], transition["command"]) == (
        "HELO", "MAIL", "EHLO",
    )  # fmt: skip
    (auth,) = [r for r in got if r["message"] == "SMTP authentication successful"]
    assert auth["level"] == "INFO"
    assert auth["fields"] | {} == {**auth["fields"], "auth_mechanism": "PLAIN",
                                   "username": "someone", "success": True}  # fmt: skip


def test_info_has_no_per_command_records(records: Callable[[str], list[dict[str, Any]]]) -> None:
    records("INFO")
    with serving(ports=[0]) as server, Client(server.port) as client:
        client.reply()
        for _ in range(5):
            client.command(b"NOOP")
        client.command(b"QUIT")
    assert [r["message"] for r in session_records(records("INFO"))] == [
        "SMTP connection established",
        "SMTP connection closed",
    ]


def test_warn_events_carry_the_session(records: Callable[[str], list[dict[str, Any]]]) -> None:
    records("WARN")
    with serving(ports=[0]) as server, Client(server.port) as client:
        client.reply()
        client.command(b"EHLO size1000.example")
        assert client.command(b"MAIL FROM:<mail550@example.com>").startswith(b"550 ")
        assert client.command(b"NOOP " + b"x" * 5000).startswith(b"500 ")
        client.command(b"MAIL FROM:<a@example.com>")
        client.command(b"RCPT TO:<b@example.com>")
        client.command(b"DATA")
        assert client.command(b"x" * 2000 + b"\r\n.").startswith(b"552 ")
        assert client.command(b"AUTH PLAIN AGJhZGF1dGgAeA==").startswith(b"535 ")
        client.command(b"QUIT")
    got = session_records(records("WARN"))
    by_message = {r["message"]: r for r in got}
    assert set(by_message) == {
        "SMTP error simulation triggered",
        "Command length limit exceeded",
        "Message size limit exceeded",
        "SMTP authentication failed",
        "SMTP client protocol finding",  # this client broke the protocol too
    }
    assert len({r["fields"]["session_id"] for r in got}) == 1
    assert all(r["level"] == "WARN" for r in got)
    fired = by_message["SMTP error simulation triggered"]["fields"]
    assert (fired["error_code"], fired["smtp_stage"]) == (550, "MAIL")
    too_long = by_message["Command length limit exceeded"]["fields"]
    assert too_long["command_length"] > too_long["max_length"] == 4096
    size = by_message["Message size limit exceeded"]["fields"]
    assert size["max_size"] == 1000 and size["current_size"] > 1000
    failed = by_message["SMTP authentication failed"]["fields"]
    assert (failed["username"], failed["success"]) == ("badauth", False)


def test_a_scaled_delay_is_logged_as_waited(records: Callable[[str], list[dict[str, Any]]]) -> None:
    records("INFO")
    with serving(ports=[Listener(0, "greeting_delay", 2.0)], time_scale=0.05) as server:
        with Client(server.port) as client:
            assert client.reply().startswith(b"220 ")
    [fields] = [r["fields"] for r in session_records(records("INFO"))
                if r["message"] == "SMTP behaviour triggered"]  # fmt: skip
    assert (fields["delay_seconds"], fields["time_scale"]) == (pytest.approx(0.1), 0.05)


def test_behaviour_and_tls_events(records: Callable[[str], list[dict[str, Any]]]) -> None:
    records("INFO")
    listeners = [Listener(0, "greeting_delay", 0.01), Listener(0, "drop_delay"), Listener(0, "tls")]
    with serving(ports=listeners) as server:
        delayed, drop, tls_port = server.ports
        with Client(delayed) as client:
            assert client.reply().startswith(b"220 ")
        with Client(drop) as client:
            assert client.read_to_eof() == b""
        context = server.client_ssl_context()
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:  # fmt: skip
            assert tls.recv(1024).startswith(b"220 ")
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
            raw.sendall(b"EHLO not-tls\r\n")  # not a ClientHello: the handshake fails
            raw.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                raw.recv(1024)  # the server gives up on the connection
    got = session_records(records("INFO"))
    behaviours = [r["fields"] for r in got if r["message"] == "SMTP behaviour triggered"]
    assert [(b["behaviour"], b["port"], b.get("delay_seconds")) for b in behaviours] == [
        ("greeting_delay", delayed, 0.01),
        ("drop_delay", drop, None),  # delay 0: the field is omitted
    ]
    (ok,) = [r["fields"] for r in got if r["message"] == "TLS handshake successful"]
    assert ok["success"] is True and ok["tls_version"] in ("TLS 1.2", "TLS 1.3") and ok["cipher"]
    (failed,) = [r for r in got if r["message"] == "TLS handshake failed"]
    assert failed["level"] == "WARN" and failed["fields"]["success"] is False and failed["error"]


def _read_to_eof(sock: socket.socket) -> None:
    sock.settimeout(5)
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(4096):
            pass


def _partial_client_hello() -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with contextlib.suppress(ssl.SSLWantReadError):
        ctx.wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    return outgoing.read()[:20]


def test_a_clients_failed_handshake_is_a_warn(
    records: Callable[[str], list[dict[str, Any]]],
) -> None:
    # Port scans and cipher probes botch handshakes by the hundred: WARN, not
    # ERROR, so CI jobs that fail on ERROR lines do not fail.
    records("WARN")
    with serving(ports=[Listener(0, "tls")]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"\x16\x03\x01\x00\x04junk" + bytes(range(256)))  # junk
            _read_to_eof(raw)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(_partial_client_hello())  # then hangs up mid-handshake
        untrusting = ssl.create_default_context()  # aborts with an alert: unknown CA
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                pytest.raises(ssl.SSLCertVerificationError):  # fmt: skip
            untrusting.wrap_socket(raw, server_hostname="localhost")
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a cipher probe: RSA only
        probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
        probe.maximum_version = ssl.TLSVersion.TLSv1_2
        probe.set_ciphers("AES128-SHA")  # the server's key is ECDSA: no shared cipher
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):  # fmt: skip
            probe.wrap_socket(raw)
    got = records("WARN")
    failed = [r for r in got if r["message"] == "TLS handshake failed"]
    assert [r["level"] for r in failed] == ["WARN"] * 4, failed
    assert all(r["fields"]["success"] is False and r["error"] for r in failed)
    assert [r for r in got if r["level"] == "ERROR"] == []


def test_a_handshake_badsmtp_itself_fails_is_an_error(
    records: Callable[[str], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The twin: when the certificate callback fails, the fault is badsmtp's.
    def broken(*args: object) -> tuple[str, str]:
        raise RuntimeError("no entropy today")

    monkeypatch.setattr(tls, "generate", broken)
    records("ERROR")
    with serving(ports=[Listener(0, "tls")]) as server:
        client = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                pytest.raises(ssl.SSLError, match="INTERNAL_ERROR"):  # fmt: skip
            client.wrap_socket(raw, server_hostname="localhost")
    got = records("ERROR")
    (failed,) = [r for r in got if r["message"] == "TLS handshake failed"]
    assert failed["level"] == "ERROR" and failed["fields"]["success"] is False
    assert any(r["level"] == "ERROR" and "no entropy today" in json.dumps(r) for r in got
               if r["message"] != "TLS handshake failed")  # fmt: skip


def test_maildir_storage_events(
    tmp_path: Path, records: Callable[[str], list[dict[str, Any]]]
) -> None:
    records("INFO")
    with serving(ports=[0], capture=False, mailbox_dir=str(tmp_path / "box")) as server, \
            Client(server.port) as client:  # fmt: skip
        client.reply()
        send_message(client)
        client.command(b"QUIT")
    got = records("INFO")
    (stored,) = [r["fields"] for r in got if r["message"] == "SMTP message stored successfully"]
    assert stored["storage_type"] == "local"
    (saved,) = [r["fields"] for r in got if r["message"] == "Message saved"]
    assert Path(saved["path"]).parent == tmp_path / "box" / "new" and Path(saved["path"]).is_file()


def test_storage_off_is_storage_type_none(records: Callable[[str], list[dict[str, Any]]]) -> None:
    records("INFO")
    with serving(ports=[0], capture=False) as server, Client(server.port) as client:
        client.reply()
        send_message(client)
        client.command(b"QUIT")
    got = session_records(records("INFO"))
    started = [r for r in got if r["message"] == "SMTP message processing started"]
    (stored,) = [r["fields"] for r in got if r["message"] == "SMTP message stored successfully"]
    assert len(started) == 1 and stored["storage_type"] == "none"


def test_records_are_written_off_the_calling_thread() -> None:
    # The caller only enqueues: formatting and writing happen on the
    # listener's thread, and stdout is flushed once a burst is written.
    written: list[str] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            written.append(threading.current_thread().name)
            return super().write(text)

    stream = Stream()
    setup = configure(LogSettings(), stream=stream)
    try:
        for n in range(100):
            server_log.info("burst %d", n)
        assert setup.flush()
    finally:
        setup.close()
    assert len(lines(stream)) == 100
    assert threading.current_thread().name not in written


def test_close_restores_the_record_switches() -> None:
    before = (logging._srcfile, logging.logThreads)  # type: ignore[attr-defined]
    setup = configure(LogSettings())
    assert logging._srcfile is None and not logging.logThreads  # type: ignore[attr-defined]
    setup.close()
    assert (logging._srcfile, logging.logThreads) == before  # type: ignore[attr-defined]
