"""Per-base coding tags -> whole genes: ORF-consistent span decoding (no gene caller involved).

A tagger says, base by base, ``CDS+``, ``CDS-`` or ``O``; a gene is more than a run of one tag: it starts at a
start codon and ends at the first stop codon in the same frame. :func:`decode_genes` turns tags into genes
that obey that grammar:

1. :func:`open_reading_frames` lists, on both strands and in all three frames, each stretch from a start
   codon (``ATG``, ``GTG``, ``TTG``) to the next in-frame stop (``TAA``, ``TAG``, ``TGA``) of at least
   ``min_length`` bases, stop included; of the start codons after the previous in-frame stop, the one where
   the tags agree best is kept (the most upstream one when the tags say "coding" all along).
2. Each ORF scores the bases the tagger put on its strand minus those it did not (``+1`` / ``-1`` per base);
   ORFs with a positive score, in which at least ``min_coverage`` of the bases carry the ORF's strand, are
   candidates.
3. Candidates are taken best score first; one that overlaps an already taken gene by more than
   ``max_overlap`` bases (either strand) is dropped. Frames the tagger cannot tell apart resolve to the
   longest ORF, which is almost always the real one: random frames hit a stop every ~64 bases.

With ``tags=None`` every base counts as coding on both strands: the decoder alone, the longest
non-overlapping ORFs, which is the baseline a tagger has to beat (:data:`ORFS_ONLY`).

CLI (after the README's batch job; joins the sequence rows and the batch output by id)::

    python -m corpora.genome.genes --corpus data/nctc11397 --tags outputs/nctc11397-cds \
        --output outputs/nctc11397-genes.tsv
"""

from __future__ import annotations

import argparse
import bisect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from corpora.genome.cds import STRANDS, Span, base_labels

START_CODONS = ("ATG", "GTG", "TTG")
STOP_CODONS = ("TAA", "TAG", "TGA")
ORFS_ONLY = "longest ORFs, no tagger"
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def _codon_hits(seq: str, codons: Sequence[str]) -> np.ndarray:
    """``(len(seq),)`` bool: a codon of ``codons`` starts at this base."""
    arr = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
    hit = np.zeros(len(seq), dtype=bool)
    if len(seq) < 3:
        return hit
    for codon in codons:
        c = np.frombuffer(codon.encode("ascii"), dtype=np.uint8)
        hit[: len(seq) - 2] |= (arr[:-2] == c[0]) & (arr[1:-1] == c[1]) & (arr[2:] == c[2])
    return hit


def _forward_orfs(seq: str, agree: Sequence[np.ndarray], min_length: int) -> list[tuple[int, int, float]]:
    """(start, end, score) of the forward-strand ORFs of ``seq``; ``agree[frame]`` is the per-base score."""
    n = len(seq)
    starts, stops = _codon_hits(seq, START_CODONS), _codon_hits(seq, STOP_CODONS)
    out = []
    for frame in range(3):
        cum = np.concatenate([[0], np.cumsum(agree[frame])])  # int64 votes, or float64 from probabilities
        pos = np.arange(frame, n - 2, 3)
        stop_pos = pos[stops[pos]]
        start_pos = pos[starts[pos]]
        prev = frame - 3  # a virtual stop before the sequence: ORFs need their own start codon anyway
        for stop in stop_pos:
            lo = bisect.bisect_right(start_pos, prev)
            hi = bisect.bisect_left(start_pos, stop)
            if lo < hi and stop + 3 - start_pos[lo] >= min_length:
                cand = start_pos[lo:hi]
                cand = cand[stop + 3 - cand >= min_length]
                # best start: the one maximising the agreement of [start, stop + 3) = cum[end] - cum[start]
                best = int(cand[int(np.argmin(cum[cand]))])
                out.append((best, int(stop) + 3, (cum[stop + 3] - cum[best]).item()))
            prev = stop
    return out


