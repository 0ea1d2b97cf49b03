"""The pure dispatcher, ``protocol.dispatch(state, verb, args, ctx)``, driven
directly: the state table (RFC 5321 §4.1.4), the order of checks, the
argument checks and addresses (RFC 5321 §4.1.2), triggers (badsmtp(1), ERROR
TRIGGERS), and the effects each verb asks of the session driver.  Replies are
rendered to exact wire bytes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from helpers import split_command

from badsmtp import commands, protocol, replies, triggers
from badsmtp.actions import Abort, Close, Log, StartTLS, Wait
from badsmtp.protocol import (
    Authenticate,
    Context,
    DiscardChunk,
    Phase,
    ReadChunk,
    ReadData,
    State,
    dispatch,
    transaction_over,
)
from badsmtp.replies import Reply, ReplyError
from badsmtp.triggers import Trigger

CTX = Context()
EHLO_CAPS = triggers.ehlo_capabilities("client.example", False, "badsmtp.test")
SENDER = "sender@example.com"
RCPT1 = "rcpt@example.com"


def at(phase: Phase, **changes: object) -> State:
    """A state in ``phase`` as a real session reaches it after EHLO (HELO:
    fresh connection; RCPT/BDAT: one sender and one accepted recipient)."""
    if phase is Phase.HELO:
        base = State()
    elif phase is Phase.MAIL:
        base = State(phase=Phase.MAIL, caps=EHLO_CAPS, helo_name="client.example")
    else:
        base = State(
            phase=phase,
            caps=EHLO_CAPS,
            helo_name="client.example",
            sender=SENDER,
            recipients=(RCPT1,),
        )
    return replace(base, **changes)  # type: ignore[arg-type]


def wire(state: State, outputs: list[protocol.Output], verb: str = "") -> bytes:
    """The replies among ``outputs`` as the session renders them: enhanced
    codes per the resulting state's capabilities, never on a reply to
    HELO/EHLO (RFC 2034 §3)."""
    enhanced = state.caps.enhanced and verb not in ("HELO", "EHLO")
    return b"".join(o.render(enhanced) for o in answers(outputs) if isinstance(o, Reply))


def answers(outputs: list[protocol.Output]) -> list[protocol.Output]:
    """``outputs`` with a refused BDAT's answer in place of its DiscardChunk
    (sent once the chunk has been read)."""
    flat: list[protocol.Output] = []
    for out in outputs:
        flat.extend(out.then if isinstance(out, protocol.DiscardChunk) else (out,))
    return flat


def run(state: State, line: str, ctx: Context = CTX) -> tuple[State, list[protocol.Output], bytes]:
    verb, args = split_command(line)
    new, outputs = dispatch(state, verb, args, ctx)
    return new, outputs, wire(new, outputs, verb)


def effects(outputs: list[protocol.Output]) -> list[object]:
    return [o for o in outputs if not isinstance(o, Reply)]


# -- 4.2 / 4.3: which verbs are allowed where ---------------------------------
ALLOWED = {
    "HELO": {"HELO", "MAIL", "RCPT", "BDAT"},
    "EHLO": {"HELO", "MAIL", "RCPT", "BDAT"},
    "AUTH": {"MAIL"},
    "MAIL": {"MAIL"},
    "RCPT": {"RCPT"},
    "DATA": {"RCPT"},
    "BDAT": {"RCPT", "BDAT"},
    "RSET": {"HELO", "MAIL", "RCPT", "BDAT"},
    "NOOP": {"HELO", "MAIL", "RCPT", "BDAT"},
    "QUIT": {"HELO", "MAIL", "RCPT", "BDAT"},
    "STARTTLS": {"HELO", "MAIL"},
    "VRFY": {"HELO", "MAIL", "RCPT", "BDAT"},
    "HELP": {"HELO", "MAIL", "RCPT", "BDAT"},
}
# A well-formed instance of every verb, so the only possible 503 is the state's.
SAMPLE = {
    "HELO": "HELO client.example",
    "EHLO": "EHLO client.example",
    "AUTH": "AUTH PLAIN AGEAYg==",
    "MAIL": "MAIL FROM:<other@example.com>",
    "RCPT": "RCPT TO:<another@example.com>",
    "DATA": "DATA",
    "BDAT": "BDAT 10",
    "RSET": "RSET",
    "NOOP": "NOOP",
    "QUIT": "QUIT",
    "STARTTLS": "STARTTLS",
    "VRFY": "VRFY exists@example.com",
    "HELP": "HELP",
}
MATRIX = [(verb, phase) for verb in ALLOWED for phase in Phase]


def test_the_table_is_the_spec_table() -> None:
    assert {v: {p.value for p in ps} for v, ps in protocol.ALLOWED.items()} == ALLOWED
    assert protocol.KNOWN_VERBS == frozenset(ALLOWED)


@pytest.mark.parametrize("verb, phase", [(v, p) for v, p in MATRIX if p.value not in ALLOWED[v]])
def test_verb_outside_its_states_gets_the_generic_503(verb: str, phase: Phase) -> None:
    state = at(phase)
    new, outputs, out = run(state, SAMPLE[verb])
    esc = "" if phase is Phase.HELO else "5.5.1 "  # HELO: no EHLO yet, no enhanced codes
    assert out == f"503 {esc}Bad sequence - {verb} not allowed in {phase.value} state\r\n".encode()
    assert new == state  # nothing changes
    # A refused BDAT's chunk is still read, never taken as commands (RFC 3030 §2).
    assert effects(outputs) == ([protocol.DiscardChunk(10, (outputs[0].then[0],))] if verb == "BDAT" else [])


@pytest.mark.parametrize("verb, phase", [(v, p) for v, p in MATRIX if p.value in ALLOWED[v]])
def test_verb_inside_its_states_is_handled(verb: str, phase: Phase) -> None:
    _, _, out = run(at(phase), SAMPLE[verb])
    assert not out.startswith(b"503 5.5.1 Bad sequence - ")


@pytest.mark.parametrize(
    "state, line, expected",
    [
        (at(Phase.HELO), "MAIL FROM:<a@example.com>", "503 Bad sequence - MAIL not allowed in HELO state"),
        (at(Phase.MAIL), "RCPT TO:<b@example.com>", "503 5.5.1 Bad sequence - RCPT not allowed in MAIL state"),
        (at(Phase.RCPT), "MAIL FROM:<a@example.com>", "503 5.5.1 Bad sequence - MAIL not allowed in RCPT state"),
        (at(Phase.RCPT), "AUTH PLAIN", "503 5.5.1 Bad sequence - AUTH not allowed in RCPT state"),
        (at(Phase.BDAT), "DATA", "503 5.5.1 Bad sequence - DATA not allowed in BDAT state"),
        (at(Phase.RCPT, recipients=()), "DATA", "503 5.5.1 Bad sequence of commands"),
        (at(Phase.RCPT, recipients=()), "BDAT 5 LAST", "503 5.5.1 Bad sequence of commands"),
        (at(Phase.MAIL, user="alice"), "AUTH PLAIN", "503 5.5.1 Already authenticated"),
    ],
)
def test_every_503_text(state: State, line: str, expected: str) -> None:
    new, _, out = run(state, line)
    assert out == (expected + "\r\n").encode()
    assert new == state


def test_503_before_any_greeting_carries_no_enhanced_code() -> None:
    _, _, out = run(State(), "RCPT TO:<a@example.com>")
    assert out == b"503 Bad sequence - RCPT not allowed in HELO state\r\n"


@pytest.mark.parametrize("line", ["DATA", "BDAT 1 LAST"])
def test_data_and_bdat_with_a_recipient_pass_the_recipient_check(line: str) -> None:
    _, outputs, _ = run(at(Phase.RCPT), line)
    assert not any(o == replies.NO_RECIPIENTS for o in outputs)


# -- 3.4: order of checks ---------------------------------------------------
@pytest.mark.parametrize("verb", sorted(protocol.UNIMPLEMENTED_VERBS))
@pytest.mark.parametrize("phase", list(Phase))
def test_well_known_unimplemented_verbs_get_502_everywhere(verb: str, phase: Phase) -> None:
    for line in (verb, f"{verb} some args", f"{verb.lower()} x"):
        new, _, out = run(at(phase), line)
        expected = b"502 5.5.1 Command not implemented\r\n" if phase is not Phase.HELO else (
            b"502 Command not implemented\r\n"
        )
        assert out == expected
        assert new == at(phase)


@pytest.mark.parametrize("verb", ["XYZZY", "MAILX", "EHLOO", "HELLO", "STARTTLS2", "BDAT5", "X"])
@pytest.mark.parametrize("phase", list(Phase))
def test_unknown_verbs_get_500_everywhere(verb: str, phase: Phase) -> None:
    new, _, out = run(at(phase), f"{verb} FROM:<a@example.com>")
    expected = b"500 5.5.2 Command not recognised\r\n" if phase is not Phase.HELO else (
        b"500 Command not recognised\r\n"
    )
    assert out == expected
    assert new == at(phase)


def test_verbs_are_case_insensitive() -> None:
    new, _, out = run(at(Phase.MAIL), "mail from:<a@example.com>")
    assert out == b"250 2.1.0 OK\r\n"
    assert new.phase is Phase.RCPT


def test_sequence_error_wins_over_argument_error() -> None:
    _, _, out = run(State(), "MAIL")
    assert out == b"503 Bad sequence - MAIL not allowed in HELO state\r\n"
    _, _, out = run(at(Phase.MAIL), "MAIL")  # twin: in its state the 501 shows
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"


def test_sequence_and_argument_errors_win_over_triggers() -> None:
    armed = at(Phase.RCPT, armed=triggers.address_trigger("auth535@example.com"))
    _, outputs, out = run(armed, "AUTH PLAIN")  # AUTH not allowed in RCPT
    assert out == b"503 5.5.1 Bad sequence - AUTH not allowed in RCPT state\r\n"
    assert not any(isinstance(o, Log) for o in outputs)
    _, outputs, out = run(replace(armed, phase=Phase.MAIL), "AUTH")  # no argument
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"
    _, outputs, out = run(replace(armed, phase=Phase.MAIL), "AUTH PLAIN")  # twin: fires
    assert out == b"535 Authentication failed\r\n"
    assert any(isinstance(o, Log) for o in outputs)


def test_malformed_mail_from_never_fires_a_trigger() -> None:
    _, outputs, out = run(at(Phase.MAIL), "MAIL FROM:<mail550@@example.com>")
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"
    assert effects(outputs) == []


# -- 3.5: argument checks -------------------------------------------------------
@pytest.mark.parametrize(
    "phase, line",
    [
        (Phase.HELO, "HELO"),
        (Phase.HELO, "EHLO"),
        (Phase.MAIL, "HELO"),
        (Phase.MAIL, "EHLO"),
        (Phase.MAIL, "AUTH"),
        (Phase.MAIL, "MAIL"),
        (Phase.MAIL, "MAIL TO:<a@example.com>"),
        (Phase.MAIL, "MAIL FROM <a@example.com>"),
        (Phase.MAIL, "MAIL FROM"),
        (Phase.MAIL, "MAIL FROM:"),
        (Phase.MAIL, "MAIL <a@example.com>"),
        (Phase.RCPT, "RCPT"),
        (Phase.RCPT, "RCPT FROM:<a@example.com>"),
        (Phase.RCPT, "RCPT TO <a@example.com>"),
        (Phase.RCPT, "RCPT TO:"),
        (Phase.RCPT, "BDAT"),
        (Phase.RCPT, "BDAT x"),
        (Phase.RCPT, "BDAT -1"),
        (Phase.RCPT, "BDAT 1.5"),
        (Phase.RCPT, "BDAT 0x10"),
        (Phase.RCPT, "BDAT ++5"),
        (Phase.RCPT, "BDAT \u0665"),  # a non-ASCII digit is not a size
        (Phase.HELO, "VRFY"),
        (Phase.MAIL, "VRFY"),
    ],
)
def test_argument_check_failures_get_501(phase: Phase, line: str) -> None:
    state = at(phase)
    new, outputs, out = run(state, line)
    enhanced = phase is not Phase.HELO and not line.startswith(("HELO", "EHLO"))
    assert out == (b"501 5.5.4 Syntax error in parameters\r\n" if enhanced else (
        b"501 Syntax error in parameters\r\n"
    ))
    assert new == state
    assert effects(outputs) == []


@pytest.mark.parametrize("phase", [Phase.HELO, Phase.MAIL, Phase.RCPT])
@pytest.mark.parametrize("line", ["BDAT 5 FOO", "BDAT 5 LAS", "BDAT 5", "BDAT +5 LAST"])
def test_a_refused_bdat_with_a_size_still_reads_its_chunk(phase: Phase, line: str) -> None:
    """RFC 3030 §2: whatever refuses a BDAT (sequence, no recipients,
    syntax), its chunk's octets follow and are read, never parsed."""
    state = at(phase, recipients=()) if phase is Phase.RCPT else at(phase)
    new, outputs, out = run(state, line)
    assert out[:4] in (b"501 ", b"503 ")
    assert new == state
    assert [type(o) for o in outputs] == [protocol.DiscardChunk]
    assert outputs[0].size == 5  # type: ignore[union-attr]


