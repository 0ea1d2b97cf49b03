"""Counted triggers (README "Asking for errors"): ``x<N>`` after the code
fails the first N times the trigger would fire on the server, counted
across connections, then the address (or HELO name) is an ordinary one;
``+<tag>`` keys the count without changing what fires.  The dispatcher is
driven with a plain counter; the server's own is shared by every
connection and forgotten by ``reset_triggers()``."""

from __future__ import annotations

import re
import smtplib
import threading
import time
from dataclasses import replace

import pytest
from helpers import Client, serving
from test_protocol import CTX, at, run

import badsmtp
from badsmtp import triggers
from badsmtp.protocol import Context, Phase
from badsmtp.replies import Reply
from badsmtp.runtime import TriggerUses
from badsmtp.triggers import Trigger


class Counter:
    """The server's count, without threads: key -> fired so far."""

    def __init__(self) -> None:
        self.fired: dict[str, int] = {}

    def __call__(self, key: str, times: int) -> bool:
        if self.fired.get(key, 0) >= times:
            return False
        self.fired[key] = self.fired.get(key, 0) + 1
        return True


# -- the grammar -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "verb", "code", "times", "key"),
    [
        ("rcpt451x2@example.com", "rcpt", 451, 2, "rcpt451x2@example.com"),
        ("mail421_4.3.2x1@example.com", "mail", 421, 1, "mail421_4.3.2x1@example.com"),
        ("data452x999@example.com", "data", 452, 999, "data452x999@example.com"),
        ("rcpt451x2+test17@example.com", "rcpt", 451, 2, "rcpt451x2+test17@example.com"),
        ("RCPT451X2+Test_1-a@Example.com", "rcpt", 451, 2, "rcpt451x2+test_1-a@example.com"),
        ("rcpt550+t@example.com", "rcpt", 550, None, "rcpt550+t@example.com"),
    ],
)
def test_counts_and_tags_are_read_from_the_local_part(
    address: str, verb: str, code: int, times: int | None, key: str
) -> None:
    trigger = triggers.address_trigger(address)
    assert trigger is not None
    assert (trigger.verb, trigger.reply.code, trigger.times, trigger.key) == (verb, code, times, key)


@pytest.mark.parametrize(
    "address",
    ["rcpt451x0@example.com", "rcpt451x1000@example.com", "rcpt451x@example.com",
     "rcpt451+@example.com", "rcpt451+a.b@example.com", "rcpt451x2y@example.com"],
)
def test_a_count_out_of_range_or_a_bad_tag_is_no_trigger(address: str) -> None:
    assert triggers.address_trigger(address) is None


def test_the_enhanced_code_survives_a_count_and_a_tag() -> None:
    trigger = triggers.address_trigger("mail421_4.3.2x1+t@example.com")
    assert trigger is not None
    assert trigger.reply.render(True) == b"421 4.3.2 Service not available, closing transmission channel\r\n"


def test_a_helo_name_may_carry_a_count() -> None:
    trigger = triggers.helo_trigger("helo421x2.example.com")
    assert trigger is not None and (trigger.reply.code, trigger.times) == (421, 2)
    assert triggers.helo_trigger("helo421x0.example.com") is None
    assert triggers.helo_trigger("helo421.example.com") == Trigger(
        "helo", trigger.reply, "helo421.example.com"
    )


# -- the dispatcher, with a counter --------------------------------------------------------
def test_mail_fails_its_n_times_then_is_an_ordinary_sender() -> None:
    ctx = Context(uses=Counter())
    outs = [run(at(Phase.MAIL), "MAIL FROM:<mail421x2@example.com>", ctx)[2] for _ in range(3)]
    assert outs[:2] == [b"421 Service not available, closing transmission channel\r\n"] * 2
    assert outs[2] == b"250 2.1.0 OK\r\n"


def test_a_recipient_fails_its_n_times_then_is_accepted() -> None:
    ctx = Context(uses=Counter())
    state = at(Phase.RCPT)
    outs = [run(state, "RCPT TO:<rcpt451x2@example.com>", ctx)[2] for _ in range(3)]
    assert [o[:3] for o in outs] == [b"451", b"451", b"250"]


