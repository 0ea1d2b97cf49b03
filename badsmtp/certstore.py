"""Generated certificates shared by processes (``badsmtp --workers``,
:mod:`badsmtp.supervisor`): each worker would otherwise make its own for a
name, and a client reconnecting would meet another certificate."""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from .certificate import VALIDITY

__all__ = ["SharedCertificates"]

_RENEW_BEFORE = datetime.timedelta(hours=1)  # as badsmtp.tls: never one about to expire


class SharedCertificates:
    """Generated certificates kept as files in a private directory, one per
    name, made under a lock that every process holding this store shares:
    the first process to need a name makes it, the others read it."""

    def __init__(self, directory: str, lock: AbstractContextManager[Any]) -> None:
        self.directory = directory
        self._lock = lock

    def get(
        self,
        name: str,
        now: datetime.datetime,
        make: Callable[[str, datetime.datetime], tuple[str, str]],
    ) -> tuple[str, str, datetime.datetime]:
        """``name``'s certificate and key, and when they were made: read, or
        made with ``make`` (and kept) when there is none or it is due for renewal."""
        path = os.path.join(self.directory, hashlib.sha256(name.encode()).hexdigest() + ".pem")
        with self._lock:
            try:
                made = datetime.datetime.fromtimestamp(int(os.stat(path).st_mtime), datetime.UTC)
                if now - made < VALIDITY - _RENEW_BEFORE:
                    with open(path, encoding="ascii") as file:
                        cert_pem, _, key_pem = file.read().partition("\0")
                    return cert_pem, key_pem, made
            except FileNotFoundError:
                pass
            cert_pem, key_pem = make(name, now)
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(cert_pem + "\0" + key_pem)
            os.replace(path + ".tmp", path)
            os.utime(path, (now.timestamp(), now.timestamp()))
            return cert_pem, key_pem, now