def test_a_refused_bdat_in_the_middle_of_a_message_ends_the_transaction() -> None:
    """RFC 3030 §2: the message failed; later chunks must not complete it."""
    state = at(Phase.BDAT)
    new, outputs, out = run(state, "BDAT 5 LAS")
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"
    assert (new.phase, new.sender, new.recipients) == (Phase.MAIL, None, ())
    assert [type(o) for o in outputs] == [protocol.Abort, protocol.DiscardChunk]


@pytest.mark.parametrize(
    "phase, line",
    [
        (Phase.MAIL, "NOOP foo"),
        (Phase.MAIL, "QUIT now"),
        (Phase.RCPT, "DATA x"),
        (Phase.RCPT, "RSET y"),
        (Phase.MAIL, "STARTTLS z"),
        (Phase.MAIL, "HELP MAIL"),
        (Phase.MAIL, "MAIL from:<a@example.com>"),
        (Phase.MAIL, "MAIL From: <a@example.com> SIZE=10 BODY=8BITMIME"),
        (Phase.RCPT, "RCPT to:<b@example.com> NOTIFY=NEVER"),
        (Phase.RCPT, "BDAT 5"),
        (Phase.RCPT, "BDAT +5 last"),
        (Phase.RCPT, "BDAT 0 LAST extra ignored"),
        (Phase.MAIL, "HELO a b c"),
    ],
)
def test_argument_checks_pass(phase: Phase, line: str) -> None:
    _, _, out = run(at(phase), line)
    assert not out.startswith(b"501")


# -- 7.1 / 0.1 / 0.2: paths ---------------------------------------------------------
@pytest.mark.parametrize(
    "line, sender",
    [
        ("MAIL FROM:<a@example.com>", "a@example.com"),
        ("MAIL FROM: <a@example.com>", "a@example.com"),
        ("MAIL FROM:a@example.com", "a@example.com"),
        ("MAIL FROM:<a@example.com", "a@example.com"),
        ("MAIL FROM: a@example.com SIZE=5", "a@example.com"),
        ("MAIL FROM:<>", ""),
        ("MAIL FROM: <>", ""),
        ("MAIL FROM:<> BODY=7BIT", ""),
    ],
)
def test_mail_from_paths(line: str, sender: str) -> None:
    new, _, out = run(at(Phase.MAIL), line)
    assert out == b"250 2.1.0 OK\r\n"
    assert new.phase is Phase.RCPT
    assert new.sender == sender
    assert new.recipients == ()


