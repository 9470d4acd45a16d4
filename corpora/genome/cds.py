"""Coding-sequence tagging data: a by-locus split with reverse-complement copies, and the gene-level scores.

Rows are corpus rows with ``spans`` labelled ``CDS+`` / ``CDS-`` (:mod:`corpora.genome.kaptive`).

- :func:`split_corpus` holds out whole loci by a hash of their id (the job's own hash,
  :func:`jobs.examples.in_holdout`) and writes ``OUT/train`` (each training locus plus its reverse
  complement, id ``ID:rc``, strands swapped: capsule loci are ~88% forward-strand CDS, a chromosome is
  not) and ``OUT/test`` (held-out loci as annotated). The copy is made after the split, so no held-out
  locus reaches training in either orientation.
- :func:`base_labels`, :func:`base_f1` and :func:`gene_scores` score predicted spans against annotated
  ones: per-base F1 of coding vs non-coding, and gene-level recall / precision where a prediction
  matches an annotated CDS on the same strand when their overlap covers >= 80% of both.

CLI::

    python -m corpora.genome.cds split data/kaptive --output data/kaptive-split [--fraction 0.1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bigbird.splits import in_holdout
from corpora.format import write_corpus

STRANDS = ("CDS+", "CDS-")
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_SWAP = {"CDS+": "CDS-", "CDS-": "CDS+"}
Span = tuple[int, int, str]


def reverse_complement(row: dict) -> dict:
    """The row read from the other strand: sequence reverse-complemented, spans mirrored, strands swapped.

    Raises:
        ValueError: a span label other than ``CDS+`` / ``CDS-``.
    """
    n = len(row["text"])
    spans = []
    for s in row.get("spans") or []:
        if s["label"] not in _SWAP:
            raise ValueError(f"row {row['id']!r}: span label {s['label']!r} is not one of {STRANDS}")
        spans.append({"start": n - s["end"], "end": n - s["start"], "label": _SWAP[s["label"]]})
    spans.sort(key=lambda s: (s["start"], s["end"], s["label"]))
    return {**row, "id": f"{row['id']}:rc", "text": row["text"].translate(_COMPLEMENT)[::-1], "spans": spans}


def split_rows(rows: Sequence[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, test) rows: test = ids held out by :func:`bigbird.splits.in_holdout`, as the job splits."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    held = in_holdout([r["id"] for r in rows], fraction, seed)
    return [r for r, h in zip(rows, held) if not h], [r for r, h in zip(rows, held) if h]


def split_corpus(corpus: str | Path, output: str | Path, *, fraction: float = 0.1, seed: int = 0,
                 add_reverse: bool = True) -> dict[str, int]:
    """Write ``output/train`` (with reverse-complement copies) and ``output/test`` from a CDS corpus.

    Returns:
        Row counts ``{"train_loci", "train_rows", "test_loci"}``.
    """
    rows = pq.read_table(corpus).to_pylist()
    train, test = split_rows(rows, fraction, seed)
    train_rows = [x for r in train for x in ((r, reverse_complement(r)) if add_reverse else (r,))]
    columns = ("id", "text", "source", "spans")
    write_corpus(train_rows, Path(output) / "train", columns, overwrite=True)
    write_corpus(test, Path(output) / "test", columns, overwrite=True)
    return {"train_loci": len(train), "train_rows": len(train_rows), "test_loci": len(test)}


# --------------------------------------------------------------------------- scores


def base_labels(spans: Iterable[Span], length: int) -> np.ndarray:
    """``(length,)`` int8 per base: 0 non-coding, 1 ``CDS+``, 2 ``CDS-`` (later spans win on overlap)."""
    out = np.zeros(length, dtype=np.int8)
    for start, end, label in spans:
        if label not in STRANDS:
            raise ValueError(f"span label {label!r} is not one of {STRANDS}")
        out[max(start, 0):min(end, length)] = 1 + STRANDS.index(label)
    return out


def base_counts(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Counts ``[tp, fp, fn, tn]`` of coding (either strand) vs non-coding, per base."""
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted labels {predicted.shape} and truth {truth.shape} differ in length")
    p, t = predicted > 0, truth > 0
    return np.array([np.sum(p & t), np.sum(p & ~t), np.sum(~p & t), np.sum(~p & ~t)], dtype=np.int64)


