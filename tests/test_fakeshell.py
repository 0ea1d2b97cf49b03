"""The fake shell (``fakeshell.Wire``) and the action vocabulary cannot drift
apart: Wire runs every action type of :mod:`badsmtp.actions`, exactly the
pauses (and Close) end a batch, as in the server's handler, and Wire catches
a core that breaks the order rules the server relies on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_type_hints

import pytest
from fakeshell import DO, Wire, greeted

from badsmtp import actions, server
from badsmtp.actions import (
    Accepted,
    Action,
    Begin,
    Close,
    Envelope,
    ErrorSent,
    Log,
    Send,
    Wait,
)

VOCABULARY = {
    kind
    for name in actions.__all__
    if isinstance(kind := getattr(actions, name), type) and issubclass(kind, Action) and kind is not Action
}
TABLES = {"fakeshell": DO, "server": server._DO}
Table = dict[type, Callable[[Any, Any], list[Action] | None]]


def ends_its_batch(method: Callable[..., object]) -> bool:
    """A method that returns a list (the next batch) ends its batch; one
    that returns None lets the batch go on."""
    return get_type_hints(method)["return"] is not type(None)


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES)
def test_every_action_type_has_a_method(table: Table) -> None:
    assert Send in VOCABULARY  # the filter finds the actions (an Envelope is data, not one)
    assert set(table) == VOCABULARY


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES)
def test_exactly_the_pauses_and_close_end_their_batch(table: Table) -> None:
    ending = {kind for kind, method in table.items() if ends_its_batch(method)}
    assert ending == {*actions.PAUSES, Close}


def test_what_only_the_edges_hear_changes_nothing_on_the_wire() -> None:
    wire = greeted()
    heard = [Log("INFO", "x"), ErrorSent("550 no", "RCPT"), Accepted()]
    sent, batches = wire.sent, len(wire.batches)
    wire.run(heard)
    assert wire.actions[-3:] == heard and len(wire.batches) == batches + 1
    assert wire.sent == sent and not wire.closed


def test_an_action_type_without_a_method_is_caught() -> None:
    class Unheard(Action):
        __slots__ = ()

    with pytest.raises(AssertionError, match="the fake shell cannot run"):
        Wire().run([Unheard()])


# -- the order rules the server relies on -------------------------------------------
ENVELOPE = Envelope("a@example.com", ("b@example.com",), "client.example", False, None)


@pytest.mark.parametrize(
    "batch, message",
    [
        ([Send(b"")], "an empty send"),
        ([Close(), Send(b"250 OK\r\n")], "actions after Close"),
        ([Close(), Log("INFO", "x")], "actions after Close"),
        ([Wait(1.0), Send(b"250 OK\r\n")], "a pausing action ends its batch"),
        ([Begin(ENVELOPE), Begin(ENVELOPE)], "two open deliveries"),
    ],
)
def test_the_fake_shell_catches_a_broken_order(batch: list[Action], message: str) -> None:
    wire = greeted()
    with pytest.raises(AssertionError, match=message):
        wire.run(batch)


def test_nothing_is_sent_after_close() -> None:
    wire = greeted()
    wire.run([Close()])
    with pytest.raises(AssertionError, match="a send after Close"):
        wire.run([Send(b"250 OK\r\n")])


def test_the_order_rules_pass_a_good_batch() -> None:
    wire = greeted()  # twin of the above
    wire.run([Send(b"250 OK\r\n"), Log("INFO", "x"), Begin(ENVELOPE), Close()])
    assert wire.sent.endswith(b"250 OK\r\n") and wire.closed and wire.begun == [ENVELOPE]
