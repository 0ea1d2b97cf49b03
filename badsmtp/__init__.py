"""badsmtp: the reliably unreliable SMTP server, for testing SMTP clients.

    from badsmtp import BadSMTP
    with BadSMTP(ports=[0]) as server:
        ...  # send mail to 127.0.0.1:server.port
        server.wait_for_messages(1)
"""

import logging

from .api import BadSMTP
from .builders import address, ehlo_name, fault_address, helo_trigger_name
from .config import Config, ConfigError, Listener, Role
from .extensions import (
    Authenticator,
    Authorizer,
    Delivery,
    MessageStore,
    RateLimiter,
    SessionContext,
    SessionObserver,
    User,
)
from .findings import Finding
from .storage import MailboxUnavailable, Message, QuotaExceeded, StorageError

__version__ = "0.1.0"

# A library never configures logging; the CLI does (badsmtp.log).
logging.getLogger("badsmtp").addHandler(logging.NullHandler())

__all__ = [
    "BadSMTP",
    "Config",
    "ConfigError",
    "Listener",
    "Role",
    "Message",
    "StorageError",
    "MailboxUnavailable",
    "QuotaExceeded",
    "MessageStore",
    "Delivery",
    "Authenticator",
    "SessionObserver",
    "RateLimiter",
    "Authorizer",
    "SessionContext",
    "User",
    "Transcript",
    "Finding",
    "address",
    "ehlo_name",
    "fault_address",
    "helo_trigger_name",
    "__version__",
]


def __getattr__(name: str) -> object:
    # Transcript lives in a module only an embedding that records needs: load
    # it on first use so the CLI starts without it (PEP 562).
    if name == "Transcript":
        from .transcript import Transcript

        return Transcript
    raise AttributeError(f"module 'badsmtp' has no attribute {name!r}")
