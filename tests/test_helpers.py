"""The shared test helpers do what the tests that use them assume."""

from __future__ import annotations

import pytest
from helpers import ROOT, split_command


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("NOOP", ("NOOP", [])),
        ("mail FROM:<a@example.com>", ("MAIL", ["FROM:<a@example.com>"])),
        ("Rcpt  \t TO:<B@Example.com> \tNOTIFY=NEVER", ("RCPT", ["TO:<B@Example.com>", "NOTIFY=NEVER"])),
        # Only spaces and tabs separate: the twins that str.split() would cut.
        ("VRFY a\xa0b@example.com", ("VRFY", ["a\xa0b@example.com"])),
        ("HELO x\u2028y", ("HELO", ["x\u2028y"])),
    ],
)
def test_split_command(line: str, expected: tuple[str, list[str]]) -> None:
    assert split_command(line) == expected


def test_root_is_the_checkout() -> None:
    assert (ROOT / "README.md").is_file() and (ROOT / "man" / "badsmtp.1").is_file()
