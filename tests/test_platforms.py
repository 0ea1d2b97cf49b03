"""The platform-specific paths, each run here whatever the host (issue: runs
on Linux, macOS and Windows): socket timeouts as each kernel reads them,
the syslog target, the descriptor limit, maildir file names."""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import Client

from badsmtp import BadSMTP, acceptor, log, sockio, storage
from badsmtp.acceptor import bind_options
from badsmtp.cli import ENOUGH_FILES, OPEN_MAX, raise_open_files_limit
from badsmtp.config import Config
from badsmtp.log import LogConfigError, LogSettings, configure, local_syslog_address
from badsmtp.portplan import plan_listeners, summary
from badsmtp.sockio import timeout_bytes
from badsmtp.storage import create_flags, maildir_host

LP64_LITTLE = struct.calcsize("@l") == 8 and sys.byteorder == "little"
LP64_ONLY = pytest.mark.skipif(
    not LP64_LITTLE, reason="the timeval bytes below are those of a 64-bit little-endian host"
)


# -- SO_RCVTIMEO / SO_SNDTIMEO -----------------------------------------------------------
def test_windows_reads_a_dword_of_milliseconds() -> None:
    assert timeout_bytes(300, "win32") == b"\xe0\x93\x04\x00"  # 300,000 ms, not 300
    assert timeout_bytes(1.5, "win32") == b"\xdc\x05\x00\x00"  # 1,500 ms
    assert timeout_bytes(0.0001, "win32") == b"\x01\x00\x00\x00"  # never 0 ("no timeout")
    assert timeout_bytes(0.0011, "win32") == b"\x02\x00\x00\x00"  # rounded up, never early
    assert timeout_bytes(10**9, "win32") == b"\xff\xff\xff\xff"  # capped at a DWORD


@LP64_ONLY
def test_linux_reads_a_timeval_of_two_longs() -> None:
    assert timeout_bytes(300, "linux") == b"\x2c\x01" + b"\0" * 14
    assert timeout_bytes(1.5, "linux") == b"\x01" + b"\0" * 7 + b"\x20\xa1\x07" + b"\0" * 5
    assert timeout_bytes(0.0000001, "linux") == b"\0" * 8 + b"\xe8\x03" + b"\0" * 6  # 1 ms, not 0


@LP64_ONLY
def test_macos_reads_a_timeval_of_long_and_int_padded_to_16_bytes() -> None:
    assert timeout_bytes(1.5, "darwin") == b"\x01" + b"\0" * 7 + b"\x20\xa1\x07\x00" + b"\0" * 4
    assert len(timeout_bytes(300, "darwin")) == 16


@pytest.mark.skipif(sys.platform != "linux", reason="reads the kernel's own timeval back")
@pytest.mark.parametrize("seconds", [300, 1.5, 0.5])  # whole jiffies at any HZ
def test_the_kernel_reads_back_what_set_timeouts_wrote(seconds: float) -> None:
    with socket.socket() as sock:
        sockio.set_timeouts(sock, seconds)
        size = len(timeout_bytes(seconds, "linux"))
        for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
            got = sock.getsockopt(socket.SOL_SOCKET, option, size)
            assert got == timeout_bytes(seconds, "linux")
        assert sock.gettimeout() is None  # the kernel's timeout, not Python's


# -- the syslog target -------------------------------------------------------------------
def test_each_platform_has_its_own_syslog_socket() -> None:
    assert local_syslog_address("linux") == "/dev/log"
    assert local_syslog_address("darwin") == "/var/run/syslog"
    assert local_syslog_address("freebsd14") == "/var/run/log"
    assert local_syslog_address("openbsd7") == "/dev/log"  # any other POSIX system
    assert local_syslog_address("win32") is None