def test_null_sender_skips_trigger_matching_and_disarms() -> None:
    state = at(Phase.MAIL, armed=triggers.address_trigger("noop550@example.com"))
    new, outputs, out = run(state, "MAIL FROM:<>")
    assert out == b"250 2.1.0 OK\r\n"
    assert new.armed is None
    assert effects(outputs) == []


@pytest.mark.parametrize(
    "line, recipient",
    [
        ("RCPT TO:<b@example.com>", "b@example.com"),
        ("RCPT TO: <b@example.com>", "b@example.com"),
        ("RCPT TO:b@Example.COM", "b@example.com"),
        ("RCPT TO:<B@EXAMPLE.com> NOTIFY=SUCCESS ORCPT=rfc822;x@y", "B@example.com"),
    ],
)
def test_rcpt_to_paths(line: str, recipient: str) -> None:
    new, _, out = run(at(Phase.RCPT), line)
    assert out == b"250 2.1.5 OK\r\n"
    assert new.recipients == (RCPT1, recipient)


# -- 7.3: validation ------------------------------------------------------------
VALID = [
    "user@example.com",
    "first.last@example.com",
    "a..b@example.com",
    ".dot.@example.com",
    "user+tag@example.com",
    "!#$%&'*+/=?^_`{|}~-@example.com",
    '"quoted local"@example.com',  # cannot carry a space on a line: use one token
    '"x"@example.com',
    '"a@b"@example.com',
    '"a\\"b"@example.com',  # quoted pairs (RFC 5321 §4.1.2)
    '"\\\\"@example.com',
    '"!#[]~"@example.com',
    "user@exa_mple.com",
    "user@example",
    "user@[192.0.2.1]",
    "user@[IPv6:2001:db8::1]",
    "user@münchen.de",
    "user@例え.jp",
    "user@exämple.com",
]
INVALID = [
    "user",
    "user@",
    "@example.com",
    "user@@example.com",
    "user@example..com",
    "user@.example.com",
    "user@example.com.",
    "user(x)@example.com",
    "Alice<a@b.com>",
    'a"b@example.com',
    "user@[300.1.1.1]",
    "user@[IPv6:nonsense]",
    "user@exa mple.com",
    "us\ufffder@example.com",
    '"a\tb"@example.com',  # a tab separates tokens: the path is '"a'
    "user@[IPv6:fe80::1%eth0]",  # RFC 5321 §4.1.3: an IPv6 literal has no zone
]
# Octets no address may hold: a control character anywhere, or inside quotes
# anything but qtextSMTP and quoted pairs of %d32-126 (RFC 5321 §4.1.2; 0.19).
# These get the verb's own 501 5.1.7 / 5.1.3.
FORBIDDEN = [
    '""@example.com',
    "us\x00er@example.com",
    "user@ex\x00ample.com",
    '"x\rX-Injected:yes\rSubject:forged"@example.com',
    '"x\nX-Injected:yes"@example.com',
    '"a\x00b"@example.com',
    '"a\x7fb"@example.com',
    '"a\\\x01"@example.com',
    '"a\\"@example.com',
    '"a"b"@example.com',
    '"a\x85b"@example.com',  # a C1 control: never, not even under SMTPUTF8
    '"a\u009fb"@example.com',
    # A control octet anywhere: domain, address literal (no IPv6 zone, RFC 5321 §4.1.3).
    "user@exa\rmple.com",
    "user@[IPv6:::1%\rX-Injected:yes]",
    "user@[192.0.2.1\r]",
]


@pytest.mark.parametrize("address", [a for a in VALID if " " not in a])
def test_valid_addresses_are_accepted(address: str) -> None:
    new, _, out = run(at(Phase.MAIL), f"MAIL FROM:<{address}>")
    assert out == b"250 2.1.0 OK\r\n", address
    assert new.phase is Phase.RCPT


@pytest.mark.parametrize("address", [a for a in INVALID if " " not in a])
def test_invalid_addresses_get_501(address: str) -> None:
    state = at(Phase.MAIL)
    new, _, out = run(state, f"MAIL FROM:<{address}>")
    assert out == b"501 5.5.4 Syntax error in parameters\r\n", address
    assert new == state


@pytest.mark.parametrize("address", [a for a in INVALID if " " not in a])
def test_invalid_addresses_get_501_as_recipients_too(address: str) -> None:
    state = at(Phase.RCPT)
    new, _, out = run(state, f"RCPT TO:<{address}>")
    assert out == b"501 5.5.4 Syntax error in parameters\r\n", address
    assert new == state


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_octets_get_the_bad_mailbox_syntax_codes(address: str) -> None:
    for phase, line, enhanced in ((Phase.MAIL, "MAIL FROM:", "5.1.7"), (Phase.RCPT, "RCPT TO:", "5.1.3")):
        state = at(phase)
        new, outputs, out = run(state, f"{line}<{address}>")
        assert out == f"501 {enhanced} Syntax error in parameters\r\n".encode(), address
        assert new == state and effects(outputs) == []
        helo = replace(state, caps=triggers.HELO_CAPABILITIES)  # plain after HELO
        assert run(helo, f"{line}<{address}>")[2] == b"501 Syntax error in parameters\r\n"


@pytest.mark.parametrize("address", ["usér@example.com", "用户@例え.jp", "ユーザー@example.com", "a٥@x.org"])
def test_non_ascii_local_part_needs_smtputf8(address: str) -> None:
    _, _, out = run(at(Phase.MAIL), f"MAIL FROM:<{address}>")
    assert out == b"250 2.1.0 OK\r\n"
    helo = at(Phase.MAIL, caps=triggers.HELO_CAPABILITIES)
    _, _, out = run(helo, f"MAIL FROM:<{address}>")
    assert out == b"501 Syntax error in parameters\r\n"
    no_utf8 = triggers.ehlo_capabilities("nosmtputf8.example", False, "badsmtp.test")
    _, _, out = run(at(Phase.MAIL, caps=no_utf8), f"MAIL FROM:<{address}>")
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"


def test_non_ascii_in_quotes_needs_smtputf8() -> None:
    """RFC 6531 §3.3 adds UTF-8 to qtextSMTP only under SMTPUTF8; without
    it, a quoted local part holding it is outside qtextSMTP (5.1.7/5.1.3)."""
    address = '"jösé"@example.com'
    assert run(at(Phase.MAIL), f"MAIL FROM:<{address}>")[2] == b"250 2.1.0 OK\r\n"
    no_utf8 = triggers.ehlo_capabilities("nosmtputf8.example", False, "badsmtp.test")
    _, _, out = run(at(Phase.MAIL, caps=no_utf8), f"MAIL FROM:<{address}>")
    assert out == b"501 5.1.7 Syntax error in parameters\r\n"
    _, _, out = run(at(Phase.RCPT, caps=no_utf8), f"RCPT TO:<{address}>")
    assert out == b"501 5.1.3 Syntax error in parameters\r\n"


def test_idn_domain_is_accepted_without_smtputf8() -> None:
    helo = at(Phase.MAIL, caps=triggers.HELO_CAPABILITIES)
    _, _, out = run(helo, "MAIL FROM:<user@exämple.com>")
    assert out == b"250 OK\r\n"


