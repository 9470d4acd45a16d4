"""Progress of a batch job a person can read: records and tokens scored of the total, rate and ETA.

The driver follows the job's per-block statistics in a background thread and prints one line every few
seconds (also while nothing finishes, so a stalled job is visible), and runs a health check at each line.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else f"{n:,.0f}"


@dataclass
class Progress:
    """Running totals of one run of the job (``total``: records this run scores)."""

    total: int
    skipped: int = 0
    records: int = 0
    errors: int = 0
    tokens: int = 0
    padding_tokens: int = 0
    blocks: int = 0
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def add(self, stats: dict[str, Any]) -> None:
        """Count one written block's statistics."""
        self.blocks += 1
        self.records += stats["records"]
        self.errors += stats["errors"]
        self.tokens += stats["tokens"]
        self.padding_tokens += stats["padding_tokens"]

    def line(self) -> str:
        elapsed = max(1e-9, self.clock() - self.started)
        share = self.records / self.total if self.total else 1.0
        text = f"scored {self.records:,} of {self.total:,} records ({share:.1%}"
        text += f", {self.skipped:,} done earlier)" if self.skipped else ")"
        if not self.records:
            return f"{text}, waiting for the first block ({_duration(elapsed)} so far)"
        estimate = self.tokens / self.records * self.total
        left = (self.total - self.records) * elapsed / self.records
        return (f"{text}, {_count(self.tokens)} of ~{_count(estimate)} tokens, {self.tokens / elapsed:,.0f} tokens/s, "
                f"{self.records / elapsed:,.1f} records/s, errors {self.errors}, part files {self.blocks:,}, "
                f"ETA {_duration(left)}")


def follow(rows: Callable[[], Iterable[dict[str, Any]]], progress: Progress, *, interval: float,
           report: Callable[[str], None], check: Callable[[], None] = lambda: None) -> None:
    """Consume ``rows()`` (per-block statistics) into ``progress``, reporting a line every ``interval`` s.

    ``check`` runs at each line and may raise to stop following (the job is then abandoned).
    """
    events: queue.Queue = queue.Queue()

    def consume() -> None:
        try:
            for row in rows():
                events.put(("row", row))
            events.put(("done", None))
        except BaseException as e:  # handed to the main thread, which raises it
            events.put(("error", e))

    threading.Thread(target=consume, name="bigbird-batch-results", daemon=True).start()
    last = time.monotonic()
    while True:
        try:
            kind, value = events.get(timeout=max(0.05, interval - (time.monotonic() - last)))
        except queue.Empty:
            kind, value = "tick", None
        if kind == "row":
            progress.add(value)
        elif kind == "done":
            return
        elif kind == "error":
            raise value
        if time.monotonic() - last >= interval:
            last = time.monotonic()
            report(progress.line())
            check()
