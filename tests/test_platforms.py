"""The platform-specific paths, each run here whatever the host (issue: runs
on Linux, macOS and Windows): socket timeouts as each kernel reads them,
the syslog target, the descriptor limit, maildir file names."""

from __future__ import annotations

import socket
import struct
import sys

import pytest

from badsmtp import sockio
from badsmtp.sockio import timeout_bytes

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
