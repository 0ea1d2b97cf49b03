"""A plain start stays light: what the CLI imports before its first greeting.

The import budget: a plain ``badsmtp`` start (the whole default plan, the
default JSON log, or the text log) greets its first client having loaded
only the modules that first connection needs.  Everything else (TLS
certificates, message parsing, transcripts, the temporary files of
``--port-file``, the ``secrets``/``random``/``hashlib`` family) loads on
first use; the test fails when someone adds an eager import of one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import free_port, free_ranges

# Loaded only when something needs them: TLS certificates, message parsing,
# transcripts (the CLI never records).
LAZY = ("cryptography", "email.parser", "email.utils", "badsmtp.transcript", "yaml")

# Never loaded by a plain start, up to its first greeting.
NOT_AT_START = frozenset(
    {
        *LAZY,
        "badsmtp.certificate",  # generating a certificate: the first TLS handshake
        "badsmtp.tlsfaults",  # the first TLS fault port connection
        "ssl",  # the first TLS handshake (badsmtp.sockio, badsmtp.tls)
        "_ssl",
        "badsmtp.transcript",
        "email",
        "tempfile",  # --port-file, --write-tls-cert, a user's key file
        "secrets",
        "random",
        "hashlib",
        "asyncio",
        "concurrent.futures.process",
        "multiprocessing",
        "yaml",
    }
)
# The package's modules a plain start may load: the server and its core,
# the CLI's options and logging.  A module added here must be needed by the
# first connection (or by reading the command line).
BADSMTP_AT_START = frozenset(
    f"badsmtp.{name}"
    for name in (
        "accepting acceptor actions api auth batch builders cli commands config content "
        "deliveries extensions findings framing hooks log logbuffer logformat logjson optionkeys optionparser "
        "options portplan protocol readers replies replyfaults runtime server session "
        "sessionlog sockio state stopsignals storage threadsettings tls triggers verbs workers"
    ).split()
) | {"badsmtp"}

# Started in a thread (so the CLI leaves signals alone) on a main port the
# test found free, greeted once (connecting until it listens, with a
# deadline), then the modules loaded since the interpreter started are
# written out; the process ends there.  No --port-file: writing one is not a plain start's work.
PROBE = """
import sys
before = set(sys.modules)  # what this interpreter had loaded before (a coverage hook?)
import json, os, socket, threading, time
from badsmtp import cli
out, port, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
threading.Thread(target=cli.main, args=([*argv, "--port", str(port)],), daemon=True).start()
deadline, pause = time.monotonic() + 30, threading.Event()
while True:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        break
    except ConnectionRefusedError:
        assert time.monotonic() < deadline, "badsmtp never listened"
        pause.wait(0.002)
with sock:
    greeting = b""
    while not greeting.endswith(b"\\r\\n"):
        greeting += sock.recv(1024) or b"EOF\\r\\n"
with open(out, "w", encoding="utf-8") as file:
    json.dump({"greeting": greeting.decode(), "modules": sorted(set(sys.modules) - before)}, file)
sys.stdout.flush()
os._exit(0)
"""


def _loaded(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(' '.join(m for m in {LAZY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_importing_the_cli_loads_none_of_the_lazy_modules() -> None:
    assert _loaded("import badsmtp.cli") == []


def test_the_checker_sees_a_module_that_is_loaded() -> None:
    # Twin: the same probe reports modules once something does need them.
    assert _loaded("import badsmtp; badsmtp.Transcript; import email.utils") == [
        "email.utils",
        "badsmtp.transcript",
    ]


def _modules_at_first_greeting(tmp_path: Path, *extra: str, probe: str = PROBE) -> set[str]:
    """The modules a plain ``badsmtp`` (the default plan, on free ports) had
    loaded when its first client read the 220."""
    greeting, command, drop = free_ranges(3)
    argv = [
        "--tls-port", "0", "--starttls-port", "0", "--immediate-drop-port", "0",
        "--tls-fault-port-start", "0", "--greeting-delay-port-start", str(greeting),
        "--command-delay-port-start", str(command), "--drop-delay-port-start", str(drop), *extra,
    ]  # fmt: skip
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BADSMTP_", "LOG_"))}
    run = subprocess.run(
        [sys.executable, "-c", probe, str(out), str(free_port()), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,  # no badsmtp.yaml of the caller's
    )
    assert run.returncode == 0, run.stderr
    found = json.loads(out.read_text(encoding="utf-8"))
    assert found["greeting"].startswith("220 ")
    return set(found["modules"])


def _over_budget(modules: set[str]) -> set[str]:
    """The modules loaded that a plain start may not load."""
    heavy = {m for m in modules if m.split(".")[0] in NOT_AT_START or m in NOT_AT_START}
    ours = {m for m in modules if m.split(".")[0] == "badsmtp"} - BADSMTP_AT_START
    return heavy | ours


def test_a_plain_start_greets_within_its_import_budget(tmp_path: Path) -> None:
    modules = _modules_at_first_greeting(tmp_path)  # the default: JSON records at INFO
    assert _over_budget(modules) == set()
    assert {"pythonjsonlogger", "badsmtp.logjson"} <= modules  # the JSON records' formatter


def test_a_plain_start_with_the_text_log_stays_within_the_budget(tmp_path: Path) -> None:
    modules = _modules_at_first_greeting(tmp_path, "--log-format", "text", "--log-level", "DEBUG")
    assert _over_budget(modules) == set()
    # Text records need no JSON formatter: python-json-logger (and the uuid
    # and platform modules it brings) stay unloaded.
    assert not {"pythonjsonlogger", "badsmtp.logjson", "uuid", "platform"} & modules


def test_the_budget_catches_an_eager_import(tmp_path: Path) -> None:
    # Twin: the same probe, with a start that loads what it should not
    # (an extension importing them at start-up, say), is over budget.
    eager = PROBE.replace("import cli", "import cli, transcript\nimport email.utils")
    over = _over_budget(_modules_at_first_greeting(tmp_path, probe=eager))
    assert {"badsmtp.transcript", "badsmtp.records", "email", "email.utils"} <= over
    # email.utils brings random along, unless the interpreter had it already
    # (a site .pth may load it before any test code runs).
    assert {m.split(".")[0] for m in over} - {"random"} == {"badsmtp", "email"}


def test_the_tls_checks_work_before_and_after_ssl_is_loaded() -> None:
    # Before: nothing can be TLS, no ssl error can arrive.  After: as ssl says.
    code = (
        "import socket, sys; from badsmtp import sockio\n"
        "with socket.socket() as sock: before = (sockio.is_tls(sock), sockio.ssl_errors('SSLError'))\n"
        "print('ssl' in sys.modules, before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout) == (0, "False (False, ())\n"), out.stderr
    import ssl

    from badsmtp import sockio

    assert sockio.ssl_errors("SSLWantReadError", "SSLError") == (ssl.SSLWantReadError, ssl.SSLError)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with socket.socket() as raw, context.wrap_socket(raw, server_side=True) as wrapped:
        assert sockio.is_tls(wrapped) and not sockio.is_tls(raw)