@pytest.mark.parametrize(
    "phase, line, enhanced",
    [
        (Phase.MAIL, 'MAIL FROM:<"x\rX-Injected:yes\rSubject:forged"@example.com>', "5.1.7"),
        (Phase.MAIL, "MAIL FROM:<a@b\x00.example> SIZE=10", "5.1.7"),
        (Phase.RCPT, 'RCPT TO:<"x\rX-Injected:yes"@example.com>', "5.1.3"),
        (Phase.MAIL, "MAIL FROM:<>>", "5.5.4"),
        (Phase.MAIL, "MAIL FROM:<<>>", "5.5.4"),
        (Phase.RCPT, "RCPT TO:<>", "5.5.4"),
        (Phase.RCPT, "RCPT TO: <>", "5.5.4"),
    ],
)
def test_only_forbidden_octets_get_the_bad_mailbox_syntax_codes(phase: Phase, line: str, enhanced: str) -> None:
    # RFC 3463 §3.2: X.1.7 bad sender's / X.1.3 bad destination mailbox
    # address syntax for an octet no address may hold (RFC 5321 §4.1.2: not
    # qtextSMTP); any other malformed path keeps the plain 501 5.5.4.  Plain
    # after HELO.
    state = at(phase)
    new, outputs, out = run(state, line)
    assert out == f"501 {enhanced} Syntax error in parameters\r\n".encode()
    assert new == state and effects(outputs) == []
    helo = replace(state, caps=triggers.HELO_CAPABILITIES)
    assert run(helo, line)[2] == b"501 Syntax error in parameters\r\n"


def test_quoted_control_octet_in_vrfy_is_a_plain_syntax_error() -> None:
    # VRFY is neither MAIL nor RCPT: its 501 keeps 5.5.4.
    _, _, out = run(at(Phase.MAIL), 'VRFY <"exists\x01"@example.com>')
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"
    _, _, out = run(at(Phase.MAIL), 'VRFY <"exists\\"x"@example.com>')  # twin: a quoted pair
    assert out == b"550 5.1.1 Requested action not taken: mailbox unavailable\r\n"


def test_refused_addresses_are_not_cached() -> None:
    bad = '"x\rX-Injected:yes"@example.com'
    for _ in range(2):  # the lru_cache never remembers a refusal
        with pytest.raises(ReplyError) as info:
            commands.checked(bad, True, replies.BAD_SENDER)
        assert info.value.reply == replies.BAD_SENDER
    with pytest.raises(ReplyError) as info:
        commands.checked(bad, True, replies.BAD_RECIPIENT)
    assert info.value.reply == replies.BAD_RECIPIENT
    assert commands.checked('"x X"@Example.COM', True, replies.BAD_SENDER) == '"x X"@example.com'


@pytest.mark.parametrize("address", ["us\u2603er@example.com", "us\u00a0er@example.com", "u\u0301@example.com"])
def test_non_ascii_symbols_are_refused_even_with_smtputf8(address: str) -> None:
    _, _, out = run(at(Phase.MAIL), f"MAIL FROM:<{address}>")
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"


# -- 7.4: normalisation ---------------------------------------------------------
@pytest.mark.parametrize(
    "address, normal",
    [
        ("User@Example.COM", "User@example.com"),
        ("MiXeD.Case@EXAMPLE.ORG", "MiXeD.Case@example.org"),
        ('"Quoted"@Example.com', '"Quoted"@example.com'),
        ("x@MÜNCHEN.DE", "x@münchen.de"),
        ("a@[IPv6:2001:DB8::1]", "a@[ipv6:2001:db8::1]"),
    ],
)
def test_addresses_are_normalised(address: str, normal: str) -> None:
    new, _, _ = run(at(Phase.MAIL), f"MAIL FROM:<{address}>")
    assert new.sender == normal
    new, _, _ = run(at(Phase.RCPT), f"RCPT TO:<{address}>")
    assert new.recipients[-1] == normal


# -- 6.2: the trigger grammar ------------------------------------------------------
@pytest.mark.parametrize(
    "address, verb, code, enhanced",
    [
        ("mail550@example.com", "mail", 550, None),
        ("MAIL500@EXAMPLE.COM", "mail", 500, None),
        ("mail550_5.7.509@example.net", "mail", 550, "5.7.509"),
        ("mail550_12.345.6789@example.net", "mail", 550, "12.345.6789"),
        ("mail550_4.1.1@example.net", "mail", 550, "4.1.1"),
        ("rcpt452@example.net", "rcpt", 452, None),
        ("data554@example.net", "data", 554, None),
        ("rset000@example.net", "rset", 0, None),
        ("noop999@example.net", "noop", 999, None),
        ("quit421@example.net", "quit", 421, None),
        ("starttls454@example.net", "starttls", 454, None),
        ("Auth535_5.7.8@example.net", "auth", 535, "5.7.8"),
    ],
)
def test_trigger_addresses(address: str, verb: str, code: int, enhanced: str | None) -> None:
    trigger = triggers.address_trigger(address)
    assert trigger is not None
    assert (trigger.verb, trigger.reply.code, trigger.reply.enhanced) == (verb, code, enhanced)


@pytest.mark.parametrize(
    "address",
    [
        "550@example.com",
        "xmail550@example.com",
        "test452@example.com",
        "mail45@example.com",
        "mail4521@example.com",
        "mail550_57@example.com",
        "rcpt550_5712@example.com",
        "mail550_5.7@example.com",
        "mail550_5.7.1.2@example.com",
        "mail550x@example.com",
        "bdat550@example.com",
        "helo550@example.com",
        "ehlo550@example.com",
        "mail 550@example.com",
        '"mail550"@example.com',
        "mail\u0665\u0665\u0660@example.com",  # Arabic-Indic digits are not ddd
        "mail550_\u0665.1.1@example.com",
        "user@mail550.example.com",
    ],
)
def test_non_trigger_addresses(address: str) -> None:
    assert triggers.address_trigger(address) is None


@pytest.mark.parametrize("code, text", sorted(replies.TRIGGER_TEXTS.items()))
def test_trigger_texts(code: int, text: str) -> None:
    state, _, out = run(at(Phase.MAIL), f"MAIL FROM:<mail{code:03d}@example.com>")
    assert out == f"{code:03d} {text}\r\n".encode()
    assert state == at(Phase.MAIL)  # the trigger replaces the command


def test_trigger_text_table_is_the_spec_table() -> None:
    assert replies.TRIGGER_TEXTS == {
        421: "Service not available, closing transmission channel",
        450: "Requested mail action not taken: mailbox unavailable",
        451: "Requested action aborted: local error in processing",
        452: "Requested action not taken: insufficient system storage",
        454: "Command not implemented",
        500: "Syntax error, command unrecognized",
        501: "Syntax error in parameters or arguments",
        502: "Command not implemented",
        503: "Bad sequence of commands",
        504: "Command parameter not implemented",
        521: "Machine does not accept mail",
        535: "Authentication failed",
        550: "Requested action not taken: mailbox unavailable",
        551: "User not local; please try forward path",
        552: "Requested mail action aborted: exceeded storage allocation",
        553: "Requested action not taken: mailbox name not allowed",
        554: "Transaction failed",
        571: "Blocked - see https://example.com/blocked",
    }


@pytest.mark.parametrize("code", [0, 1, 200, 250, 299, 354, 422, 449, 505, 570, 600, 999])
def test_codes_outside_the_table_are_unknown_errors(code: int) -> None:
    _, _, out = run(at(Phase.MAIL), f"MAIL FROM:<mail{code:03d}@example.com>")
    assert out == f"{code:03d} Unknown error\r\n".encode()