def test_a_tag_keeps_its_own_count() -> None:
    ctx = Context(uses=Counter())
    state = at(Phase.RCPT)
    assert run(state, "RCPT TO:<rcpt451x1+a@example.com>", ctx)[2][:3] == b"451"
    assert run(state, "RCPT TO:<rcpt451x1+a@example.com>", ctx)[2][:3] == b"250"
    assert run(state, "RCPT TO:<rcpt451x1+b@example.com>", ctx)[2][:3] == b"451"


def test_every_rcpt_of_one_transaction_is_one_use_of_a_mail_from_pattern() -> None:
    counter = Counter()
    ctx = Context(uses=counter)
    for attempt in range(2):  # two transactions fail every recipient...
        state, _, out = run(at(Phase.MAIL), "MAIL FROM:<rcpt451x2@example.com>", ctx)
        assert out == b"250 2.1.0 OK\r\n"
        for n in range(3):
            state, _, out = run(state, f"RCPT TO:<r{n}@example.com>", ctx)
            assert out[:3] == b"451", (attempt, n)
    assert counter.fired == {"rcpt451x2@example.com": 2}
    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<rcpt451x2@example.com>", ctx)
    for n in range(3):  # ...the third accepts them all
        state, _, out = run(state, f"RCPT TO:<r{n}@example.com>", ctx)
        assert out == b"250 2.1.5 OK\r\n"
    assert state.recipients == ("r0@example.com", "r1@example.com", "r2@example.com")


def test_a_deferred_trigger_uses_one_count_per_firing_and_then_is_disarmed() -> None:
    ctx = Context(uses=Counter())
    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<noop451x2@example.com>", ctx)
    state, _, first = run(state, "NOOP", ctx)
    state, _, second = run(state, "NOOP", ctx)
    state, _, third = run(state, "NOOP", ctx)
    assert [first[:3], second[:3], third] == [b"451", b"451", b"250 2.0.0 OK\r\n"]
    assert state.armed is None


def test_a_used_up_data_trigger_lets_the_message_through() -> None:
    ctx = Context(uses=Counter())
    armed = triggers.address_trigger("data452x1@example.com")
    state = at(Phase.RCPT, armed=armed)
    _, _, out = run(state, "DATA", ctx)
    assert out[:3] == b"452"
    new, _, out = run(state, "DATA", ctx)
    assert out == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    assert new.armed is None


def test_a_guard_that_answers_takes_no_use() -> None:
    counter = Counter()
    ctx = Context(uses=counter)
    state = at(Phase.RCPT, armed=triggers.address_trigger("rcpt451x1@example.com"))
    _, _, out = run(state, "RCPT TO:<bad>", ctx)  # a bad address wins over the trigger
    assert out[:3] == b"501" and counter.fired == {}


def test_helo_and_ehlo_fail_their_n_times_then_greet() -> None:
    ctx = Context(uses=Counter())
    outs = [run(at(Phase.HELO), "EHLO helo421x1.example.com", ctx)[2] for _ in range(2)]
    assert outs[0] == b"421 Service not available, closing transmission channel\r\n"
    assert outs[1].startswith(b"250-badsmtp.test\r\n")
    assert run(at(Phase.HELO), "HELO helo421x1.example.com", ctx)[2] == b"250 badsmtp.test\r\n"


def test_without_a_counter_a_counted_trigger_fires_every_time() -> None:
    state = at(Phase.RCPT)
    outs = [run(state, "RCPT TO:<rcpt451x1@example.com>")[2][:3] for _ in range(3)]
    assert outs == [b"451"] * 3


def test_the_servers_counter_is_shared_and_can_be_cleared() -> None:
    uses = TriggerUses()
    assert [uses.take("k", 2) for _ in range(3)] == [True, True, False]
    assert uses.take("other", 1)
    uses.clear()
    assert uses.take("k", 2)


