"""The ``badsmtp`` command's configuration (badsmtp(1), OPTIONS, CONFIGURATION,
FILES and ENVIRONMENT): precedence flags > BADSMTP_* environment > file >
defaults, the file search, error texts and exit statuses, --print-config, and
the command run as a subprocess (summary, --port-file, --write-tls-cert,
SIGTERM)."""

from __future__ import annotations

import json
import os
import random
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import posix_signals

from badsmtp import __version__, cli, log, options
from badsmtp.config import TLS_FAULTS
from badsmtp.options import CLIError, load_settings

LOG_VARS = ("LOG_LEVEL", "LOG_FORMAT", "LOG_OUTPUT", "LOG_REMOTE_ADDR", "SYSLOG_FACILITY")
CONFIG_DIRS = options.config_dirs  # before the fixture below replaces it


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No configuration from the machine: an empty working directory and
    home, no /etc file, no BADSMTP_* or LOG_* variables."""
    home, etc = tmp_path / "home", tmp_path / "etc"
    home.mkdir()
    etc.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(
        options, "config_dirs", lambda: [Path("."), Path.home() / ".badsmtp", etc]
    )
    for name in list(os.environ):
        if name.startswith("BADSMTP_") or name in LOG_VARS:
            monkeypatch.delenv(name)
    yield tmp_path


def test_without_a_home_directory_the_search_skips_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A container run as a uid with no passwd entry and no HOME: Path.home() fails.
    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    assert CONFIG_DIRS() == [Path("."), Path("/etc/badsmtp")]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> options.Settings:
    return load_settings(argv or [], env or {})


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


# -- precedence ---------------------------------------------------------------------------
def test_defaults() -> None:
    s = settings()
    assert s.values["port"] == 2525
    assert s.values["listen_address"] == "127.0.0.1"
    assert s.values["mailbox_dir"] is None
    assert s.values["log_level"] == "INFO"
    assert s.values["idle_timeout"] == 300
    assert {str(src) for src in s.sources.values()} == {"default"}
    assert s.config_file is None


@pytest.mark.parametrize(
    ("key", "flag", "env", "file_value", "flag_value", "env_value"),
    [
        ("port", "--port", "BADSMTP_PORT", "2601", "2603", "2602"),
        ("tls_hostname", "--tls-hostname", "BADSMTP_TLS_HOSTNAME", "f.test", "c.test", "e.test"),
        ("max_recipients", "--max-recipients", "BADSMTP_MAX_RECIPIENTS", "7", "9", "8"),
        ("log_format", "--log-format", "BADSMTP_LOG_FORMAT", "text", "json", "text"),
        ("idle_timeout", "--idle-timeout", "BADSMTP_IDLE_TIMEOUT", "1.5", "3", "2"),
    ],
)
def test_flags_beat_env_beat_file_beat_defaults(
    isolated: Path, key: str, flag: str, env: str, file_value: str, flag_value: str, env_value: str
) -> None:
    config = write(isolated / "badsmtp.yaml", f"{key}: {file_value}\n")
    kind = options.KEY_BY_NAME[key].kind

    only_file = settings()
    assert only_file.values[key] == kind(file_value)
    assert str(only_file.sources[key]) == f"file {config.name}"

    file_and_env = settings([], {env: env_value})
    assert file_and_env.values[key] == kind(env_value)
    assert str(file_and_env.sources[key]) == f"env {env}"

    all_three = settings([flag, flag_value], {env: env_value})
    assert all_three.values[key] == kind(flag_value)
    assert str(all_three.sources[key]) == f"flag {flag}"


def test_sources_mix_per_key(isolated: Path) -> None:
    write(isolated / "badsmtp.yaml", "port: 2701\ntls_port: 2702\nstarttls_port: 2703\n")
    s = settings(["--tls-port=2802"], {"BADSMTP_STARTTLS_PORT": "2903"})
    assert (s.values["port"], s.values["tls_port"], s.values["starttls_port"]) == (2701, 2802, 2903)
    assert str(s.sources["port"]) == "file badsmtp.yaml"
    assert str(s.sources["tls_port"]) == "flag --tls-port"
    assert str(s.sources["starttls_port"]) == "env BADSMTP_STARTTLS_PORT"


def test_attached_short_value_still_beats_the_environment() -> None:
    s = settings(["-p2999"], {"BADSMTP_PORT": "2998"})
    assert s.values["port"] == 2999
    assert str(s.sources["port"]) == "flag -p"


@pytest.mark.parametrize(
    ("argv", "port"),
    [
        (["-port=2526"], 2526),
        (["-port", "2527"], 2527),
        (["-p", "2528"], 2528),
        (["--port=2529"], 2529),
        (["--port", "0"], 0),
    ],
)
def test_port_spellings(argv: list[str], port: int) -> None:
    assert settings(argv).values["port"] == port


@pytest.mark.parametrize(
    ("argv", "mailbox"),
    [
        (["--mailbox"], "./mailbox"),
        (["-m"], "./mailbox"),
        (["-mailbox"], "./mailbox"),
        (["--mailbox", "/tmp/x"], "/tmp/x"),
        (["-mailbox", "/tmp/y"], "/tmp/y"),
        (["-mailbox=/tmp/z"], "/tmp/z"),
        (["-m", "box"], "box"),
        (["--mailbox-dir", "/srv/m"], "/srv/m"),
        (["--mailbox", "--port", "2600"], "./mailbox"),
        ([], None),
    ],
)
def test_mailbox_spellings(argv: list[str], mailbox: str | None) -> None:
    assert settings(argv).values["mailbox_dir"] == mailbox


def test_mailbox_from_env_and_file(isolated: Path) -> None:
    assert settings([], {"BADSMTP_MAILBOX_DIR": "/e"}).values["mailbox_dir"] == "/e"
    write(isolated / "badsmtp.yaml", "mailbox_dir: ./from-file\n")
    assert settings().values["mailbox_dir"] == "./from-file"


def test_unprefixed_logging_variables_and_the_prefixed_ones_win() -> None:
    s = settings([], {"LOG_LEVEL": "DEBUG", "LOG_FORMAT": "text", "SYSLOG_FACILITY": "local3"})
    assert (s.values["log_level"], s.values["log_format"]) == ("DEBUG", "text")
    assert s.values["syslog_facility"] == "local3"
    assert str(s.sources["log_level"]) == "env LOG_LEVEL"
    both = settings([], {"LOG_LEVEL": "DEBUG", "BADSMTP_LOG_LEVEL": "ERROR"})
    assert both.values["log_level"] == "ERROR"
    assert str(both.sources["log_level"]) == "env BADSMTP_LOG_LEVEL"
    flag = settings(["--log-level", "WARN"], {"LOG_LEVEL": "DEBUG"})
    assert flag.values["log_level"] == "WARN"


def test_unprefixed_server_variables_are_not_read() -> None:
    # A bare PORT is often set by CI/PaaS for something else (badsmtp(1), ENVIRONMENT).
    s = settings([], {"PORT": "1", "MAILBOX_DIR": "/x", "TLS_PORT": "2"})
    assert (s.values["port"], s.values["mailbox_dir"], s.values["tls_port"]) == (2525, None, 25465)


def test_reference_spellings_without_inner_underscores() -> None:
    s = settings([], {"BADSMTP_MAILBOXDIR": "/m", "BADSMTP_TLSPORT": "2999"})
    assert (s.values["mailbox_dir"], s.values["tls_port"]) == ("/m", 2999)
    assert str(s.sources["tls_port"]) == "env BADSMTP_TLSPORT"
    assert settings([], {"BADSMTP_TLSPORT": "1", "BADSMTP_TLS_PORT": "3"}).values["tls_port"] == 3


# -- the configuration file ---------------------------------------------------------------
def test_file_search_order(isolated: Path) -> None:
    home_dir = Path.home() / ".badsmtp"
    etc = isolated / "etc"
    write(etc / "badsmtp.yaml", "port: 3")
    assert settings().values["port"] == 3
    write(home_dir / "badsmtp.json", '{"port": 2}')
    assert settings().values["port"] == 2  # $HOME/.badsmtp before /etc/badsmtp
    write(isolated / "badsmtp.json", '{"port": 11}')
    assert settings().values["port"] == 11  # . before $HOME/.badsmtp
    write(isolated / "badsmtp.yml", "port: 12")
    assert settings().values["port"] == 12  # .yml before .json in one directory
    write(isolated / "badsmtp.yaml", "port: 13")
    s = settings()
    assert s.values["port"] == 13 and s.config_file == "badsmtp.yaml"


def test_explicit_config_skips_the_search(isolated: Path) -> None:
    write(isolated / "badsmtp.yaml", "port: 13\n")
    other = write(isolated / "conf" / "other.yml", "port: 14\n")
    for argv in (["--config", str(other)], ["-c", str(other)], [f"--config={other}"]):
        s = settings(argv)
        assert s.values["port"] == 14 and s.config_file == str(other)


def test_json_comments_and_empty_values(isolated: Path) -> None:
    write(
        isolated / "badsmtp.json",
        '{"_comment": "ignored", "_anything": 1, "listen_address": "127.0.0.2", "tls_cert_file": null}',
    )
    s = settings()
    assert s.values["listen_address"] == "127.0.0.2"
    assert s.values["tls_cert_file"] is None


def test_empty_file_is_fine(isolated: Path) -> None:
    write(isolated / "badsmtp.yaml", "# nothing yet\n")
    assert settings().values["port"] == 2525


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port: 1\nenable_hostname_routing: true\n", "unknown configuration key enable_hostname_routing in {file}"),
        ("mailbox: ./m\n", "unknown configuration key mailbox in {file}"),
        ("port-file: x\n", "unknown configuration key port-file in {file}"),
        ("port: abc\n", "invalid integer for port: abc"),
        ("- port\n", "configuration file {file} must hold a mapping of keys to values"),
        ("port: [1, 2]\n", "invalid value for port in {file}: expected a single value"),
    ],
)
def test_file_errors(isolated: Path, text: str, message: str) -> None:
    path = write(isolated / "badsmtp.yaml", text)
    with pytest.raises(CLIError) as info:
        settings()
    assert str(info.value) == message.format(file=path.name)
    assert info.value.status == 2


def test_unknown_key_names_the_file_as_given(isolated: Path) -> None:
    path = write(isolated / "sub" / "x.yaml", "hostname_mailbox_map: {}\n")
    with pytest.raises(CLIError, match=f"^unknown configuration key hostname_mailbox_map in {path}$"):
        settings(["-c", str(path)])


def test_missing_config_file_is_an_error(isolated: Path) -> None:
    with pytest.raises(CLIError, match="^cannot read configuration file nope.yaml: No such file"):
        settings(["--config", "nope.yaml"])


# -- errors through main(): one line on stderr, exit 2 ---------------------------------------
@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "abc"], {}, "invalid integer for --port: abc"),
        (["-p", "x1"], {}, "invalid integer for -p: x1"),
        (["-port=1.5"], {}, "invalid integer for -port: 1.5"),
        ([], {"BADSMTP_PORT": "two"}, "invalid integer for BADSMTP_PORT: two"),
        ([], {"BADSMTP_TLSPORT": "z"}, "invalid integer for BADSMTP_TLSPORT: z"),
        (["--idle-timeout", "soon"], {}, "invalid integer for --idle-timeout: soon"),
        (["--port", "65536"], {}, "port configuration error: normal port 65536 is out of range (0-65535)"),
        (
            ["--drop-delay-port-start", "65500"],
            {},
            "port configuration error: drop delay range (65500-65599) is out of range (1-65535)",
        ),
        (
            ["--command-delay-port-start", "3050"],
            {},
            (
                "port configuration error: port ranges overlap: greeting delay (3000-3099) "
                "and command delay (3050-3149)"
            ),
        ),
        (
            ["--port", "3050"],
            {},
            "port configuration error: normal port 3050 conflicts with greeting delay range (3000-3099)",
        ),
        (
            [],
            {"BADSMTP_TLS_PORT": "25587"},
            "port configuration error: TLS port 25587 conflicts with STARTTLS port 25587",
        ),
        (["--max-recipients", "0"], {}, "configuration error: max_recipients must be at least 1, not 0"),
        (["--log-output", "tcp"], {}, "remote address required for tcp logging"),
        ([], {"LOG_OUTPUT": "udp"}, "remote address required for udp logging"),
        (["--no-such-option"], {}, "badsmtp: unrecognized arguments: --no-such-option (see badsmtp --help)"),
    ],
)
def test_errors_are_one_line_with_status_2(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, out, err = run_main(argv, capsys)
    assert (status, out, err) == (2, "", message + "\n")


def test_file_key_error_through_main(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(isolated / "badsmtp.yml", "port: 2525\ndefault_mailbox_dir: x\n")
    assert run_main([], capsys) == (2, "", "unknown configuration key default_mailbox_dir in badsmtp.yml\n")


def test_invalid_remote_address(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(
        ["--port", "0", "--log-output", "udp", "--log-remote-addr", "no-port-here"], capsys
    )
    assert (status, out) == (2, "")
    assert err == "invalid remote address for udp logging: no-port-here (want host:port)\n"


# -- --help, --version, --print-config ---------------------------------------------------------
def test_help_is_grouped(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(["--help"], capsys)
    assert status == 0 and err == ""
    for heading in ("general:", "server:", "ports:", "TLS:", "logging:", "limits:"):
        assert f"\n{heading}\n" in out
    for key in options.KEYS:
        assert key.flags[0] in out
        assert key.env in out


def test_help_ignores_a_broken_config_file(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(isolated / "badsmtp.yaml", "nonsense: 1\n")
    assert run_main(["-h"], capsys)[0] == 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["--version"], capsys) == (0, f"badsmtp {__version__}\n", "")


def test_print_config_shows_values_and_sources(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(isolated / "badsmtp.yaml", "port: 2701\nlisten_address: 127.0.0.9\n")
    monkeypatch.setenv("BADSMTP_TLS_PORT", "2702")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    status, out, err = run_main(["--print-config", "--starttls-port", "2703"], capsys)
    assert status == 0 and err == ""
    lines = {line.split(":")[0]: line for line in out.splitlines() if not line.startswith("#")}
    assert set(lines) == {key.name for key in options.KEYS}
    assert re.fullmatch(r"port: 2701 +# file badsmtp\.yaml", lines["port"])
    assert lines["tls_port"].endswith("# env BADSMTP_TLS_PORT")
    assert lines["starttls_port"].endswith("# flag --starttls-port")
    assert lines["log_level"].startswith('log_level: "WARN"')  # normalised, as it takes effect
    assert lines["log_level"].endswith("# env LOG_LEVEL")
    assert lines["idle_timeout"].endswith("# default")
    assert "configuration file: badsmtp.yaml" in out.splitlines()[0]


def test_print_config_output_loads_as_a_config_file(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_main(["--print-config", "--port", "2600", "--mailbox", "box"], capsys)
    assert status == 0
    path = write(isolated / "printed.yaml", out)
    again = settings(["-c", str(path)])
    assert again.values["port"] == 2600 and again.values["mailbox_dir"] == "box"
    assert again.values["tls_cert_file"] is None


def test_print_config_reports_an_invalid_plan(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_main(["--print-config", "--tls-port", "25587"], capsys)
    assert status == 2
    assert "tls_port: 25587" in out
    assert err == "port configuration error: TLS port 25587 conflicts with STARTTLS port 25587\n"


# -- the command as a subprocess ------------------------------------------------------------
def free_ranges(count: int = 3) -> list[int]:
    """``count`` adjacent 100-port ranges that are free now, below the
    kernel's ephemeral range so port-0 listeners never take one."""
    for _ in range(50):
        start = random.randrange(20000, 32000 - count * 100, 100)
        socks: list[socket.socket] = []
        try:
            for port in range(start, start + count * 100):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return [start + 100 * i for i in range(count)]
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port ranges")


