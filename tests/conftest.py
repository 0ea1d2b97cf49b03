"""Shared fixtures: a live server on an ephemeral loopback port, and a raw
client connected to it (``helpers.Client``, importable from here too)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import Client, serving
from hypothesis import HealthCheck, settings

from badsmtp import BadSMTP

# Property-based tests: bounded by default (seconds); ``--hypothesis-profile=long``
# fuzzes for as long as BADSMTP_FUZZ_EXAMPLES says (tests/test_fuzz_core.py).
_FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("bounded", max_examples=300, **_FUZZ)
settings.register_profile(
    "long", max_examples=int(os.environ.get("BADSMTP_FUZZ_EXAMPLES", "20000")), **_FUZZ
)
settings.load_profile("bounded")  # --hypothesis-profile, applied after this, wins


@pytest.fixture
def server() -> Iterator[BadSMTP]:
    """A running server on 127.0.0.1, port 0.  The test fails if the server
    recorded an internal error while it ran."""
    with serving(ports=[0]) as srv:
        yield srv


@pytest.fixture
def client(server: BadSMTP) -> Iterator[Client]:
    """A raw client connected to ``server``, greeting already read."""
    with Client(server.port) as c:
        assert c.reply().startswith(b"220 ")
        yield c