def test_armed_used_is_cleared_by_rset_and_a_new_mail() -> None:
    ctx = Context(uses=Counter())
    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<rcpt451x5@example.com>", ctx)
    state, _, _ = run(state, "RCPT TO:<r@example.com>", ctx)
    assert state.armed_used
    assert not run(state, "RSET", ctx)[0].armed_used
    assert not run(replace(state, phase=Phase.MAIL), "MAIL FROM:<a@example.com>", ctx)[0].armed_used


# -- end to end: retries on new connections ---------------------------------------------
def _send(port: int, sender: str, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, [recipient], "Subject: retry\r\n\r\nhello\r\n")


def test_a_client_retrying_on_new_connections_delivers_exactly_once() -> None:
    with serving(ports=[0]) as server:
        failures = []
        for _ in range(5):  # a naive retry loop, one connection per attempt
            try:
                _send(server.port, "alice@example.com", "rcpt451x2+e2e@example.com")
                break
            except smtplib.SMTPRecipientsRefused as exc:
                failures.append(exc.recipients["rcpt451x2+e2e@example.com"][0])
        assert failures == [451, 451]
        assert [m.recipients for m in server.wait_for_messages(1)] == [("rcpt451x2+e2e@example.com",)]
        assert len(server.messages) == 1


def test_reset_triggers_makes_every_count_start_again() -> None:
    with serving(ports=[0]) as server:
        with Client(server.port) as c:
            c.reply()
            c.command(b"EHLO client.example")
            assert c.command(b"MAIL FROM:<mail421x1@example.com>")[:3] == b"421"
        with Client(server.port) as c:
            c.reply()
            c.command(b"EHLO client.example")
            assert c.command(b"MAIL FROM:<mail421x1@example.com>")[:3] == b"250"
        server.reset_triggers()
        with Client(server.port) as c:
            c.reply()
            c.command(b"EHLO client.example")
            assert c.command(b"MAIL FROM:<mail421x1@example.com>")[:3] == b"421"


