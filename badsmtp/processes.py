"""What the processes of ``badsmtp --workers`` share or decide alone
(badsmtp(1), WORKERS): how many there are, which CPU each keeps to, a lock
between them, and the counts of the counted triggers."""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import sys
import tempfile
import threading

from .runtime import TriggerUses

__all__ = ["MAX_WORKERS", "ProcessLock", "SharedUses", "usable_cpus", "worker_count"]

MAX_WORKERS = 256


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def worker_count(text: str, can_fork: bool | None = None) -> int:
    """The number of worker processes ``--workers TEXT`` asks for: a whole
    number from 1 to :data:`MAX_WORKERS`, or ``auto`` (one per usable CPU).
    ValueError, with a line fit for the user, for anything else, and for
    more than one where there is no ``fork()`` (Windows)."""
    text = text.strip().lower()
    if text == "auto":
        count = usable_cpus()
    else:
        try:
            count = int(text)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError(f"workers must be auto or a number from 1 to {MAX_WORKERS}, not {text!r}")
    if can_fork is None:
        can_fork = hasattr(os, "fork")
    if count > 1 and not can_fork:
        raise ValueError(
            f"--workers {text} needs fork(), which this platform ({sys.platform}) does not have; "
            "run one badsmtp per CPU on ports of its own instead"
        )
    return count


class ProcessLock:
    """A lock between threads and processes: a threading lock (within a
    process) and ``lockf()`` on an unlinked temporary file (between them;
    the kernel releases it when its holder dies, so a killed worker cannot
    leave the others waiting).  Made before the fork, shared by the children."""

    def __init__(self) -> None:
        import fcntl

        self._lockf = fcntl.lockf
        self._exclusive, self._unlock = fcntl.LOCK_EX, fcntl.LOCK_UN
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the lock's life
        self._threads = threading.Lock()

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            self._lockf(self._file.fileno(), self._exclusive)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self._lockf(self._file.fileno(), self._unlock)
        finally:
            self._threads.release()

    def close(self) -> None:
        self._file.close()


_SLOT = struct.Struct("<QQ")  # a key's hash (0: free) and how often it fired


class SharedUses(TriggerUses):
    """How often each counted trigger (``x<N>``) fired, across every worker:
    an open-addressing table of 64-bit key hashes in an anonymous shared
    mapping, which forked workers all see.  Should its 65,536 slots ever be
    full, the keys that find none are counted per process."""

    SLOTS = 1 << 16

    def __init__(self) -> None:
        super().__init__()
        self._table = mmap.mmap(-1, self.SLOTS * _SLOT.size)  # MAP_SHARED | MAP_ANONYMOUS
        self._guard = ProcessLock()

    @staticmethod
    def _hash(key: str) -> int:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1

    def take(self, key: str, times: int) -> bool:
        wanted = self._hash(key)
        with self._guard:
            slot = wanted % self.SLOTS
            for _ in range(self.SLOTS):
                offset = slot * _SLOT.size
                stored, fired = _SLOT.unpack_from(self._table, offset)
                if stored in (wanted, 0):
                    if fired >= times:
                        return False
                    _SLOT.pack_into(self._table, offset, wanted, fired + 1)
                    return True
                slot = (slot + 1) % self.SLOTS
        return super().take(key, times)

    def close(self) -> None:
        self._guard.close()
        self._table.close()

    def clear(self) -> None:
        with self._guard:
            self._table[:] = bytes(len(self._table))
        super().clear()
