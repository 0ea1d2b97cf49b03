"""The interpreter-wide thread settings the ``badsmtp`` command serves with.

Both belong to the whole process, so only the command makes them, for as
long as it serves (and puts them back, for ``cli.main`` called in-process);
the library (:class:`badsmtp.BadSMTP`) leaves them to its host, whose own
threads, and whose hooks running on badsmtp's handler threads, may need the
defaults.  Setting the stack size just around the library's own thread
starts would not do: another thread of the host may start one in between.

* **Stack size.**  A handler thread touches about 12 KiB of its stack (the
  thread's control block and TLS, the interpreter's frames down to
  ``recv``), whatever the size, so a smaller stack does not lower the RSS
  per connection; it lowers what each thread reserves and commits: 8 MiB
  by default on Linux, 78 GiB for 10,000 connections, which a host with
  strict overcommit (``vm.overcommit_memory=2``) or an address-space limit
  (``ulimit -v``) refuses long before.  Everything the command runs on its
  threads (the core, which has no recursion, TLS handshakes, storage,
  logging) passes the test suite with 32 KiB, Python's documented minimum;
  :data:`STACK_SIZE` leaves eight times that.  (What the command does not
  run, a host's code recursing through C to the recursion limit, needs
  more than 2 MiB: measured on CPython 3.11 to 3.13.)
* **Switch interval.**  A thread waiting for the GIL wakes every switch
  interval to ask for it (5 ms by default), so when 10,000 clients close
  at once, 10,000 woken handler threads wake 2,000,000 times a second
  between them, and the few that hold the GIL in turn barely get a CPU:
  closes were processed at 90 to 700 per second in most runs, and with
  other busy processes on the machine the server could stall for minutes.
  Measured with scripts/burst on 2 CPUs shared with other loads: at 0.05 s
  it still stalled now and then (77 and 515 closes per second next to
  6,800); at 0.2 s the median of 14 runs was ~6,500 per second, with two
  stalls, both while another server's benchmark took both CPUs.  Handler
  threads give the GIL up at every system call anyway, long before an
  interval passes; what may hold it longer is the log writer formatting a
  burst of lines (up to 4,096 at a time).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["STACK_SIZE", "SWITCH_INTERVAL", "pinned", "serving_threads"]

STACK_SIZE = 256 * 1024  # bytes, for every thread started while serving
SWITCH_INTERVAL = 0.2  # seconds (sys.setswitchinterval)


@contextmanager
def serving_threads(
    stack_size: int = STACK_SIZE, switch_interval: float = SWITCH_INTERVAL
) -> Iterator[None]:
    """The command's thread settings for the ``with`` block, then the
    previous ones again.  A platform that cannot set a stack size keeps
    its own (``threading.stack_size`` raises there)."""
    old_interval = sys.getswitchinterval()
    try:
        old_stack: int | None = threading.stack_size(stack_size)
    except (ValueError, RuntimeError):
        old_stack = None
    sys.setswitchinterval(switch_interval)
    try:
        yield
    finally:
        sys.setswitchinterval(old_interval)
        if old_stack is not None:
            threading.stack_size(old_stack)


@contextmanager
def pinned(index: int | None) -> Iterator[bool]:
    """Keep the calling thread, and every thread it starts meanwhile, on the
    ``index``-th CPU it may use (round robin), then give it its CPUs back;
    ``None`` leaves them alone.  Yields whether it pinned: not where the
    platform has no ``sched_setaffinity`` (badsmtp(1), --cpu-affinity).

    The handler threads of one process hand each connection's work to one
    another through the GIL many times per command; on one CPU each
    hand-off is a switch on that CPU, not a wake-up of a thread on another
    one.  Measured with scripts/bench on 2 CPUs: 1.7x the messages per
    second on persistent connections and 1.6x on one message per connection."""
    if index is None or not hasattr(os, "sched_setaffinity"):
        yield False
        return
    saved = os.sched_getaffinity(0)
    cpus = sorted(saved)
    os.sched_setaffinity(0, {cpus[index % len(cpus)]})
    try:
        yield True
    finally:
        os.sched_setaffinity(0, saved)