@pytest.mark.parametrize(
    "address, enhanced_on, enhanced_off",
    [
        ("mail452@example.net", b"452 Requested action not taken: insufficient system storage\r\n", None),
        ("mail550_5.7.509@example.net", b"550 5.7.509 Requested action not taken: mailbox unavailable\r\n",
         b"550 Requested action not taken: mailbox unavailable\r\n"),
        ("mail571@example.net", b"571 Blocked - see https://example.com/blocked\r\n", None),
        ("mail999@example.net", b"999 Unknown error\r\n", None),
        ("mail550_5.1.1@example.com", b"550 5.1.1 Requested action not taken: mailbox unavailable\r\n",
         b"550 Requested action not taken: mailbox unavailable\r\n"),
    ],
)
def test_trigger_reply_format(address: str, enhanced_on: bytes, enhanced_off: bytes | None) -> None:
    _, _, out = run(at(Phase.MAIL), f"MAIL FROM:<{address}>")
    assert out == enhanced_on
    for caps in (
        triggers.HELO_CAPABILITIES,
        triggers.ehlo_capabilities("noenhancedstatuscodes.example", False, "badsmtp.test"),
    ):
        _, _, out = run(at(Phase.MAIL, caps=caps), f"MAIL FROM:<{address}>")
        assert out == (enhanced_off or enhanced_on)


def test_mail_trigger_logs_and_opens_no_transaction() -> None:
    state = at(Phase.MAIL)
    new, outputs, out = run(state, "MAIL FROM:<mail250@Example.COM>")
    assert out == b"250 Unknown error\r\n"
    assert new == state
    assert effects(outputs) == [protocol.fired("mail250@example.com", 250, "MAIL")]
    _, _, out = run(new, "RCPT TO:<b@example.com>")
    assert out == b"503 5.5.1 Bad sequence - RCPT not allowed in MAIL state\r\n"


def test_ordinary_address_with_digits_is_accepted() -> None:
    new, outputs, out = run(at(Phase.MAIL), "MAIL FROM:<550@example.com>")
    assert out == b"250 2.1.0 OK\r\n"
    assert new.armed is None and effects(outputs) == []


# -- 6.5: arming -----------------------------------------------------------------
@pytest.mark.parametrize("verb", ["rcpt", "data", "rset", "noop", "quit", "starttls", "auth"])
def test_mail_from_arms_deferred_triggers(verb: str) -> None:
    new, outputs, out = run(at(Phase.MAIL), f"MAIL FROM:<{verb}550@example.com>")
    assert out == b"250 2.1.0 OK\r\n"
    assert new.armed == Trigger(verb, replies.trigger_reply(550, None), f"{verb}550@example.com")
    assert effects(outputs) == []


def test_accepted_mail_from_replaces_the_armed_trigger() -> None:
    state = at(Phase.MAIL, armed=triggers.address_trigger("noop550@example.com"))
    new, _, _ = run(state, "MAIL FROM:<rset451@example.com>")
    assert new.armed is not None and new.armed.verb == "rset"
    new, _, _ = run(state, "MAIL FROM:<plain@example.com>")
    assert new.armed is None


@pytest.mark.parametrize(
    "line",
    [
        "MAIL FROM:<bad>",
        "MAIL FROM:<mail550@example.com>",
        "MAIL FROM:<a@example.com> SIZE=99999999999",
        "MAIL",
    ],
)
def test_rejected_mail_from_leaves_the_armed_trigger(line: str) -> None:
    armed = triggers.address_trigger("noop550@example.com")
    state = at(Phase.MAIL, armed=armed)
    new, _, out = run(state, line)
    assert out.startswith((b"5",)), out
    assert new.armed == armed


def test_transaction_over_clears_envelope_and_trigger() -> None:
    state = at(Phase.BDAT, armed=triggers.address_trigger("noop550@example.com"), user="u", messages=2)
    over = transaction_over(state)
    assert (over.phase, over.sender, over.recipients, over.armed) == (Phase.MAIL, None, (), None)
    assert (over.user, over.caps, over.messages) == ("u", state.caps, 2)


# -- deferred triggers firing (badsmtp(1), ERROR TRIGGERS) ---------------------------
@pytest.mark.parametrize(
    "verb, phase, line",
    [
        ("data", Phase.RCPT, "DATA"),
        ("rset", Phase.RCPT, "RSET"),
        ("rset", Phase.BDAT, "RSET"),
        ("rset", Phase.MAIL, "RSET"),
        ("noop", Phase.MAIL, "NOOP"),
        ("noop", Phase.RCPT, "NOOP"),
        ("noop", Phase.BDAT, "NOOP"),
        ("quit", Phase.RCPT, "QUIT"),
        ("starttls", Phase.MAIL, "STARTTLS"),
        ("starttls", Phase.RCPT, "STARTTLS"),  # inside the transaction too (RFC 3207)
        ("auth", Phase.MAIL, "AUTH FOO"),
    ],
)
def test_armed_trigger_fires_on_its_command_and_stays(verb: str, phase: Phase, line: str) -> None:
    armed = triggers.address_trigger(f"{verb}550_5.7.1@example.com")
    state = at(phase, armed=armed)
    new, outputs, out = run(state, line)
    assert out == b"550 5.7.1 Requested action not taken: mailbox unavailable\r\n"
    assert new == state  # nothing carried out, still armed
    logged = [o for o in outputs if isinstance(o, Log)]
    assert logged == [protocol.fired(f"{verb}550_5.7.1@example.com", 550, line.split()[0])]
    expected_effects: list[object] = [logged[0]] + ([Close()] if verb == "quit" else [])
    assert effects(outputs) == expected_effects


@pytest.mark.parametrize(
    "verb, phase, line, reply",
    [
        ("noop", Phase.RCPT, "RSET", b"250 2.0.0 OK\r\n"),
        ("rset", Phase.MAIL, "NOOP", b"250 2.0.0 OK\r\n"),
        ("data", Phase.RCPT, "NOOP", b"250 2.0.0 OK\r\n"),
        ("quit", Phase.MAIL, "NOOP", b"250 2.0.0 OK\r\n"),
        ("auth", Phase.MAIL, "STARTTLS", b"220 2.0.0 Ready to start TLS\r\n"),
        ("starttls", Phase.MAIL, "AUTH FOO", b"504 5.5.4 Authentication mechanism not supported\r\n"),
        ("noop", Phase.RCPT, "STARTTLS", b"503 5.5.1 Bad sequence - STARTTLS not allowed in RCPT state\r\n"),
        ("starttls", Phase.BDAT, "STARTTLS", b"503 5.5.1 Bad sequence - STARTTLS not allowed in BDAT state\r\n"),
        ("auth", Phase.RCPT, "AUTH PLAIN", b"503 5.5.1 Bad sequence - AUTH not allowed in RCPT state\r\n"),
        ("auth", Phase.BDAT, "AUTH PLAIN", b"503 5.5.1 Bad sequence - AUTH not allowed in BDAT state\r\n"),
    ],
)
def test_armed_trigger_ignores_other_commands(verb: str, phase: Phase, line: str, reply: bytes) -> None:
    state = at(phase, armed=triggers.address_trigger(f"{verb}550@example.com"))
    _, outputs, out = run(state, line)
    assert out == reply
    assert not any(isinstance(o, Log) for o in outputs)


def test_rcpt_trigger_in_mail_from_answers_every_rcpt() -> None:
    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<rcpt550_5.1.1@example.net>")
    for rcpt in ("user@example.net", "other@example.net", "mail550@example.net"):
        state, outputs, out = run(state, f"RCPT TO:<{rcpt}>")
        assert out == b"550 5.1.1 Requested action not taken: mailbox unavailable\r\n"
        assert protocol.fired("rcpt550_5.1.1@example.net", 550, "RCPT") in outputs
    # The recipient's own pattern wins.
    state, outputs, out = run(state, "RCPT TO:<rcpt452@example.net>")
    assert out == b"452 Requested action not taken: insufficient system storage\r\n"
    assert protocol.fired("rcpt452@example.net", 452, "RCPT") in outputs
    # Address checks come first.
    state, _, out = run(state, "RCPT TO:<bad>")
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"
    assert state.recipients == ()
    _, _, out = run(state, "DATA")
    assert out == b"503 5.5.1 Bad sequence of commands\r\n"