def open_reading_frames(seq: str, *, min_length: int = 90, tags: np.ndarray | None = None,
                        codon_starts: np.ndarray | None = None, strand_probs: np.ndarray | None = None,
                        codon_probs: np.ndarray | None = None) -> list[tuple[Span, float, float]]:
    """Every ORF of ``seq`` on both strands with its agreement score and strand coverage under ``tags``.

    The score of an ORF is the sum over its bases of +1 (tagged its strand) or -1 (not); with
    ``codon_starts`` (a tagger's ``B`` bases, one per codon: ``data.tag_period: 3``) each ``B`` inside the
    ORF adds +1 when it falls on the ORF's codon boundaries and -1 when not, so the tagger's codon phase picks
    the frame.

    Args:
        seq: Upper-case DNA (``N`` and other letters never form a codon).
        min_length: Shortest ORF in bases, start and stop codons included.
        tags: ``(len(seq),)`` per-base tags, 0 ``O``, 1 ``CDS+``, 2 ``CDS-`` (:func:`corpora.genome.cds.base_labels`);
            None: every base coding on both strands.
        codon_starts: ``(len(seq),)`` bool, the bases tagged ``B``: the first base of a codon in forward
            coordinates (for ``CDS-`` genes the first base, left to right, of a reverse-strand codon).
        strand_probs: instead of ``tags``, ``(len(seq), 2)`` the tagger's probabilities of ``CDS+`` and ``CDS-``
            per base (``B`` + ``I``): a base then votes ``2p - 1`` for a strand of probability ``p``, so a
            base where the tagger hesitates between strands counts for little; coverage is the mean ``p``.
        codon_probs: with ``strand_probs``, ``(len(seq), 2)`` the probabilities of ``B-CDS+`` and ``B-CDS-``:
            a ``B`` vote weighted by its probability instead of ``codon_starts``.

    Returns:
        ``((start, end, strand), score, coverage)`` per ORF; 0-based, end-exclusive genome coordinates.
    """
    n = len(seq)
    if tags is not None and len(tags) != n:
        raise ValueError(f"tags has {len(tags)} entries for a sequence of {n} bases")
    if strand_probs is not None:
        return _soft_orfs(seq, np.asarray(strand_probs, dtype=np.float64), codon_probs, min_length)
    out: list[tuple[Span, float, float]] = []
    rc = seq.translate(_COMPLEMENT)[::-1]
    for k, (strand, s) in enumerate(zip(STRANDS, (seq, rc))):
        if tags is None:
            on = np.ones(n, dtype=bool)
        else:
            on = tags == k + 1
            if k == 1:
                on = on[::-1]
        base = np.where(on, 1, -1).astype(np.int64)
        agree = [base] * 3
        if codon_starts is not None:
            b = np.asarray(codon_starts, dtype=bool)
            if len(b) != n:
                raise ValueError(f"codon_starts has {len(b)} entries for a sequence of {n} bases")
            # in this strand's coordinates a B is a codon start (forward) or a codon's last base (reverse)
            b = b & on if k == 0 else b[::-1] & on
            pos = np.arange(n) - (0 if k == 0 else 2)
            agree = [base + np.where(b, np.where(pos % 3 == f, 1, -1), 0) for f in range(3)]
        cum = np.concatenate([[0], np.cumsum(on, dtype=np.int64)])
        for a, e, score in _forward_orfs(s, agree, min_length):
            coverage = (cum[e] - cum[a]) / (e - a)
            span = (a, e, strand) if k == 0 else (n - e, n - a, strand)
            out.append((span, score, float(coverage)))
    return out


def _soft_orfs(seq: str, strand_probs: np.ndarray, codon_probs: np.ndarray | None,
               min_length: int) -> list[tuple[Span, float, float]]:
    """:func:`open_reading_frames` with per-base probabilities instead of tags (see there)."""
    n = len(seq)
    if strand_probs.shape != (n, 2):
        raise ValueError(f"strand_probs has shape {strand_probs.shape}, expected ({n}, 2)")
    if codon_probs is not None and np.shape(codon_probs) != (n, 2):
        raise ValueError(f"codon_probs has shape {np.shape(codon_probs)}, expected ({n}, 2)")
    out: list[tuple[Span, float, float]] = []
    rc = seq.translate(_COMPLEMENT)[::-1]
    for k, (strand, s) in enumerate(zip(STRANDS, (seq, rc))):
        p = strand_probs[:, k] if k == 0 else strand_probs[::-1, k]
        base = 2.0 * p - 1.0
        agree = [base] * 3
        if codon_probs is not None:
            b = np.asarray(codon_probs, dtype=np.float64)[:, k]
            b = b if k == 0 else b[::-1]
            pos = np.arange(n) - (0 if k == 0 else 2)
            agree = [base + b * np.where(pos % 3 == f, 1.0, -1.0) for f in range(3)]
        cum = np.concatenate([[0.0], np.cumsum(p)])
        for a, e, score in _forward_orfs(s, agree, min_length):
            span = (a, e, strand) if k == 0 else (n - e, n - a, strand)
            out.append((span, score, float((cum[e] - cum[a]) / (e - a))))
    return out


