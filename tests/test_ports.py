"""Port-based behaviours end to end (badsmtp(1), PORT MAP and SIGNALS): every
role on an ephemeral port with sub-second delays, the README's real numbers
once, the whole 304-listener plan, and shutdown in the middle of every kind of
wait.

Timings are measured with ``time.monotonic`` around blocking reads that have
a deadline; nothing sleeps.  A lower bound proves the server waited, an upper
bound (with a generous margin for a loaded CI machine) proves it did not wait
for anything else.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import Client
from wire import (
    ACCEPTED,
    BYE,
    GO_AHEAD,
    GREETING,
    MAIL_OK,
    OK,
    RCPT_OK,
    SHUTTING_DOWN,
    SHUTTING_DOWN_ENH,
)

from badsmtp import BadSMTP, Listener
from badsmtp.config import TLS_FAULTS, Role

SLACK = 0.02  # timer granularity: a wait of d may be observed as d - a few ms
MARGIN = 0.5  # how much later than asked a delay may end on a busy machine


@pytest.fixture
def serve() -> Iterator[Callable[..., BadSMTP]]:
    """Start servers for one test; each is stopped and checked for internal errors."""
    started: list[BadSMTP] = []

    def start(*listeners: int | Listener, **settings: object) -> BadSMTP:
        srv = BadSMTP(ports=list(listeners), **settings).serve_in_thread()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
    for srv in started:
        assert srv.errors == [], f"internal errors in the server: {srv.errors!r}"


def timed(action: Callable[[], object]) -> tuple[object, float]:
    t0 = time.monotonic()
    result = action()
    return result, time.monotonic() - t0


def assert_about(elapsed: float, delay: float, what: str) -> None:
    assert delay - SLACK <= elapsed < delay + MARGIN, (
        f"{what}: {elapsed:.3f} s, expected ~{delay} s"
    )


def read_nothing_then_eof(port: int, timeout: float = 15.0) -> tuple[bytes, float]:
    """Connect, send nothing, read until the server closes: (bytes, seconds)."""
    t0 = time.monotonic()
    with Client(port, timeout=timeout) as c:
        data = c.read_to_eof(timeout=timeout)
    return data, time.monotonic() - t0


# -- every role on port 0 with sub-second delays (README, Embedding in tests) ----------
def test_greeting_delay_measured_from_accept_to_first_byte(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, Role.GREETING_DELAY, 0.3))
    assert srv.listeners[0].role is Role.GREETING_DELAY and srv.listeners[0].delay == 0.3
    t0 = time.monotonic()
    with Client(srv.port) as c:
        # Input sent during the delay waits in the socket and is served afterwards.
        c.send(b"EHLO early.example\r\nNOOP\r\n")
        assert c.reply() == GREETING
        assert_about(time.monotonic() - t0, 0.3, "greeting delay")
        assert c.reply().startswith(b"250-badsmtp.test\r\n")
        assert c.reply() == OK
        t1 = time.monotonic()
        assert c.command(b"QUIT") == BYE
        assert time.monotonic() - t1 < 0.2  # a greeting delay is no command delay


def test_a_listener_can_combine_a_greeting_delay_and_a_command_delay(
    serve: Callable[..., BadSMTP],
) -> None:
    srv = serve(Listener(0, greeting_delay=0.3, command_delay=0.2))
    t0 = time.monotonic()
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        assert_about(time.monotonic() - t0, 0.3, "greeting delay")
        reply, elapsed = timed(lambda: c.command(b"NOOP"))
        assert reply == b"250 OK\r\n"  # before any EHLO: no enhanced code
        assert_about(elapsed, 0.2, "command delay")


def test_implicit_tls_with_a_greeting_delay(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, "tls", greeting_delay=0.3))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
        t0 = time.monotonic()
        with srv.client_ssl_context().wrap_socket(raw, server_hostname="localhost") as tls:
            handshake = time.monotonic() - t0
            data = tls.recv(1024)
            assert data == GREETING
            assert handshake < 0.3 <= time.monotonic() - t0 + 0.05  # the handshake first, then the wait


def test_greeting_delay_zero_is_a_normal_port(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, Role.GREETING_DELAY, 0))
    with Client(srv.port) as c:
        greeting, elapsed = timed(c.reply)
        assert greeting == GREETING and elapsed < 0.2


def test_command_delay_on_every_command_but_not_on_data_content(
    serve: Callable[..., BadSMTP],
) -> None:
    srv = serve(Listener(0, Role.COMMAND_DELAY, 0.2))
    with Client(srv.port) as c:
        greeting, elapsed = timed(c.reply)
        assert greeting == GREETING and elapsed < 0.2  # the greeting is not delayed
        for line, expected in [
            (b"EHLO client.example", None),
            (b"MAIL FROM:<alice@example.com>", MAIL_OK),
            (b"RCPT TO:<bob@example.com>", RCPT_OK),
            (b"NOOP", OK),
            (b"XYZZY", b"500 5.5.2 Command not recognised\r\n"),
            (b"DATA", GO_AHEAD),
        ]:
            reply, elapsed = timed(lambda line=line: c.command(line))
            assert expected is None or reply == expected, (line, reply)
            assert_about(elapsed, 0.2, line.decode())
        # 40 content lines, some looking like commands: not one of them is delayed.
        body = b"Subject: quick\r\n\r\n" + b"".join(
            b"MAIL FROM:<x%d@example.com>\r\nline %d\r\n" % (i, i) for i in range(20)
        )
        c.send(body)
        reply, elapsed = timed(lambda: c.command(b"."))
        assert reply == ACCEPTED
        assert elapsed < 0.15, f"end of DATA answered after {elapsed:.3f} s"
        reply, elapsed = timed(lambda: c.command(b"QUIT"))
        assert reply == BYE
        assert_about(elapsed, 0.2, "QUIT")
    [message] = srv.wait_for_messages(1)
    assert message.content.count(b"MAIL FROM:<x") == 20


def test_command_delay_applies_to_each_pipelined_command(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, Role.COMMAND_DELAY, 0.2))
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        t0 = time.monotonic()
        c.send(b"NOOP\r\nNOOP\r\nNOOP\r\n")
        stamps = []
        for _ in range(3):
            assert c.reply() == b"250 OK\r\n"
            stamps.append(time.monotonic() - t0)
        # Each reply at least one more delay after the previous one.
        for n, stamp in enumerate(stamps, 1):
            assert 0.2 * n - SLACK <= stamp < 0.2 * n + MARGIN, stamps


def test_drop_delay_sends_nothing_and_closes_after_the_delay(
    serve: Callable[..., BadSMTP],
) -> None:
    srv = serve(Listener(0, Role.DROP, 0.3))
    data, elapsed = read_nothing_then_eof(srv.port)
    assert data == b""
    assert_about(elapsed, 0.3, "drop delay")


def test_drop_delay_reads_nothing_the_client_sends(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, Role.DROP, 0.3))
    t0 = time.monotonic()
    with Client(srv.port) as c:
        c.send(b"EHLO x\r\nQUIT\r\n")
        assert c.read_to_eof() == b""  # no reply, not even to QUIT
    assert_about(time.monotonic() - t0, 0.3, "drop delay with input")


@pytest.mark.parametrize(
    "listener", [Listener(0, Role.IMMEDIATE_DROP), Listener(0, Role.DROP, 0)], ids=["6000", "5000"]
)
def test_immediate_drop_closes_at_once_sending_nothing(
    serve: Callable[..., BadSMTP], listener: Listener
) -> None:
    srv = serve(listener)
    data, elapsed = read_nothing_then_eof(srv.port)
    assert data == b"" and elapsed < 0.2


def test_dlay_keyword_delays_the_ehlo_reply_and_every_later_command(
    serve: Callable[..., BadSMTP],
) -> None:
    srv = serve(0)
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        reply, elapsed = timed(lambda: c.command(b"EHLO dlay1.example.com"))
        assert reply.startswith(b"250-badsmtp.test\r\n") and reply.endswith(b"250 OK\r\n")
        assert_about(elapsed, 1.0, "EHLO dlay1")
        reply, elapsed = timed(lambda: c.command(b"MAIL FROM:<alice@example.com>"))
        assert reply == MAIL_OK
        assert_about(elapsed, 1.0, "MAIL after dlay1")


def test_no_dlay_for_a_name_that_only_contains_it(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(0)
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        _, elapsed = timed(lambda: c.command(b"EHLO notdlay1.example.com"))
        _, later = timed(lambda: c.command(b"NOOP"))
        assert elapsed < 0.2 and later < 0.2


# -- the README's real numbers, once (README, Quick tour) --------------------------------
REAL_PORTS = [3001, 5001, 6000, 5000, 4000]


def _start_real_ports() -> BadSMTP:
    """The default plan's own numbers.  Another process on this machine may hold
    them for a moment (a CLI run of the default plan); wait up to 20 s for them,
    then fail naming the ports rather than skip."""
    deadline = time.monotonic() + 20.0
    pause = threading.Event()
    while True:
        srv = BadSMTP(ports=REAL_PORTS)
        try:
            return srv.serve_in_thread()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                pytest.fail(
                    f"the README's ports {REAL_PORTS} on 127.0.0.1 are busy on this machine "
                    f"(another server holds one of them): {exc}. Stop it and re-run."
                )
            pause.wait(0.25)


def test_the_readme_port_numbers_with_real_delays() -> None:
    srv = _start_real_ports()
    try:
        assert srv.listeners == [
            Listener(3001, Role.GREETING_DELAY, 10.0),
            Listener(5001, Role.DROP, 10.0),
            Listener(6000, Role.IMMEDIATE_DROP),
            Listener(5000, Role.DROP, 0.0),
            Listener(4000, Role.COMMAND_DELAY, 0.0),
        ]
        results: dict[int, tuple[bytes, float]] = {}

        def greeting_after(port: int) -> None:
            t0 = time.monotonic()
            with Client(port, timeout=15) as c:
                results[port] = (c.reply(timeout=15), time.monotonic() - t0)

        def dropped_after(port: int) -> None:
            results[port] = read_nothing_then_eof(port)

        # The two 10-second waits run side by side: the suite pays ~10 s once.
        threads = [
            threading.Thread(target=greeting_after, args=(3001,)),
            threading.Thread(target=dropped_after, args=(5001,)),
        ]
        for t in threads:
            t.start()
        for port in (6000, 5000):
            data, elapsed = read_nothing_then_eof(port)
            assert data == b"" and elapsed < 0.3, (port, data, elapsed)
        with Client(4000) as c:  # offset 0: no command delay at all
            t0 = time.monotonic()
            assert c.reply() == GREETING
            assert c.command(b"NOOP") == b"250 OK\r\n"
            assert c.command(b"QUIT") == b"221 Bye\r\n"
            assert time.monotonic() - t0 < 0.3
        for t in threads:
            t.join(20)
        greeting, elapsed = results[3001]
        assert greeting == GREETING
        assert 10.0 - SLACK <= elapsed < 11.5, f"3001 greeted after {elapsed:.2f} s"
        data, elapsed = results[5001]
        assert data == b""
        assert 10.0 - SLACK <= elapsed < 11.5, f"5001 dropped after {elapsed:.2f} s"
    finally:
        srv.stop()
    assert srv.errors == []


# -- the whole default plan (badsmtp(1), PORT MAP) ---------------------------------------
def _free_block(size: int = 300) -> int:
    """A start port whose next ``size`` ports are free now, below the kernel's
    ephemeral range (32768+) so client sockets do not wander into it."""
    rng = random.Random()
    for _ in range(50):
        start = rng.randrange(10000, 32000 - size, 100)
        probes: list[socket.socket] = []
        try:
            for port in range(start, start + size):
                s = socket.socket()
                probes.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
            return start
        except OSError:
            continue
        finally:
            for s in probes:
                s.close()
    pytest.fail("no block of 300 free ports in 10000-32000 on 127.0.0.1")


def plan_settings(start: int, **more: int) -> dict[str, int]:
    settings = {
        "greeting_delay_port_start": start,
        "command_delay_port_start": start + 100,
        "drop_delay_port_start": start + 200,
        "port": 0,
        "tls_port": 0,
        "starttls_port": 0,
        "immediate_drop_port": 0,
        "tls_fault_port_start": 0,
    }
    settings.update(more)
    return settings


def acceptor_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "badsmtp-acceptor")


def test_full_plan_binds_304_listeners_fast_with_one_acceptor_thread() -> None:
    start = _free_block()
    before_threads = {t.ident for t in threading.enumerate()}
    before_acceptors = acceptor_threads()
    srv = BadSMTP(**plan_settings(start))
    t0 = time.monotonic()
    srv.serve_in_thread()
    started = time.monotonic() - t0
    try:
        assert started < 1.0, f"309 listeners took {started:.3f} s"
        assert len(srv.listeners) == 309
        new_threads = [t for t in threading.enumerate() if t.ident not in before_threads]
        assert [t.name for t in new_threads] == ["badsmtp-acceptor"]
        assert acceptor_threads() == before_acceptors + 1
        by_role: dict[Role, list[Listener]] = {}
        for listener in srv.listeners:
            by_role.setdefault(listener.role, []).append(listener)
        assert {role: len(ls) for role, ls in by_role.items()} == {
            Role.MAIN: 1,
            Role.STARTTLS: 1,
            Role.TLS: 1,
            Role.GREETING_DELAY: 100,
            Role.COMMAND_DELAY: 100,
            Role.DROP: 100,
            Role.IMMEDIATE_DROP: 1,
            Role.TLS_FAULT: 5,
        }
        assert [listener.tls_fault for listener in by_role[Role.TLS_FAULT]] == list(TLS_FAULTS)
        assert by_role[Role.GREETING_DELAY][7] == Listener(start + 7, Role.GREETING_DELAY, 70.0)
        assert by_role[Role.COMMAND_DELAY][99] == Listener(start + 199, Role.COMMAND_DELAY, 990.0)
        assert by_role[Role.DROP][1] == Listener(start + 201, Role.DROP, 10.0)
        # The ephemeral single ports got real, distinct numbers.
        singles = [
            srv.port_for(r) for r in (Role.MAIN, Role.STARTTLS, Role.TLS, Role.IMMEDIATE_DROP)
        ]
        assert 0 not in singles and len(set(singles)) == 4
        # A few of them serve their role right away.
        for port in (srv.port_for(Role.MAIN), start, start + 100):  # offsets 0: no delay
            with Client(port) as c:
                greeting, elapsed = timed(c.reply)
                assert greeting == GREETING and elapsed < 0.3
        for port in (srv.port_for(Role.IMMEDIATE_DROP), start + 200):
            data, elapsed = read_nothing_then_eof(port)
            assert data == b"" and elapsed < 0.3
    finally:
        t0 = time.monotonic()
        srv.stop()
        stopped = time.monotonic() - t0
    assert stopped < 1.0, f"stopping 309 listeners took {stopped:.3f} s"
    assert acceptor_threads() == before_acceptors
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", start + 5), timeout=2).close()
    assert srv.errors == []


def test_a_busy_range_port_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    start = _free_block()
    busy_port = start + 107  # a command-delay port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", busy_port))
        busy.listen()
        caplog.set_level(logging.WARNING, logger="badsmtp")
        with BadSMTP(**plan_settings(start)) as srv:
            assert len(srv.listeners) == 308
            assert busy_port not in srv.ports
            assert start + 106 in srv.ports and start + 108 in srv.ports
            with Client(srv.port) as c:
                assert c.reply() == GREETING
        assert srv.errors == []
    [record] = [
        r for r in caplog.records if r.getMessage() == "Port already in use; skipping listener"
    ]
    assert record.levelno == logging.WARNING
    fields = record.__dict__["fields"]
    assert fields["port"] == busy_port and fields["addr"] == "127.0.0.1" and fields["desc"]


def test_a_busy_main_port_raises_and_leaves_nothing_listening(
    caplog: pytest.LogCaptureFixture,
) -> None:
    start = _free_block()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        main_port = busy.getsockname()[1]
        acceptors = acceptor_threads()
        srv = BadSMTP(**plan_settings(start, port=main_port))
        with pytest.raises(OSError) as info:
            srv.serve_in_thread()
        assert info.value.errno == errno.EADDRINUSE
        assert str(main_port) in str(info.value)
        assert acceptor_threads() == acceptors
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", start), timeout=2).close()
        srv.stop()  # harmless on a server that never started
    assert not [r for r in caplog.records if "skipping listener" in r.getMessage()]


# -- shutdown in the middle of a wait (badsmtp(1), SIGNALS) ------------------------------
def _accepted(srv: BadSMTP, probe_port: int) -> None:
    """Return once every connection made before now has been accepted: the one
    acceptor thread handles all ready listeners in each pass, so a greeting on a
    fresh connection to ``probe_port`` proves the earlier ones were taken."""
    with Client(probe_port) as probe:
        assert probe.reply() == GREETING


def _stop_quickly(srv: BadSMTP) -> None:
    _, elapsed = timed(srv.stop)
    assert elapsed < 1.0, f"stop() took {elapsed:.3f} s"


def test_stop_during_a_990_second_greeting_delay(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, Role.GREETING_DELAY, 990), 0)
    waiting = [Client(srv.ports[0]) for _ in range(3)]
    try:
        _accepted(srv, srv.ports[1])
        _stop_quickly(srv)
        for c in waiting:
            assert c.read_to_eof(timeout=2) == SHUTTING_DOWN
    finally:
        for c in waiting:
            c.close()


def test_stop_during_a_command_delay(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, Role.COMMAND_DELAY, 990))
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        c.send(b"EHLO client.example\r\n")  # will wait 990 s before its reply
        _stop_quickly(srv)
        # The session takes the EHLO in (enhanced codes on) before it waits, so
        # the 421 is plain or enhanced depending on whether the server had read
        # the line when stop() came; the EHLO reply itself is never sent.
        assert c.read_to_eof(timeout=2) in (SHUTTING_DOWN, SHUTTING_DOWN_ENH)


def test_stop_during_a_dlay_delay_after_ehlo_is_enhanced(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(0)
    with Client(srv.port) as c:
        assert c.reply() == GREETING
        assert c.command(b"EHLO client.example").startswith(b"250-badsmtp.test")
        c.send(b"EHLO dlay600.example.com\r\n")
        _stop_quickly(srv)
        # Either the EHLO was read (its delay interrupted, the session still
        # enhanced) or the stop came first: a 421 either way, then the close.
        assert c.read_to_eof(timeout=2) == SHUTTING_DOWN_ENH


def test_stop_on_a_drop_port_attempts_the_421(serve: Callable[..., BadSMTP]) -> None:
    srv = serve(Listener(0, Role.DROP, 990), 0)
    with Client(srv.ports[0]) as c:
        _accepted(srv, srv.ports[1])
        _stop_quickly(srv)
        assert c.read_to_eof(timeout=2) == SHUTTING_DOWN  # attempted even here


def test_stop_during_a_990_second_delay_of_the_full_plan() -> None:
    start = _free_block()
    srv = BadSMTP(**plan_settings(start)).serve_in_thread()
    try:
        greeting = Client(start + 99)  # 990 s greeting delay
        command = Client(start + 199)  # 990 s before each command
        drop = Client(start + 299)  # dropped after 990 s
        try:
            assert command.reply() == GREETING
            command.send(b"NOOP\r\n")
            _accepted(srv, srv.port)
            _stop_quickly(srv)
            assert greeting.read_to_eof(timeout=2) == SHUTTING_DOWN
            assert command.read_to_eof(timeout=2) == SHUTTING_DOWN  # NOOP changes no state
            assert drop.read_to_eof(timeout=2) == SHUTTING_DOWN
        finally:
            for c in (greeting, command, drop):
                c.close()
    finally:
        srv.stop()
    assert srv.errors == []
