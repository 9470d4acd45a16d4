"""Busy processes beside a measurement (``--contention N``): a shared node, or a Ray node whose data readers
and other actors run next to the model.

Each busy process is one Python interpreter spinning on the CPU (no memory, no I/O). It inherits the
benchmark's niceness (started under ``nice -n 19``, both are at 19), runs in its own session (a Ctrl-C
in the terminal reaches only the benchmark, which then stops them) and also stops by itself within a
second once its parent is gone (a benchmark killed with SIGKILL leaves nothing spinning).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

# Spin; every ~10^7 iterations (well under a second) check that the benchmark that started us still runs.
SPINNER = ("import os\np = os.getppid()\ni = 0\nwhile True:\n    i += 1\n    if i == 10_000_000:\n"
           "        i = 0\n        if os.getppid() != p:\n            break\n")


def start(n: int) -> list[subprocess.Popen]:
    """Start ``n`` busy processes and return them (stop them with :func:`stop`).

    Raises:
        ValueError: If ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"--contention wants a number of busy processes >= 0, got {n}")
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", SPINNER], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
    except BaseException:
        stop(procs)
        raise
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    """Kill the busy processes ``procs`` (those :func:`start` returned) and reap them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


@contextlib.contextmanager
def busy(n: int) -> Iterator[list[subprocess.Popen]]:
    """``n`` busy processes for the duration of the ``with`` block; stopped on exit, an exception, Ctrl-C
    or SIGTERM (turned into ``SystemExit`` while the block runs)."""
    if n == 0:
        yield []
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    in_main = _in_main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    procs = start(n)
    try:
        yield procs
    finally:
        stop(procs)
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def niceness() -> int:
    """This process's niceness (the busy processes have the same)."""
    return os.nice(0)
