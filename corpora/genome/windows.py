"""Windowing of long sequences and clipping of feature spans to windows, for :mod:`corpora.genome`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence


def iter_windows(chunks: Iterable[str], window: int, overlap: int = 0) -> Iterator[tuple[int, str]]:
    """Cut a stream of sequence chunks into windows of ``window`` bases, ``overlap`` shared.

    Windows start at ``0, stride, 2*stride, ...`` with ``stride = window - overlap``; the last one
    may be shorter, and none is emitted that lies wholly inside the previous window. Only about
    one window is held in memory.

    Args:
        chunks: pieces of one sequence, in order.
        window: bases per window (> 0).
        overlap: bases shared by consecutive windows (0 <= overlap < window).

    Returns:
        An iterator of ``(start, text)``.

    Raises:
        ValueError: window or overlap out of range.
    """
    check_window(window, overlap)
    stride = window - overlap
    start = 0  # genome coordinate of buf[0]
    parts: list[str] = []
    size = 0
    emitted = False
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size < window:
            continue
        buf = "".join(parts)
        cut = 0
        while len(buf) - cut >= window:
            yield start, buf[cut : cut + window]
            emitted = True
            cut += stride
            start += stride
        parts, size = [buf[cut:]], len(buf) - cut
    rest = "".join(parts)
    # the tail is new only if it runs past the previous window, which ended at start + overlap
    if rest and (not emitted or len(rest) > overlap):
        yield start, rest


class SpanIndex:
    """Features sorted by start, queried with windows that only move right."""

    def __init__(self, spans: Sequence[tuple[int, int, str]]) -> None:
        self._spans = sorted(spans)
        self._next = 0
        self._active: list[tuple[int, int, str]] = []

    def window(self, start: int, end: int) -> list[dict]:
        while self._next < len(self._spans) and self._spans[self._next][0] < end:
            self._active.append(self._spans[self._next])
            self._next += 1
        self._active = [s for s in self._active if s[1] > start]
        clipped = sorted(
            {(max(s, start) - start, min(e, end) - start, label) for s, e, label in self._active}
        )
        return [{"start": s, "end": e, "label": label} for s, e, label in clipped]


def check_spans(spans: Sequence[tuple[int, int, str]], length: int, record_id: str) -> None:
    """Raise ValueError naming the record when a span ends past the sequence."""
    for s, e, label in spans:
        if e > length:
            raise ValueError(
                f"record {record_id!r} has a {label} span {s}..{e} beyond its {length} bp sequence"
            )


def check_window(window: int, overlap: int) -> None:
    """Raise ValueError unless ``window`` is a positive int and ``0 <= overlap < window``."""
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window={window}), got {overlap!r}")