def test_rcpt_trigger_in_rcpt_to_answers_that_recipient_alone() -> None:
    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<user@example.net>")
    state, _, out = run(state, "RCPT TO:<rcpt550_5.1.1@example.net>")
    assert out == b"550 5.1.1 Requested action not taken: mailbox unavailable\r\n"
    state, _, out = run(state, "RCPT TO:<rcpt452@example.net>")
    assert out == b"452 Requested action not taken: insufficient system storage\r\n"
    state, _, out = run(state, "RCPT TO:<nobody@example.net>")
    assert out == b"250 2.1.5 OK\r\n"
    assert state.recipients == ("nobody@example.net",)
    _, outputs, out = run(state, "DATA")
    assert out == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    assert effects(outputs) == [ReadData()]


@pytest.mark.parametrize("address", ["mail550@example.com", "data554@example.com", "bdat550@example.com"])
def test_other_patterns_in_rcpt_to_are_inert(address: str) -> None:
    new, outputs, out = run(at(Phase.RCPT), f"RCPT TO:<{address}>")
    assert out == b"250 2.1.5 OK\r\n"
    assert new.recipients[-1] == address and effects(outputs) == []


def test_data_trigger_keeps_the_transaction_open() -> None:
    state = at(Phase.RCPT, armed=triggers.address_trigger("data554@example.com"))
    new, outputs, out = run(state, "DATA")
    assert out == b"554 Transaction failed\r\n"
    assert new.phase is Phase.RCPT and not any(isinstance(o, ReadData) for o in outputs)


def test_data_trigger_does_not_affect_bdat_at_dispatch() -> None:
    # The chunk must be read first; the session judges LAST (RFC 3030 §2).
    state = at(Phase.RCPT, armed=triggers.address_trigger("data554@example.com"))
    _, outputs, out = run(state, "BDAT 3 LAST")
    assert out == b"" and outputs == [ReadChunk(3, True)]


# -- 9.1: recipient limit ---------------------------------------------------------
def test_recipient_limit() -> None:
    ctx = Context(max_recipients=3)
    state, _, _ = run(at(Phase.MAIL), "MAIL FROM:<a@example.com>", ctx)
    for i in range(3):
        state, _, out = run(state, f"RCPT TO:<r{i}@example.com>", ctx)
        assert out == b"250 2.1.5 OK\r\n"
    new, _, out = run(state, "RCPT TO:<r3@example.com>", ctx)
    assert out == b"452 4.5.3 Too many recipients\r\n"
    assert new.recipients == ("r0@example.com", "r1@example.com", "r2@example.com")
    # Duplicates count; the limit wins over a trigger; validation wins over the limit.
    _, outputs, out = run(new, "RCPT TO:<rcpt550@example.com>", ctx)
    assert out == b"452 4.5.3 Too many recipients\r\n" and effects(outputs) == []
    _, _, out = run(new, "RCPT TO:<bad>", ctx)
    assert out == b"501 5.5.4 Syntax error in parameters\r\n"
    _, _, out = run(replace(new, caps=triggers.HELO_CAPABILITIES), "RCPT TO:<r4@example.com>", ctx)
    assert out == b"452 Too many recipients\r\n"


def test_duplicate_recipients_are_kept() -> None:
    state = at(Phase.RCPT, recipients=())
    for _ in range(2):
        state, _, out = run(state, "RCPT TO:<same@example.com>")
        assert out == b"250 2.1.5 OK\r\n"
    assert state.recipients == ("same@example.com", "same@example.com")


