"""The batch job's console: our progress lines, not Ray's, unless ``--verbose``.

Ray Data prints its own progress block every few seconds and an execution plan at start, and Ray's core
worker logs, when the model actors start, ``... has constructor arguments in the object store and
max_restarts > 0`` (Ray Data's own actor arguments, ray-project/ray#57733): an ``E`` line that reads like a
failure of the job. :func:`quiet` turns the first two off for the dataset and drops that one line from the
process's stderr (file descriptor 2, where the C++ core worker writes) while the job runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

NOISE = (re.compile(rb"has constructor arguments in the object store and max_restarts > 0"),)


def quiet_dataset(ds: Any) -> None:
    """No Ray Data progress bars nor execution-plan print for ``ds`` (its own context: other datasets keep theirs)."""
    ds.context.enable_progress_bars = False
    ds.context.enable_operator_progress_bars = False
    ds.context.print_on_execution_start = False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """While inside: Ray Data's logger at ERROR (its start-up notes and warnings, such as "progress bars
    disabled", are for its own console) and the known-noise lines dropped from fd 2."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with _filtered_stderr():
        try:
            yield
        finally:
            logger.setLevel(level)


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """fd 2 through a pipe; a thread copies every line but the :data:`NOISE` ones to the real stderr."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)

    def pump() -> None:
        with os.fdopen(read, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not any(p.search(line) for p in NOISE):
                        os.write(saved, line + b"\n")
            if pending:
                os.write(saved, pending)

    thread = threading.Thread(target=pump, name="bigbird-batch-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        import sys

        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump drains and ends
        thread.join(timeout=5)
        os.close(saved)