def decode_genes(seq: str, tags: np.ndarray | None = None, *, codon_starts: np.ndarray | None = None,
                 strand_probs: np.ndarray | None = None, codon_probs: np.ndarray | None = None,
                 min_length: int = 90, min_coverage: float = 0.5, max_overlap: int = 60) -> list[Span]:
    """Genes from per-base tags (or the tagger's probabilities, ``strand_probs`` / ``codon_probs`` of
    :func:`open_reading_frames`): the best-agreeing, non-overlapping ORFs (see the module docstring).

    Returns:
        Sorted ``(start, end, strand)`` spans, ``strand`` ``CDS+`` or ``CDS-``.
    """
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}")
    orfs = open_reading_frames(seq, min_length=min_length, tags=tags, codon_starts=codon_starts,
                               strand_probs=strand_probs, codon_probs=codon_probs)
    cands = [(span, score) for span, score, cov in orfs if score > 0 and cov >= min_coverage]
    cands.sort(key=lambda c: (-c[1], c[0]))
    starts: list[int] = []  # taken genes, sorted by start, and their ends
    taken: list[Span] = []
    longest = 0
    for span, _ in cands:
        a, b, _ = span
        i = bisect.bisect_left(starts, a)
        near = range(bisect.bisect_left(starts, a - longest), bisect.bisect_left(starts, b))
        if any(min(b, taken[j][1]) - max(a, taken[j][0]) > max_overlap for j in near):
            continue
        starts.insert(i, a)
        taken.insert(i, span)
        longest = max(longest, b - a)
    return sorted(taken)


def tags_of(spans: Iterable[Span], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-base tags (0 ``O``, 1 ``CDS+``, 2 ``CDS-``) and the bases that start a span, from a tagger's
    spans (a pipeline's entities: with ``B`` tags every span starts at a ``B``)."""
    spans = [s for s in spans if s[2] in STRANDS]
    begins = np.zeros(length, dtype=bool)
    begins[[s[0] for s in spans if 0 <= s[0] < length]] = True
    return base_labels(spans, length), begins


def merge_runs(spans: Iterable[Span]) -> list[Span]:
    """Adjacent or overlapping spans of one label joined: a tagger's per-codon entities -> runs of one tag."""
    out: list[Span] = []
    for s in sorted(spans):
        if out and out[-1][2] == s[2] and s[0] <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], s[1]), s[2])
        else:
            out.append(s)
    return out


def decode_batch_output(corpus: str | Path, tags: str | Path, output: str | Path, *, phase: bool = True,
                        **kwargs: float) -> int:
    """Genes of each corpus row from the batch job's entities (``id`` joins them), written as TSV in genome
    coordinates (the entities' offset: ``offset`` column of the corpus); returns the number of genes.
    ``phase``: entity starts are codon starts (a tagger trained with ``data.tag_period: 3``)."""
    import pyarrow.parquet as pq

    rows = {str(r["id"]): r for r in pq.read_table(corpus).to_pylist()}
    scored = pq.read_table(tags).to_pylist()
    lines = ["seqid\tstart\tend\tstrand"]
    missing = [str(r["id"]) for r in scored if str(r["id"]) not in rows]
    if missing:
        raise ValueError(f"{len(missing)} scored ids are not in the corpus {corpus}, e.g. {missing[0]!r}")
    genes = 0
    for r in sorted(scored, key=lambda r: int(rows[str(r["id"])].get("offset") or 0)):
        row = rows[str(r["id"])]
        offset = int(row.get("offset") or 0)
        text = row["text"]
        if r.get("error"):
            raise ValueError(f"row {r['id']!r} was not scored: {r['error']}")
        runs = [(int(e["start"]) - offset, int(e["end"]) - offset, str(e["label"])) for e in r["entities"] or []]
        tags, begins = tags_of(runs, len(text))
        for a, b, strand in decode_genes(text, tags, codon_starts=begins if phase else None, **kwargs):
            lines.append(f"{row.get('source') or r['id']}\t{a + offset}\t{b + offset}\t{strand[-1]}")
            genes += 1
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text("\n".join(lines) + "\n")
    return genes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m corpora.genome.genes --corpus DIR --tags DIR --output FILE``; exit 0, or 1 with one error line."""
    p = argparse.ArgumentParser(prog="python -m corpora.genome.genes", description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True, help="the sequence rows the batch job read (id, text, offset)")
    p.add_argument("--tags", required=True, help="the batch job's output folder (id, entities)")
    p.add_argument("--output", required=True, help="TSV of genes: seqid, start (0-based), end, strand")
    p.add_argument("--min-length", type=int, default=90, help="shortest gene in bases (default 90)")
    p.add_argument("--min-coverage", type=float, default=0.5, help="share of an ORF tagged its strand (0.5)")
    p.add_argument("--max-overlap", type=int, default=60, help="bases two genes may share (default 60)")
    args = p.parse_args(argv)
    try:
        n = decode_batch_output(args.corpus, args.tags, args.output, min_length=args.min_length,
                                min_coverage=args.min_coverage, max_overlap=args.max_overlap)
    except (ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{n} genes -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