# -- 8.2: SIZE= -------------------------------------------------------------------
@pytest.mark.parametrize(
    "limit_name, param, expected",
    [
        ("client.example", "SIZE=10485760", b"250 2.1.0 OK\r\n"),
        ("client.example", "SIZE=10485761", b"552 5.3.4 Message size exceeds fixed maximum of 10485760 bytes\r\n"),
        ("size1000.example", "size=1000", b"250 2.1.0 OK\r\n"),
        ("size1000.example", "size=1001", b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"),
        ("size1000.example", "SIZE=abc", b"250 2.1.0 OK\r\n"),
        ("size1000.example", "SIZE=", b"250 2.1.0 OK\r\n"),
        ("size1000.example", "SIZE=-5000", b"250 2.1.0 OK\r\n"),
        ("size1000.example", "XSIZE=5000", b"250 2.1.0 OK\r\n"),
        ("nosize.example", "SIZE=10485761", b"552 5.3.4 Message size exceeds fixed maximum of 10485760 bytes\r\n"),
    ],
)
def test_size_parameter(limit_name: str, param: str, expected: bytes) -> None:
    caps = triggers.ehlo_capabilities(limit_name, False, "badsmtp.test")
    state = at(Phase.MAIL, caps=caps)
    new, _, out = run(state, f"MAIL FROM:<a@example.com> {param}")
    assert out == expected
    assert new.phase is (Phase.RCPT if expected.startswith(b"250") else Phase.MAIL)


def test_size_parameter_after_helo_has_no_enhanced_code() -> None:
    state = at(Phase.MAIL, caps=triggers.HELO_CAPABILITIES)
    _, _, out = run(state, "MAIL FROM:<a@example.com> SIZE=10485761")
    assert out == b"552 Message size exceeds fixed maximum of 10485760 bytes\r\n"


def test_mail_trigger_wins_over_size() -> None:
    _, _, out = run(at(Phase.MAIL), "MAIL FROM:<mail451@example.com> SIZE=99999999999")
    assert out == b"451 Requested action aborted: local error in processing\r\n"


# -- HELO / EHLO (RFC 5321 §4.1.1.1) ------------------------------------------------------------
def test_helo_resets_the_transaction_but_keeps_triggers_auth_and_tls() -> None:
    armed = triggers.address_trigger("noop550@example.com")
    state = at(Phase.BDAT, armed=armed, user="alice", tls=True, messages=4)
    new, outputs, out = run(state, "HELO other.example")
    assert out == b"250 badsmtp.test\r\n"
    assert outputs[0] == Abort()
    assert (new.phase, new.sender, new.recipients, new.helo_name) == (Phase.MAIL, None, (), "other.example")
    assert (new.armed, new.user, new.tls, new.messages) == (armed, "alice", True, 4)
    assert new.caps == triggers.HELO_CAPABILITIES


def test_ehlo_recomputes_capabilities_and_keeps_triggers() -> None:
    armed = triggers.address_trigger("noop550@example.com")
    state = at(Phase.RCPT, armed=armed, user="alice")
    new, outputs, _ = run(state, "EHLO size5000-noenhancedstatuscodes.example")
    assert outputs[0] == Abort()
    assert new.phase is Phase.MAIL and new.armed == armed and new.user == "alice"
    assert new.caps.size_limit == 5000 and not new.caps.enhanced and new.caps.smtputf8


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
@pytest.mark.parametrize("phase", list(Phase))
def test_helo_ehlo_trigger_changes_nothing(verb: str, phase: Phase) -> None:
    state = at(phase)
    for name in ("helo550.example.com", "EHLO550.example.com"):
        new, outputs, _ = run(state, f"{verb} {name}")
        assert new == state
        assert outputs == [replies.trigger_reply(550, None), protocol.fired(name, 550, verb)]


@pytest.mark.parametrize("name", ["helo5001.example.com", "helo500example.com", "helo50.x", "xhelo500.x", "helo500"])
def test_helo_names_that_are_not_triggers(name: str) -> None:
    new, outputs, _ = run(State(), f"EHLO {name}")
    assert new.phase is Phase.MAIL and not any(isinstance(o, Log) for o in outputs)


@pytest.mark.parametrize("name", ["reject.example", "mx.noehl.example", "REJECTED-mail.example.org"])
def test_ehlo_reject_changes_nothing(name: str) -> None:
    for state in (State(), at(Phase.RCPT)):
        new, outputs, _ = run(state, f"EHLO {name}")
        assert new == state
        assert outputs == [replies.EHLO_REJECTED]


def test_helo_ignores_the_reject_keyword() -> None:
    new, _, out = run(State(), "HELO reject.example")
    assert out == b"250 badsmtp.test\r\n" and new.phase is Phase.MAIL


@pytest.mark.parametrize(
    "name, seconds",
    [
        ("dlay30.example.com", 30),
        ("size5000-dlay2.test", 2),
        ("mx_dlay7_x", 7),
        ("a.dlay1", 1),
        ("dlay605.x", 605),
        ("dlay606.x", 605),
        ("dlay99999999999999999999.x", 605),
        ("DLAY3.example", 3),
    ],
)
def test_dlay_waits_before_the_ehlo_reply(name: str, seconds: int) -> None:
    new, outputs, _ = run(State(), f"EHLO {name}")
    assert outputs[1:] == [Wait(seconds), new.caps.ehlo]
    assert new.caps.delay == seconds


@pytest.mark.parametrize(
    "name",
    ["notdlay123.x", "dlayabc.x", "dlay-5.x", "dlay0.x", "dlay5x.example", "xdlay5.example", "dlay\u0665.x", "client.example"],
)
def test_dlay_token_rules(name: str) -> None:
    new, outputs, _ = run(State(), f"EHLO {name}")
    assert not any(isinstance(o, Wait) for o in outputs)
    assert new.caps.delay is None


def test_helo_drops_the_dlay_delay() -> None:
    state, _, _ = run(State(), "EHLO dlay5.example")
    new, outputs, _ = run(state, "HELO dlay5.example")
    assert new.caps.delay is None and not any(isinstance(o, Wait) for o in outputs)


# -- effects of the other verbs ----------------------------------------------------
def test_data_asks_for_content() -> None:
    new, outputs, out = run(at(Phase.RCPT), "DATA")
    assert out == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    assert effects(outputs) == [ReadData()]
    assert new == at(Phase.RCPT)


@pytest.mark.parametrize(
    "line, chunk",
    [
        ("BDAT 0", ReadChunk(0, False)),
        ("BDAT 0 LAST", ReadChunk(0, True)),
        ("BDAT +12 last", ReadChunk(12, True)),
        ("BDAT 007", ReadChunk(7, False)),
        ("BDAT 5 LAST more", ReadChunk(5, True)),
    ],
)
def test_bdat_asks_for_a_chunk(line: str, chunk: ReadChunk) -> None:
    for phase in (Phase.RCPT, Phase.BDAT):
        new, outputs, out = run(at(phase), line)
        assert outputs == [chunk] and out == b"" and new == at(phase)


@pytest.mark.parametrize("phase", [Phase.MAIL, Phase.RCPT, Phase.BDAT])
def test_rset_resets_to_mail(phase: Phase) -> None:
    armed = triggers.address_trigger("noop550@example.com")
    new, outputs, out = run(at(phase, armed=armed, user="u"), "RSET")
    assert out == b"250 2.0.0 OK\r\n"
    assert outputs[0] == Abort()
    assert (new.phase, new.sender, new.recipients, new.armed, new.user) == (Phase.MAIL, None, (), armed, "u")
    assert new.caps == EHLO_CAPS


def test_rset_before_helo_stays_in_helo() -> None:
    new, _, out = run(State(), "RSET")
    assert out == b"250 OK\r\n" and new == State()


@pytest.mark.parametrize("phase", list(Phase))
def test_noop_and_quit(phase: Phase) -> None:
    state = at(phase)
    enhanced = phase is not Phase.HELO
    new, outputs, out = run(state, "NOOP anything")
    assert out == (b"250 2.0.0 OK\r\n" if enhanced else b"250 OK\r\n") and new == state
    new, outputs, out = run(state, "QUIT now")
    assert out == (b"221 2.0.0 Bye\r\n" if enhanced else b"221 Bye\r\n") and new == state
    assert effects(outputs) == [Close()]


def test_starttls() -> None:
    _, outputs, out = run(at(Phase.MAIL), "STARTTLS")
    assert out == b"220 2.0.0 Ready to start TLS\r\n" and effects(outputs) == [StartTLS()]
    _, outputs, out = run(State(), "STARTTLS z")
    assert out == b"220 Ready to start TLS\r\n" and effects(outputs) == [StartTLS()]
    _, outputs, out = run(at(Phase.MAIL, tls=True), "STARTTLS")
    assert out == b"554 5.5.1 TLS already started\r\n" and effects(outputs) == []


def test_starttls_trigger_wins_over_tls_already_started() -> None:
    state = at(Phase.MAIL, tls=True, armed=triggers.address_trigger("starttls454@example.com"))
    _, _, out = run(state, "STARTTLS")
    assert out == b"454 Command not implemented\r\n"


@pytest.mark.parametrize(
    "line, effect",
    [
        ("AUTH PLAIN", Authenticate("PLAIN", None)),
        ("AUTH plain AGEAYg==", Authenticate("PLAIN", "AGEAYg==")),
        ("AUTH login", Authenticate("LOGIN", None)),
        ("AUTH Cram-Md5 ignored", Authenticate("CRAM-MD5", "ignored")),
        ("AUTH CRAM-SHA256", Authenticate("CRAM-SHA256", None)),
        ("AUTH xoauth2 =", Authenticate("XOAUTH2", "=")),
    ],
)
def test_auth_starts_an_exchange(line: str, effect: Authenticate) -> None:
    for caps in (EHLO_CAPS, triggers.HELO_CAPABILITIES):
        _, outputs, out = run(at(Phase.MAIL, caps=caps), line)
        assert outputs == [effect] and out == b""


@pytest.mark.parametrize("mechanism", ["FOO", "GSSAPI", "PLAIN-X", "CRAM", "NTLM"])
def test_auth_unknown_mechanism(mechanism: str) -> None:
    _, _, out = run(at(Phase.MAIL), f"AUTH {mechanism}")
    assert out == b"504 5.5.4 Authentication mechanism not supported\r\n"


def test_auth_order_already_authenticated_before_trigger() -> None:
    state = at(Phase.MAIL, user="alice", armed=triggers.address_trigger("auth535@example.com"))
    _, _, out = run(state, "AUTH PLAIN")
    assert out == b"503 5.5.1 Already authenticated\r\n"


# -- VRFY / HELP (RFC 5321 §4.1.1.6, §4.1.1.8) ------------------------------------
@pytest.mark.parametrize(
    "line, reply",
    [
        ("VRFY exists@example.com", b"250 2.1.5 exists@example.com User exists\r\n"),
        ("VRFY Exists.User@Example.COM", b"250 2.1.5 Exists.User@example.com User exists\r\n"),
        ("VRFY <exists-1@example.com>", b"250 2.1.5 exists-1@example.com User exists\r\n"),
        ('VRFY "Alice Example" <exists@example.com>', b"250 2.1.5 exists@example.com User exists\r\n"),
        ("VRFY Alice <exists@example.com>", b"250 2.1.5 exists@example.com User exists\r\n"),
        ("VRFY please check 'exists@example.com', thanks", b"250 2.1.5 exists@example.com User exists\r\n"),
        ("VRFY unknown@example.com", b"551 5.1.6 User not local; please try forward path\r\n"),
        ("VRFY unknownfoo@example.com", b"551 5.1.6 User not local; please try forward path\r\n"),
        ("VRFY ambiguous2@example.com", b"553 5.1.4 Requested action not taken: mailbox name not allowed\r\n"),
        ("VRFY someone@example.com", b"550 5.1.1 Requested action not taken: mailbox unavailable\r\n"),
        ("VRFY mail550@example.com", b"550 5.1.1 Requested action not taken: mailbox unavailable\r\n"),
        ("VRFY nobody", b"501 5.5.4 Syntax error in parameters\r\n"),
        ("VRFY exists@", b"501 5.5.4 Syntax error in parameters\r\n"),
        ("VRFY exists@@example.com", b"501 5.5.4 Syntax error in parameters\r\n"),
        ("VRFY <>", b"501 5.5.4 Syntax error in parameters\r\n"),
    ],
)
def test_vrfy(line: str, reply: bytes) -> None:
    for phase in Phase:
        state = at(phase, caps=EHLO_CAPS)
        new, outputs, out = run(state, line)
        assert out == reply
        assert new == state and effects(outputs) == []


def test_vrfy_plain_forms_and_smtputf8() -> None:
    _, _, out = run(State(), "VRFY exists@example.com")
    assert out == b"250 exists@example.com User exists\r\n"
    _, _, out = run(State(), "VRFY existsé@example.com")
    assert out == b"501 Syntax error in parameters\r\n"
    _, _, out = run(at(Phase.MAIL), "VRFY existsé@example.com")
    assert out == "250 2.1.5 existsé@example.com User exists\r\n".encode()


@pytest.mark.parametrize(
    "line, reply",
    [
        # The whole string as [display name] <address>: an @ in the name is not the mailbox.
        ('VRFY "a@b" <exists@example.com>', b"250 2.1.5 exists@example.com User exists\r\n"),
        ("VRFY Alice (at a@b, work) <exists@example.com>", b"250 2.1.5 exists@example.com User exists\r\n"),
        ('VRFY "x\\" <y" <exists@example.com>', b"250 2.1.5 exists@example.com User exists\r\n"),
        # Otherwise the first token with an @, ends stripped of <>,'".
        ("VRFY 'exists@example.com'", b"250 2.1.5 exists@example.com User exists\r\n"),
        ("VRFY Alice@home <exists@example.com>", b"550 5.1.1 Requested action not taken: mailbox unavailable\r\n"),
        ("VRFY a (b <exists@example.com>", b"250 2.1.5 exists@example.com User exists\r\n"),
        # Deep nesting is bounded work and a plain 501, never a RecursionError.
        ("VRFY " + "(" * 2000 + "exists@example.com", b"501 5.5.4 Syntax error in parameters\r\n"),
        ("VRFY " + "(" * 2000 + " <exists@example.com>", b"250 2.1.5 exists@example.com User exists\r\n"),
        ("VRFY Alice " + "(" * 2000 + ")" * 2000 + " <exists@example.com>", b"250 2.1.5 exists@example.com User exists\r\n"),
    ],
    ids=["quoted-name-with-at", "comment-with-at", "quoted-pair", "single-quotes", "name-with-at",
         "unclosed-comment", "nested-token", "nested-unclosed-name", "nested-closed-name"],
)  # fmt: skip
def test_vrfy_extraction_is_bounded(line: str, reply: bytes) -> None:
    _, _, out = run(at(Phase.MAIL), line)
    assert out == reply


def test_vrfy_is_never_affected_by_triggers() -> None:
    state = at(Phase.MAIL, armed=triggers.address_trigger("noop550@example.com"))
    _, outputs, out = run(state, "VRFY unknown@example.com")
    assert out == b"551 5.1.6 User not local; please try forward path\r\n" and effects(outputs) == []


HELP_PLAIN = (
    b"214-BadSMTP - The Reliably Unreliable Mail Server\r\n"
    b"214-Errors: MAIL FROM:<mail550@example.com> makes MAIL fail with 550, and\r\n"
    b"214-mail550_5.1.1@example.com adds an enhanced code. The verbs rcpt, data,\r\n"
    b"214-rset, noop, quit, starttls and auth in MAIL FROM fail that later command;\r\n"
    b"214-RCPT TO:<rcpt550@example.com> fails that recipient alone.\r\n"
    b"214-EHLO helo500.example.com fails the EHLO itself.\r\n"
    b"214-Retries: rcpt451x2+tag@example.com fails twice on this server, then passes.\r\n"
    b"214-Transfer faults in MAIL FROM: dropafter<octets>@, noack@, slowack<seconds>@\r\n"
    b"214-Capabilities: words in the EHLO name switch them: noauth authplain\r\n"
    b"214-authlogin authcram authoauth no8bit nosize size<n> nopipelining\r\n"
    b"214-nostarttls nochunking nosmtputf8 noenhancedstatuscodes dlay<seconds> reject\r\n"
    b"214-TLS faults: EHLO certexpired, certfuture, certwronghost, certselfsigned or\r\n"
    b"214-tlsabort, then STARTTLS; implicit TLS: ports 25800-25804, in that order\r\n"
    b"214-Broken replies: splitreplies bytereplies lfreplies longreplies mixedreplies\r\n"
    b"214-Ports: 3000-3099 delay the greeting, 4000-4099 every command, and\r\n"
    b"214-5000-5099 close the connection, by (port - first port) x 10 s;\r\n"
    b"214-6000 closes at once; 25465 is implicit TLS; 25587 is for STARTTLS\r\n"
    b"214 End of HELP\r\n"
)


def enhance_help(plain: bytes) -> bytes:
    return b"".join(line[:4] + b"2.0.0 " + line[4:] for line in plain.splitlines(keepends=True))


def test_help_with_the_default_context() -> None:
    # A bare Context answers HELP with the default port plan (badsmtp(1), PORT MAP).
    for phase in Phase:
        new, _, out = run(at(phase), "HELP MAIL")
        assert out == (HELP_PLAIN if phase is Phase.HELO else enhance_help(HELP_PLAIN))
        assert new == at(phase)


def test_help_shows_the_configured_ports() -> None:
    ctx = Context(help=replies.help_reply("13000-13099", "14000-14099", "15000-15099", "16000", "0", "41234"))
    _, _, out = run(at(Phase.MAIL, caps=triggers.HELO_CAPABILITIES), "HELP", ctx)
    assert b"214-Ports: 13000-13099 delay the greeting, 14000-14099 every command, and\r\n" in out
    assert b"214-15000-15099 close the connection" in out
    assert b"214-16000 closes at once; 0 is implicit TLS; 41234 is for STARTTLS\r\n" in out
    assert b"3000-3099" not in out


# -- robustness ---------------------------------------------------------------------
@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize(
    "args",
    [
        [],
        [""],
        ["\x00"],
        ["\ufffd\ufffd"],
        ["FROM:\x00"],
        ["TO:<\x00@x>"],
        ["FROM:<" + "a" * 5000 + "@example.com>"],
        ["FROM:<>", "SIZE=" + "9" * 4000],
        ["9" * 4000, "LAST"],
        ["size" + "9" * 4000 + ".example"],
        ["<", ">"],
        ["@"],
        ['"'],
        ["[", "]"],
    ],
)
def test_dispatch_never_raises_for_client_input(phase: Phase, args: list[str]) -> None:
    for verb in sorted(protocol.KNOWN_VERBS | {"EXPN", "\x00", "\ufffd"}):
        state, outputs = dispatch(at(phase), verb, list(args), CTX)
        assert isinstance(state, State)
        assert any(isinstance(o, (Reply, ReadChunk, DiscardChunk, Authenticate)) for o in outputs)


def test_reply_error_is_the_one_error_type() -> None:
    with pytest.raises(ReplyError) as exc:
        commands.validate_address("nope", smtputf8=True)
    assert exc.value.reply == replies.SYNTAX
