"""Converter for the classification corpus: fastText-format polarity sentences (Pang & Lee)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from corpora.rawfiles import existing_path


def iter_polarity_records(path: str | Path) -> Iterator[dict]:
    """Lines ``__label__pos text`` (fastText format, as gensim's ``pang_lee_polarity.cor``) as rows.

    Args:
        path: the text file.

    Returns:
        Rows ``id`` (``polarity-NNNN``, the line number), ``text``, ``label``, ``source``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a non-empty line without a ``__label__`` prefix (the line number is named).
    """
    with open(existing_path(path), encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            m = re.match(r"__label__(\S+)\s+(.*\S)", line)
            if not m:
                raise ValueError(f"{path}:{lineno}: expected '__label__NAME text', got {line[:40]!r}")
            yield {
                "id": f"polarity-{lineno:04d}",
                "text": m.group(2),
                "label": m.group(1),
                "source": "pang-lee",
            }