def ephemeral_argv() -> list[str]:
    greeting, command, drop = free_ranges()
    return [
        "--port", "0", "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
        "--tls-fault-port-start", "0",
        "--greeting-delay-port-start", str(greeting),
        "--command-delay-port-start", str(command),
        "--drop-delay-port-start", str(drop),
    ]  # fmt: skip


def start(argv: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BADSMTP_") and k not in LOG_VARS}
    env["HOME"] = str(cwd)
    return subprocess.Popen(
        [sys.executable, "-m", "badsmtp", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
    )


def first_line(stream: object, timeout: float) -> bytes:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not sel.select(timeout):
            raise TimeoutError("no output")
    return stream.readline()  # type: ignore[attr-defined, no-any-return]


def finish(proc: subprocess.Popen[bytes], timeout: float = 10) -> tuple[int, bytes, bytes]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def smtp_greeting(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        sock.sendall(b"QUIT\r\n")
        return data


@posix_signals
def test_cli_serves_reports_and_exits_on_sigterm(tmp_path: Path) -> None:
    port_file, cert_file = tmp_path / "ports.json", tmp_path / "cert.pem"
    argv = [*ephemeral_argv(), "--port-file", str(port_file), "--write-tls-cert", str(cert_file)]
    proc = start(argv, tmp_path)
    try:
        summary = first_line(proc.stderr, timeout=30).decode()
        ports = json.loads(port_file.read_text(encoding="utf-8"))
        assert summary.startswith(f"badsmtp {__version__} on 127.0.0.1: SMTP {ports['normal_port']},")
        assert f"drop {ports['drop_delay_ports']}" in summary and "storage off" in summary
        assert set(ports) == {
            "normal_port", "tls_port", "starttls_port", "immediate_drop_port",
            "greeting_delay_ports", "command_delay_ports", "drop_delay_ports", "tls_fault_ports",
        }  # fmt: skip
        assert list(ports["tls_fault_ports"]) == list(TLS_FAULTS)  # five ephemeral ports
        assert smtp_greeting(ports["normal_port"]).startswith(b"220 ")
        # The certificate was written before the port file: trust it and connect.
        context = ssl.create_default_context(cafile=str(cert_file))
        with (
            socket.create_connection(("127.0.0.1", ports["tls_port"]), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.recv(1024).startswith(b"220 ")
    finally:
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        status, out, err = finish(proc)
        elapsed = time.monotonic() - sent
    assert status == 0
    assert elapsed < 1.0, f"took {elapsed:.2f} s to exit after SIGTERM"
    records = [json.loads(line) for line in out.decode().splitlines()]  # stdout: JSON only
    messages = [r["message"] for r in records]
    started = next(r for r in records if r["message"] == "BadSMTP server started")
    assert started["fields"] == {**ports, "log_level": "INFO", "log_output": "stdout"}
    # One start-up record at INFO; a record per listener only at DEBUG.
    assert not {"Listening on port", "Listening on TLS port"} & set(messages)
    assert messages[-1] == "All sessions closed; shutdown complete"
    shutdown = messages.index("Shutdown signal received, initiating graceful shutdown")
    assert shutdown > messages.index("BadSMTP server started")
    # Session records carry the session's fields (badsmtp(1), LOGGING).
    opened = [r["fields"] for r in records if r["message"] == "SMTP connection established"]
    assert [(f["port"], f["tls_enabled"]) for f in opened] == [
        (ports["normal_port"], False),
        (ports["tls_port"], True),
    ]
    assert all(re.fullmatch(r"sess_[0-9a-f]{24}", f["session_id"]) for f in opened)
    (tls,) = [r["fields"] for r in records if r["message"] == "TLS handshake successful"]
    assert tls["session_id"] == opened[1]["session_id"] and tls["tls_version"].startswith("TLS 1.")
    assert messages.count("SMTP connection closed") == 2
    assert err == b""  # only the summary line (already read), no warnings or tracebacks


@posix_signals
def test_cli_text_logs_and_sigint(tmp_path: Path) -> None:
    proc = start([*ephemeral_argv(), "--log-format", "text", "--log-level", "warn"], tmp_path)
    try:
        assert first_line(proc.stderr, timeout=30).startswith(b"badsmtp ")
    finally:
        proc.send_signal(signal.SIGINT)
        status, out, err = finish(proc)
    assert status == 0
    assert b"Traceback" not in err
    assert b"[INFO]" not in out  # WARN level: the start-up records are INFO


@posix_signals
def test_cli_debug_logs_a_record_per_listener_before_the_start_up_record(tmp_path: Path) -> None:
    port_file = tmp_path / "ports.json"
    argv = [*ephemeral_argv(), "--log-format", "text", "--log-level", "debug"]
    proc = start([*argv, "--port-file", str(port_file)], tmp_path)
    try:
        assert first_line(proc.stderr, timeout=30).startswith(b"badsmtp ")
        ports = json.loads(port_file.read_text(encoding="utf-8"))
    finally:
        proc.send_signal(signal.SIGTERM)
        status, out, _ = finish(proc)
    assert status == 0
    lines = out.decode().splitlines()
    listening = [line for line in lines if "[DEBUG] Listening on" in line]
    assert len(listening) == 309  # the whole plan (badsmtp(1), PORT MAP)
    (tls,) = [line for line in listening if line.endswith(f" port={ports['tls_port']}")]
    assert "[DEBUG] Listening on TLS port addr=127.0.0.1 desc=tls port=" in tls
    started = next(i for i, line in enumerate(lines) if "[INFO] BadSMTP server started" in line)
    assert started > lines.index(listening[-1])


def test_cli_port_in_use_is_one_line_and_status_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ephemeral_argv()
        argv[1] = str(port)
        proc = start([*argv, "--port-file", str(tmp_path / "p.json")], tmp_path)
        status, out, err = finish(proc, timeout=30)
    assert (status, out) == (1, b"")
    assert err.decode() == f"cannot listen on 127.0.0.1 port {port}: Address already in use\n"
    assert not (tmp_path / "p.json").exists()


def test_cli_unusable_mailbox_and_certificate(tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "not a directory")
    proc = start([*ephemeral_argv(), "--mailbox", str(blocker / "box")], tmp_path)
    status, _, err = finish(proc, timeout=30)
    assert status == 1 and err.count(b"\n") == 1 and b"Traceback" not in err
    assert b"mailbox" in err
    argv = [*ephemeral_argv(), "--tls-cert-file", str(tmp_path / "none.pem"), "--tls-key-file", str(blocker)]
    status, _, err = finish(start(argv, tmp_path), timeout=30)
    assert status == 1 and err.count(b"\n") == 1 and b"Traceback" not in err
    assert b"none.pem" in err


def test_cli_syslog_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("badsmtp.log.PLATFORM", "linux")
    monkeypatch.setitem(log.SYSLOG_ADDRESSES, "linux", str(tmp_path / "no-syslog"))
    status, out, err = run_main([*ephemeral_argv(), "--log-output", "syslog"], capsys)
    assert (status, out) == (1, "")
    assert err == f"failed to connect to syslog at {tmp_path / 'no-syslog'}: No such file or directory\n"


def test_cli_syslog_on_windows_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("badsmtp.log.PLATFORM", "win32")
    status, out, err = run_main([*ephemeral_argv(), "--log-output", "syslog"], capsys)
    assert (status, out) == (2, "")
    assert err == (
        "syslog output is not available on Windows (no local syslog): "
        "use --log-output udp --log-remote-addr HOST:514\n"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGTERM to a subprocess")
def test_a_busy_plan_port_is_named_in_the_start_up_line(tmp_path: Path) -> None:
    """On macOS the AirPlay receiver holds port 5000, the first drop port of
    the default plan: the start-up line says so plainly, the log too."""
    greeting, command, drop = free_ranges()
    argv = [
        "--port", "0", "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
        "--tls-fault-port-start", "0",
        "--greeting-delay-port-start", str(greeting), "--command-delay-port-start", str(command),
        "--drop-delay-port-start", str(drop), "--port-file", str(tmp_path / "ports.json"),
    ]  # fmt: skip
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", drop))
        busy.listen()
        proc = start(argv, tmp_path)
        try:
            summary = first_line(proc.stderr, timeout=30).decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            status, out, err = finish(proc)
    assert status == 0 and err == b""
    assert summary.endswith(f"; 308 listeners; skipped {drop} (address already in use)\n")
    [warning] = [r for r in map(json.loads, out.decode().splitlines()) if r["level"] == "WARN"]
    assert warning["message"] == "Port already in use; skipping listener"
    assert warning["error"] == "Address already in use"
    assert warning["fields"] == {"port": drop, "desc": "drop_delay", "addr": "127.0.0.1"}