def base_f1(counts: np.ndarray) -> float:
    """F1 of the coding class from :func:`base_counts` (summed over sequences)."""
    tp, fp, fn, _ = (int(x) for x in counts)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _matches(a: Span, b: Span, min_overlap: float) -> bool:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    return (a[2] == b[2] and inter > 0 and inter >= min_overlap * (a[1] - a[0])
            and inter >= min_overlap * (b[1] - b[0]))


def gene_counts(predicted: Sequence[Span], truth: Sequence[Span], min_overlap: float = 0.8) -> np.ndarray:
    """Counts ``[true genes found, true genes, predictions matching a gene, predictions]``.

    A prediction and an annotated CDS match when they are on the same strand and their overlap covers at
    least ``min_overlap`` of each (the issue's "overlaps by >= 80%", made symmetric so that one long
    prediction spanning several genes matches none of them).
    """
    pred, true = sorted(predicted), sorted(truth)
    found = [False] * len(true)
    hit = [False] * len(pred)
    j0 = 0
    for i, p in enumerate(pred):
        while j0 < len(true) and true[j0][1] <= p[0]:
            j0 += 1
        j = j0
        while j < len(true) and true[j][0] < p[1]:
            if _matches(p, true[j], min_overlap):
                hit[i] = found[j] = True
            j += 1
    return np.array([sum(found), len(true), sum(hit), len(pred)], dtype=np.int64)


def gene_scores(counts: np.ndarray) -> tuple[float, float]:
    """(recall, precision) from summed :func:`gene_counts`."""
    found, n_true, hit, n_pred = (int(x) for x in counts)
    return (found / n_true if n_true else 0.0), (hit / n_pred if n_pred else 0.0)


def stop_of(span: Span) -> tuple[int, str]:
    """The stop-codon end of a span and its strand: ``end`` for ``CDS+``, ``start`` for ``CDS-``."""
    return (span[1] if span[2] == "CDS+" else span[0]), span[2]


def gene_end_counts(predicted: Sequence[Span], truth: Sequence[Span]) -> np.ndarray:
    """Counts ``[true genes with a predicted stop, with both ends exact, true genes, predictions with a true
    stop, with both ends exact, predictions]``: a gene caller's matches (same strand and stop codon; and the
    same start too), whatever the overlap rule of :func:`gene_counts`."""
    pred, true = {tuple(p) for p in predicted}, {tuple(t) for t in truth}
    pred_stops, true_stops = {stop_of(p) for p in pred}, {stop_of(t) for t in true}
    return np.array([sum(stop_of(t) in pred_stops for t in true), len(true & pred), len(true),
                     sum(stop_of(p) in true_stops for p in pred), len(pred & true), len(pred)], dtype=np.int64)


def f1(recall: float, precision: float) -> float:
    """The harmonic mean of recall and precision (0 when both are 0)."""
    return 2 * recall * precision / (recall + precision) if recall + precision else 0.0


def spans_of(entities: Iterable[dict], *, min_length: int = 0) -> list[Span]:
    """Pipeline / batch entities (``entity_group`` or ``label``, ``start``, ``end``) -> spans, short ones dropped."""
    out = []
    for e in entities:
        label = e.get("entity_group", e.get("label"))
        if e["end"] - e["start"] >= min_length:
            out.append((int(e["start"]), int(e["end"]), str(label)))
    return out


def iter_spans(row: dict) -> Iterator[Span]:
    """The ``(start, end, label)`` spans of a corpus row."""
    for s in row.get("spans") or []:
        yield int(s["start"]), int(s["end"]), str(s["label"])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corpora.genome.cds split CORPUS --output DIR``; exit 0, or 1 with one error line."""
    parser = argparse.ArgumentParser(prog="python -m corpora.genome.cds", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("split", help="by-locus train/test split, reverse-complement copies in train")
    sp.add_argument("corpus", help="corpus folder with CDS+/CDS- spans (python -m corpora fetch kaptive)")
    sp.add_argument("--output", required=True, help="writes OUTPUT/train and OUTPUT/test")
    sp.add_argument("--fraction", type=float, default=0.1, help="share of loci held out (default 0.1)")
    sp.add_argument("--seed", type=int, default=0, help="hash seed of the split (default 0)")
    sp.add_argument("--no-reverse", action="store_true", help="no reverse-complement copies")
    args = parser.parse_args(argv)
    try:
        counts = split_corpus(args.corpus, args.output, fraction=args.fraction, seed=args.seed,
                              add_reverse=not args.no_reverse)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
