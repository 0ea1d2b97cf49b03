"""What accepting connections needs besides the acceptor's loop: the listen
backlog the system allows."""

from __future__ import annotations

import socket

__all__ = ["max_backlog"]

SOMAXCONN_FILE = "/proc/sys/net/core/somaxconn"


def max_backlog(path: str = SOMAXCONN_FILE) -> int:
    """The largest accept queue the system grants a listening socket.

    Linux silently caps listen()'s backlog at ``net.core.somaxconn`` (listen(2)),
    which an administrator may have raised above ``socket.SOMAXCONN``, the
    value the C headers had when Python was built; elsewhere that constant is
    the best answer we have.  Clients beyond a full queue complete their TCP
    handshake and then wait for a greeting that never comes."""
    try:
        with open(path, encoding="ascii") as file:
            value = int(file.read())
    except (OSError, ValueError):
        return socket.SOMAXCONN
    return value if value > 0 else socket.SOMAXCONN