def test_parallel_clients_with_their_own_tags_never_share_a_count() -> None:
    with serving(ports=[0]) as server:
        seen: dict[str, list[int]] = {}

        def retry(tag: str) -> None:
            recipient = badsmtp.address("rcpt", 451, times=2, tag=tag)
            seen[tag] = []
            for _ in range(5):
                try:
                    _send(server.port, "alice@example.com", recipient)
                    return
                except smtplib.SMTPRecipientsRefused as exc:
                    seen[tag].append(exc.recipients[recipient][0])

        threads = [threading.Thread(target=retry, args=(f"w{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert seen == {f"w{n}": [451, 451] for n in range(4)}
        assert len(server.wait_for_messages(4)) == 4


# -- the builders ------------------------------------------------------------------------
def test_the_builders_spell_counts_and_tags() -> None:
    assert badsmtp.address("rcpt", 451, times=2, tag="t17") == "rcpt451x2+t17@example.com"
    assert badsmtp.address("mail", 421, "4.3.2", times=1) == "mail421_4.3.2x1@example.com"
    assert badsmtp.helo_trigger_name(421, times=2) == "helo421x2.example.com"
    built = triggers.address_trigger(badsmtp.address("data", 452, times=3, tag="a-b_c"))
    assert built is not None and (built.verb, built.times) == ("data", 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"times": 0}, "times must be an int from 1 to 999, not 0"),
        ({"times": 1000}, "times must be an int from 1 to 999, not 1000"),
        ({"times": True}, "times must be an int from 1 to 999, not True"),
        ({"tag": "a.b"}, "tag must be letters, digits, '-' and '_', not 'a.b'"),
        ({"tag": ""}, "tag must be letters, digits, '-' and '_', not ''"),
    ],
)
def test_the_builders_refuse_what_the_server_would_not_count(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        badsmtp.address("rcpt", 451, **kwargs)  # type: ignore[arg-type]


# -- transfer faults: noack and slowack -------------------------------------------------
def test_noack_and_slowack_are_read_from_mail_from() -> None:
    fault = triggers.transfer_fault("noackx2+t@example.com")
    assert fault is not None and (fault.kind, fault.times) == ("noack", 2)
    slow = triggers.transfer_fault("slowack30@example.com")
    assert slow is not None and (slow.kind, slow.amount) == ("slowack", 30)
    for bad in ("noack5@example.com", "slowack@example.com", "slowack0@example.com",
                "slowack606@example.com", "dropafter@example.com"):
        assert triggers.transfer_fault(bad) is None, bad


def _committed(sender: str, ctx: Context, error: object = None) -> list[object]:
    from badsmtp import content

    state, _, _ = run(at(Phase.MAIL), f"MAIL FROM:<{sender}>", ctx)
    _, outputs = content.committed(state, error, ctx)  # type: ignore[arg-type]
    return [type(o).__name__ if not isinstance(o, Reply) else o.code for o in outputs]


def test_noack_stores_then_closes_without_the_250() -> None:
    ctx = Context(uses=Counter())
    assert _committed("noackx1@example.com", ctx) == ["Log", "Accepted", "Close"]
    assert _committed("noackx1@example.com", ctx) == [250, "Accepted"]  # used up


def test_slowack_waits_before_the_final_reply() -> None:
    from badsmtp import content
    from badsmtp.actions import Wait

    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<slowack30@example.com>")
    _, outputs = content.committed(state, None, CTX)
    assert [o for o in outputs if isinstance(o, Wait)] == [Wait(30.0)]
    assert _committed("slowack30@example.com", CTX) == ["Log", "Wait", 250, "Accepted"]


def test_a_transfer_fault_lasts_one_transaction() -> None:
    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<noack@example.com>")
    assert state.fault is not None
    assert run(state, "RSET")[0].fault is None


def test_noack_makes_a_naive_retry_loop_deliver_twice() -> None:
    with serving(ports=[0]) as server:
        attempts = 0
        for _ in range(3):
            attempts += 1
            try:
                _send(server.port, "noackx1+dup@example.com", "bob@example.com")
                break
            except smtplib.SMTPServerDisconnected:
                continue  # "no 250: it was not delivered" (it was)
        assert attempts == 2
        assert len(server.wait_for_messages(2)) == 2


def test_slowack_delays_the_250_on_the_wire() -> None:
    with serving(ports=[0]) as server, Client(server.port) as c:
        c.reply()
        c.command(b"EHLO client.example")
        c.command(b"MAIL FROM:<slowack1@example.com>")
        c.command(b"RCPT TO:<bob@example.com>")
        c.command(b"DATA")
        t0 = time.monotonic()
        assert c.command(b"Subject: x\r\n\r\nhi\r\n.") == b"250 2.0.0 OK Message accepted for delivery\r\n"
        assert 1.0 <= time.monotonic() - t0 < 3.0


# -- transfer faults: dropafter ----------------------------------------------------------
def _data_session(port: int, sender: str) -> Client:
    c = Client(port)
    c.reply()
    c.command(b"EHLO client.example")
    assert c.command(f"MAIL FROM:<{sender}>".encode())[:3] == b"250"
    assert c.command(b"RCPT TO:<bob@example.com>")[:3] == b"250"
    return c


def test_dropafter_closes_once_n_octets_of_data_arrived_and_stores_nothing() -> None:
    with serving(ports=[0], mailbox_dir=None) as server:
        with _data_session(server.port, "dropafter10@example.com") as c:
            assert c.command(b"DATA")[:3] == b"354"
            c.send(b"123456789")  # 9 octets: not yet
            c.send(b"0123456789\r\n")
            assert c.read_to_eof() == b""  # closed, no reply
        with _data_session(server.port, "alice@example.com") as c:  # the server goes on
            assert c.command(b"DATA")[:3] == b"354"
            assert c.command(b"hi\r\n.")[:3] == b"250"
        assert [m.sender for m in server.wait_for_messages(1)] == ["alice@example.com"]


def test_dropafter0_closes_right_after_the_354() -> None:
    with serving(ports=[0]) as server, _data_session(server.port, "dropafter0@example.com") as c:
        assert c.command(b"DATA") == b"354 End data with <CR><LF>.<CR><LF>\r\n"
        assert c.read_to_eof() == b""
    assert server.messages == []


def test_dropafter_counts_bdat_chunk_octets() -> None:
    with serving(ports=[0]) as server, _data_session(server.port, "dropafter5@example.com") as c:
        c.send(b"BDAT 4\r\nabcd")
        assert c.reply() == b"250 2.0.0 OK\r\n"
        c.send(b"BDAT 4 LAST\r\nef")  # the fifth octet arrives
        assert c.read_to_eof() == b""
    assert server.messages == []


def test_dropafter_counts_once_then_the_message_goes_through() -> None:
    with serving(ports=[0]) as server:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            _send(server.port, "dropafter1x1+once@example.com", "bob@example.com")
        _send(server.port, "dropafter1x1+once@example.com", "bob@example.com")
        assert len(server.wait_for_messages(1)) == 1


def test_the_fault_builder_spells_what_the_server_reads() -> None:
    built = {
        badsmtp.fault_address("dropafter", 0): ("dropafter", 0, None),
        badsmtp.fault_address("noack", times=1, tag="t"): ("noack", 0, 1),
        badsmtp.fault_address("slowack", 605, times=3): ("slowack", 605, 3),
    }
    for address, expected in built.items():
        fault = triggers.transfer_fault(address)
        assert fault is not None and (fault.kind, fault.amount, fault.times) == expected
    assert badsmtp.fault_address("dropafter", 100) == "dropafter100@example.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("slowack", 0), "slowack needs a whole number of seconds from 1 to 605, not 0"),
        (("slowack", None), "slowack needs a whole number of seconds from 1 to 605, not None"),
        (("noack", 3), "noack takes no amount"),
        (("dropafter", -1), "dropafter needs a whole number of octets from 0, not -1"),
        (("boom", 1), "unknown transfer fault 'boom'; expected one of dropafter, noack, slowack"),
    ],
)
def test_the_fault_builder_refuses_what_the_server_would_not_read(
    args: tuple[str, int | None], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        badsmtp.fault_address(*args)


def test_slowack_is_scaled_by_time_scale() -> None:
    with serving(ports=[0], time_scale=0.01) as server, Client(server.port) as c:
        c.reply()
        c.command(b"EHLO client.example")
        c.command(b"MAIL FROM:<slowack100@example.com>")
        c.command(b"RCPT TO:<bob@example.com>")
        c.command(b"DATA")
        t0 = time.monotonic()
        assert c.command(b"hi\r\n.") == b"250 2.0.0 OK Message accepted for delivery\r\n"
        assert 1.0 <= time.monotonic() - t0 < 3.0  # 100 s x 0.01


# -- the transcript says which fault fired -------------------------------------------------
def test_the_transcript_records_each_fault_that_fired() -> None:
    from badsmtp.transcript import FaultRecord

    with serving(ports=[0]) as server:
        with Client(server.port) as c:
            c.reply()
            c.command(b"EHLO client.example")
            assert c.command(b"MAIL FROM:<rcpt451x1+tr@example.com>")[:3] == b"250"
            assert c.command(b"RCPT TO:<bob@example.com>")[:3] == b"451"
            assert c.command(b"RCPT TO:<carol@example.com>")[:3] == b"451"
            c.command(b"RSET")
            assert c.command(b"MAIL FROM:<dropafter0@example.com>")[:3] == b"250"
            assert c.command(b"RCPT TO:<bob@example.com>")[:3] == b"250"
            assert c.command(b"DATA")[:3] == b"354"
            assert c.read_to_eof() == b""
        [transcript] = server.wait_for_sessions(1)
        faults = [r for r in transcript.events if isinstance(r, FaultRecord)]
        assert [(f.what, f.trigger) for f in faults] == [
            ("SMTP error simulation triggered", "rcpt451x1+tr@example.com"),
            ("SMTP error simulation triggered", "rcpt451x1+tr@example.com"),
            ("SMTP transfer fault triggered", "dropafter0@example.com"),
        ]
        assert dict(faults[0].fields)["smtp_stage"] == "RCPT"
        assert "!! SMTP transfer fault triggered: fault=dropafter" in str(transcript)
