"""The pytest plugin (entry point ``pytest11``): its fixtures work in a test
module of someone else's, and a test fails when the server recorded an
internal error while it ran (each positive case has that failing twin)."""

from __future__ import annotations

import importlib.metadata

import pytest
from helpers import ROOT

pytest_plugins = ["pytester"]

EXAMPLE = ROOT / "examples" / "test_pytest_example.py"

# An internal error: the session's greeting raises, the server answers 421.
BREAK = """
import socket
import pytest
from badsmtp import session

def break_server(monkeypatch, port):
    def broken(self):
        raise RuntimeError("planted bug")
    monkeypatch.setattr(session.Session, "greeting", broken)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert sock.recv(1024).startswith(b"421 ")

def talk(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert sock.recv(1024).startswith(b"220 ")
        sock.sendall(b"QUIT\\r\\n")
        assert sock.recv(1024).startswith(b"221 ")
"""


def test_plugin_is_registered_through_the_entry_point() -> None:
    entry = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "badsmtp"]
    assert [e.value for e in entry] == ["badsmtp.pytest_plugin"]


def test_the_example_module_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=EXAMPLE.read_text(encoding="utf-8"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing(): pass")
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["badsmtp_server*", "badsmtp_session_server*", "badsmtp_factory*"], consecutive=False
    )


def test_badsmtp_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        BREAK
        + """
def test_clean(badsmtp_server):
    talk(badsmtp_server.port)

def test_broken(badsmtp_server, monkeypatch):
    break_server(monkeypatch, badsmtp_server.port)

ports = []

def test_fresh_server_each_time(badsmtp_server):
    ports.append(badsmtp_server.port)
    talk(badsmtp_server.port)

def test_fresh_server_each_time_2(badsmtp_server):
    assert badsmtp_server.port not in ports  # the first one is stopped
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ports[0]), timeout=5).close()
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_broken*",
            "*ServerErrors: the badsmtp server recorded 1 internal error(s) during the test*",
            "*RuntimeError: planted bug*",
        ],
        consecutive=False,
    )
    assert "test_clean" not in "\n".join(line for line in result.outlines if "ERROR" in line)


def test_badsmtp_session_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        BREAK
        + """
seen = set()

def test_one(badsmtp_session_server):
    seen.add(badsmtp_session_server.port)
    talk(badsmtp_session_server.port)

def test_broken(badsmtp_session_server, monkeypatch):
    seen.add(badsmtp_session_server.port)
    break_server(monkeypatch, badsmtp_session_server.port)

def test_after_the_broken_one(badsmtp_session_server):
    seen.add(badsmtp_session_server.port)
    talk(badsmtp_session_server.port)
    assert len(seen) == 1  # one server for the whole run
    assert len(badsmtp_session_server.errors) == 1  # still there, but not this test's
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_broken*", "*the shared badsmtp server recorded 1*"],
        consecutive=False,
    )


def test_badsmtp_factory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        BREAK
        + """
from badsmtp import Listener

ports = []

def test_settings(badsmtp_factory, tmp_path):
    server = badsmtp_factory(mailbox_dir=str(tmp_path / "mail"), tls_hostname="mx.example.test")
    slow = badsmtp_factory(ports=[0, Listener(0, "greeting_delay", 0.01)])
    ports.extend([server.port, *slow.ports])
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert sock.recv(1024).startswith(b"220 mx.example.test ")
    talk(slow.ports[1])
    assert server.port != slow.ports[0] != slow.ports[1]

def test_every_server_was_stopped():
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

def test_broken(badsmtp_factory, monkeypatch):
    fine, broken = badsmtp_factory(), badsmtp_factory()
    talk(fine.port)
    break_server(monkeypatch, broken.port)
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_broken*", "*a badsmtp_factory server recorded 1*"],
        consecutive=False,
    )


def test_parallel_workers_use_ephemeral_ports(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_example=EXAMPLE.read_text(encoding="utf-8"))
    pytester.makepyfile(test_example_2=EXAMPLE.read_text(encoding="utf-8"))
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)


# -- the findings opt-in (README, What your client did wrong) ------------------------------
# A client that ends a command with a bare LF (an error) and sends AUTH PLAIN
# in clear text while STARTTLS was offered (a warning); and a clean one.
CLIENTS = """
import socket
import pytest

def sloppy(port, warning=True):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sock.sendall(b"EHLO client.example\\r\\n")
        while not f.readline().startswith(b"250 "):
            pass
        sock.sendall(b"NOOP\\n" if not warning else b"AUTH PLAIN AGdvb2RhdXRoQGV4YW1wbGUuY29tAHBhc3N3b3Jk\\r\\n")
        assert f.readline()[:1] in b"25"
        sock.sendall(b"QUIT\\r\\n")
        assert f.readline().startswith(b"221 ")

def error(port):
    sloppy(port, warning=False)

def clean(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sock.sendall(b"QUIT\\r\\n")
        assert f.readline().startswith(b"221 ")
"""


def test_findings_are_ignored_by_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CLIENTS + """
def test_error(badsmtp_server):
    error(badsmtp_server.port)
""")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.parametrize("mode, errors", [("error", 1), ("all", 2), ("ignore", 0)])
def test_the_ini_option_fails_tests_whose_client_broke_the_protocol(
    pytester: pytest.Pytester, mode: str, errors: int
) -> None:
    pytester.makeini(f"[pytest]\nbadsmtp_findings = {mode}\n")
    pytester.makepyfile(CLIENTS + """
def test_error(badsmtp_server):
    error(badsmtp_server.port)

def test_warning(badsmtp_factory):
    sloppy(badsmtp_factory().port)

def test_clean(badsmtp_session_server):
    clean(badsmtp_session_server.port)
""")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=errors)
    if errors:
        result.stdout.fnmatch_lines([
            "*ERROR at teardown of test_error*",
            "*the SMTP client broke the protocol: 1 badsmtp finding(s)",
            "session 127.0.0.1:* -> port *:",
            "  error bare-lf [[]NOOP[]]: NOOP ended with a bare LF, not CRLF (RFC 5321 §2.3.8)",
        ], consecutive=False)  # fmt: skip
    if errors == 2:
        result.stdout.fnmatch_lines(["*ERROR at teardown of test_warning*",
                                     "  warning auth-cleartext-without-tls [[]AUTH[]]: *"], consecutive=False)


def test_the_marker_wins_over_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nbadsmtp_findings = all\n")
    pytester.makepyfile(CLIENTS + """
@pytest.mark.badsmtp_findings("ignore")
def test_ignored(badsmtp_server):
    error(badsmtp_server.port)

@pytest.mark.badsmtp_findings("error")
def test_warning_only(badsmtp_session_server):
    sloppy(badsmtp_session_server.port)

@pytest.mark.badsmtp_findings("error")
def test_error(badsmtp_session_server):
    clean(badsmtp_session_server.port)
    error(badsmtp_session_server.port)
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_error*", "*1 badsmtp finding(s)*"],
                                consecutive=False)


def test_an_unknown_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CLIENTS + """
@pytest.mark.badsmtp_findings("strict")
def test_it(badsmtp_server):
    clean(badsmtp_server.port)
""")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*'strict' is not one of ignore, error, all*"])
    assert result.ret != 0


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["@pytest.mark.badsmtp_findings(mode):*"])