@pytest.fixture
def syslog_path() -> Iterator[tuple[socket.socket, str]]:
    if sys.platform != "linux" and not hasattr(socket, "AF_UNIX"):
        pytest.skip("a local syslog socket needs AF_UNIX datagrams")
    directory = tempfile.mkdtemp(prefix="bsl")  # short: AF_UNIX paths are limited
    path = os.path.join(directory, "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path
    os.unlink(path)
    os.rmdir(directory)


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_syslog_goes_to_the_platforms_socket(
    platform: str, syslog_path: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = syslog_path
    monkeypatch.setattr(log, "PLATFORM", platform)
    monkeypatch.setitem(log.SYSLOG_ADDRESSES, platform, path)
    monkeypatch.setitem(log.SYSLOG_ADDRESSES, "linux" if platform == "darwin" else "darwin", "/nonexistent")
    setup = configure(LogSettings(log_output="syslog", log_format="text"))
    try:
        logging.getLogger("badsmtp.server").warning("hello")
        assert b" [WARN] hello" in sock.recv(65536)
    finally:
        setup.close()


def test_syslog_on_windows_is_a_one_line_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "PLATFORM", "win32")
    with pytest.raises(LogConfigError) as info:
        configure(LogSettings(log_output="syslog"))
    assert str(info.value) == (
        "syslog output is not available on Windows (no local syslog): "
        "use --log-output udp --log-remote-addr HOST:514"
    )


def test_an_explicit_syslog_socket_works_on_any_platform(
    syslog_path: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = syslog_path
    monkeypatch.setattr(log, "PLATFORM", "win32")
    setup = configure(LogSettings(log_output="syslog", log_format="text"), syslog_address=path)
    try:
        logging.getLogger("badsmtp.server").warning("hello")
        assert b" [WARN] hello" in sock.recv(65536)
    finally:
        setup.close()


def test_udp_logging_works_where_there_is_no_syslog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "PLATFORM", "win32")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        addr = f"127.0.0.1:{receiver.getsockname()[1]}"
        setup = configure(LogSettings(log_output="udp", log_remote_addr=addr))
        try:
            logging.getLogger("badsmtp.server").info("hello")
            record = json.loads(receiver.recv(65536))
        finally:
            setup.close()
    assert record["message"] == "hello"


# -- RLIMIT_NOFILE -------------------------------------------------------------------------
class FakeResource:
    """The ``resource`` module as a kernel with a per-process ceiling sees
    it: ``setrlimit`` above ``ceiling`` fails as macOS's does (EINVAL)."""

    RLIMIT_NOFILE = 8
    RLIM_INFINITY = -1

    def __init__(self, soft: int, hard: int, ceiling: int) -> None:
        self.limits, self.ceiling = (soft, hard), ceiling
        self.tried: list[int] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == self.RLIMIT_NOFILE and limits[1] == self.limits[1]  # the hard one kept
        self.tried.append(limits[0])
        if limits[0] == self.RLIM_INFINITY or limits[0] > self.ceiling:
            raise ValueError("current limit exceeds maximum limit")
        self.limits = limits


@pytest.mark.parametrize(
    ("ceiling", "lands_on"), [(24576, OPEN_MAX), (4096, ENOUGH_FILES), (100, 256)]
)
def test_macos_unlimited_hard_limit_lands_on_a_usable_soft_limit(ceiling: int, lands_on: int) -> None:
    fake = FakeResource(256, FakeResource.RLIM_INFINITY, ceiling)
    assert raise_open_files_limit(fake) == lands_on
    assert fake.limits == (lands_on, FakeResource.RLIM_INFINITY)
    assert fake.tried[0] == FakeResource.RLIM_INFINITY  # the best first


def test_linux_soft_limit_goes_to_the_hard_one() -> None:
    fake = FakeResource(1024, 524288, 10**7)
    assert raise_open_files_limit(fake) == 524288
    assert fake.tried == [524288]


def test_without_resource_the_limit_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: the import fails
    assert raise_open_files_limit() is None


# -- busy plan ports (macOS: AirPlay holds 5000 and 7000) ---------------------------------
def test_the_start_up_line_names_each_skipped_port_and_why() -> None:
    config = Config()
    plan = plan_listeners(config)
    busy = {5000, 5001}
    bound = [listener for listener in plan if listener.port not in busy]
    skipped = [(listener, "Address already in use") for listener in plan if listener.port in busy]
    line = summary(config, bound, "1.0", skipped)
    assert line.endswith("; 307 listeners; skipped 5000, 5001 (address already in use)")
    assert summary(config, plan, "1.0").endswith("; 309 listeners")  # nothing skipped, nothing said
    many = [(listener, "Address already in use") for listener in plan[3:15]]
    many.append((plan[-6], "Permission denied"))  # the immediate drop port
    line = summary(config, plan[:3], "1.0", many)
    assert line.endswith(
        "; skipped 3000, 3001, 3002, 3003, 3004, 3005, 3006, 3007, 3008, 3009 and 2 more"
        " (address already in use); 6000 (permission denied)"
    )


# -- binding -------------------------------------------------------------------------------
def test_posix_listeners_reuse_addresses_windows_ones_do_not() -> None:
    assert bind_options("win32") == []  # SO_REUSEADDR there would hide a busy port
    assert bind_options("linux") == bind_options("darwin") == ["SO_REUSEADDR"]


def test_a_restart_binds_the_port_its_last_run_left_in_time_wait() -> None:
    with BadSMTP(ports=[0]) as srv, Client(srv.port) as client:
        port = srv.port
        client.reply()
        client.send(b"QUIT\r\n")
        client.read_to_eof()  # the server closed first: its side lingers in TIME_WAIT
    with BadSMTP(ports=[port]) as again:
        assert again.port == port


def test_the_windows_path_binds_and_still_refuses_a_busy_main_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(acceptor, "PLATFORM", "win32")
    with BadSMTP(ports=[0]) as srv, Client(srv.port) as client:
        assert client.reply().startswith(b"220 ")
        second = BadSMTP(ports=[srv.port])
        with pytest.raises(OSError) as info:
            second.serve_in_thread()
        second.stop()  # harmless on a server that never started
        assert f"port {srv.port}" in str(info.value)


# -- maildir file names and contents -------------------------------------------------------
def test_maildir_host_escapes_per_platform() -> None:
    assert maildir_host("mx.example", "linux") == "mx.example"
    assert maildir_host("a/b:c", "linux") == r"a\057b\072c"  # maildir(5)
    assert maildir_host("a/b:c", "darwin") == r"a\057b\072c"
    assert maildir_host('a/b:c\\d<e>f"g|h?i*j', "win32") == "a_b_c_d_e_f_g_h_i_j"
    assert maildir_host("", "linux") == "badsmtp.test"


def test_message_files_are_opened_binary_where_that_is_a_flag() -> None:
    windows_os = SimpleNamespace(O_WRONLY=1, O_CREAT=0x100, O_EXCL=0x400, O_BINARY=0x8000)
    assert create_flags(windows_os) == 0x8501
    posix_os = SimpleNamespace(O_WRONLY=1, O_CREAT=0o100, O_EXCL=0o200)
    assert create_flags(posix_os) == 0o301


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_a_stored_message_has_no_colon_in_its_name_and_its_exact_bytes(
    platform: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if platform == "linux" and sys.platform == "win32":
        pytest.skip("the POSIX name's escapes hold a backslash, a separator on Windows")
    monkeypatch.setattr(storage, "PLATFORM", platform)
    monkeypatch.setattr(socket, "gethostname", lambda: "odd:host/name")
    with (
        BadSMTP(ports=[0], mailbox_dir=str(tmp_path)) as srv,
        smtplib.SMTP("127.0.0.1", srv.port, local_hostname="client.test", timeout=5) as smtp,
    ):
        smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: x\r\n\r\nline\r\n")
    [name] = os.listdir(tmp_path / "new")
    assert ":" not in name
    assert name.endswith({"linux": r".odd\072host\057name", "win32": ".odd_host_name"}[platform])
    data = (tmp_path / "new" / name).read_bytes()
    assert data.endswith(b"\r\n\r\nSubject: x\r\n\r\nline\r\n") and b"\r\r" not in data
