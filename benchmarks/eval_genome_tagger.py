"""Score BigBird gene taggers and pyrodigal on held-out Kaptive loci and on an unseen chromosome.

    python benchmarks/eval_genome_tagger.py --model models/kaptive-cds \
        --baseline outputs/models/kaptive-cds-512 --test data/kaptive-split/test \
        --chromosome data/_raw/files/pyrodigal-3.7.1-*/pyrodigal/tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz \
        --genbank $(find data/_raw/prokaryotes -name Thermococcus_kodakaraensis.gbk.gz)

Per sequence set and method: per-base F1 of coding (either strand) vs non-coding, per-base accuracy and macro F1
of the 3 strand tags (``O``, ``CDS+``, ``CDS-``), gene F1 where a prediction matches an annotated CDS with the same
strand and stop codon (and, start-exact, the same start too: :func:`corpora.genome.cds.gene_end_counts`), and
gene-level recall and precision (:func:`corpora.genome.cds.gene_counts`: same strand, overlap >= 80% of both spans; tagger spans
shorter than ``--min-gene-length`` bases are dropped first, as a gene caller's minimum length).
Each tagger is scored twice from one run: its raw tag runs (adjacent spans of one strand joined), and its
tags decoded into genes by :func:`corpora.genome.genes.decode_genes` (ORF-consistent spans; with a
``tag_period: 3`` model its ``B`` tags vote for the frame). The same decoder without a tagger (every base
coding: the longest non-overlapping ORFs) is its own row, the floor a tagger has to beat.
Held-out loci and ``--genbank`` genomes (whole records, e.g. the held-out *Thermococcus*) are scored against
their annotation. The chromosome has no annotation in the wheel: its
reference is pyrodigal's own single-genome prediction (trained on the chromosome), so there pyrodigal is
the reference and the rows measure agreement with it, not truth; pyrodigal's metagenomic mode is shown as
a second, independent caller.

Prints a markdown table; ``--json`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from corpora.genome.cds import (  # noqa: E402
    Span,
    base_counts,
    base_f1,
    base_labels,
    f1,
    gene_counts,
    gene_end_counts,
    gene_scores,
    iter_spans,
    spans_of,
)
from corpora.genome.genes import ORFS_ONLY, decode_genes, merge_runs, tags_of  # noqa: E402

TRIVIAL = "every base CDS+ (trivial)"
Caller = Callable[[Sequence[str]], list[list[Span]]]


def tagger(folder: str, *, batch_size: int = 4, stride: int = 256) -> Callable[[Sequence[str]], dict[str, list]]:
    """A caller running the token-classification pipeline of a saved model on each sequence.

    Returns:
        ``{"runs": ..., "genes": ..., "soft": ...}``, per sequence: the tag runs (adjacent spans of one strand
        joined), the genes :func:`corpora.genome.genes.decode_genes` decodes from the argmax tags, and those it
        decodes from the tag probabilities (``strand_probs`` / ``codon_probs``; one token per base).
    """
    from bigbird.tasks import pipeline

    pipe = pipeline("token-classification", folder, batch_size=batch_size, stride=stride)
    id2label = {int(k): str(v) for k, v in pipe.config.id2label.items()}
    phase = any(v.startswith("B-") for v in id2label.values())  # B on every codon start
    strand_cols = [[i for i, v in id2label.items() if v.endswith(s)] for s in ("CDS+", "CDS-")]
    begin_cols = [[i for i, v in id2label.items() if v == f"B-{s}"] for s in ("CDS+", "CDS-")]
    # aggregation_strategy="average" makes the pipeline hand every token's probabilities to ``entities``;
    # the hook keeps them and asks for the "simple" entities, which come from the same argmax labels
    kept: list[np.ndarray | None] = []
    entities = pipe.entities

    def keep_probs(text, encoded, labels, scores, probs=None, **params):  # noqa: ANN001, ANN202
        kept.append(probs)
        return entities(text, encoded, labels, scores, **{**params, "aggregation_strategy": "simple"})

    pipe.entities = keep_probs

    def call(texts: Sequence[str]) -> dict[str, list]:
        runs, genes, soft = [], [], []
        for t in texts:
            kept.clear()
            spans = spans_of(pipe(t, aggregation_strategy="average"))
            p = kept[0]
            if p is None or len(p) != len(t):
                raise ValueError(f"{folder}: expected one probability row per base, got "
                                 f"{None if p is None else len(p)} for {len(t)} bases")
            tags, begins = tags_of(spans, len(t))
            runs.append(merge_runs(spans))
            genes.append(decode_genes(t, tags, codon_starts=begins if phase else None))
            strand = np.stack([p[:, c].sum(axis=1) for c in strand_cols], axis=1)
            begin = np.stack([p[:, c].sum(axis=1) for c in begin_cols], axis=1) if phase else None
            soft.append(decode_genes(t, strand_probs=strand, codon_probs=begin))
        return {"runs": runs, "genes": genes, "soft": soft}

    return call


def orfs_only(texts: Sequence[str]) -> list[list[Span]]:
    """The decoder without a tagger: the longest non-overlapping ORFs of each sequence."""
    return [decode_genes(t, None) for t in texts]


def pyrodigal_caller(*, meta: bool) -> Caller:
    """pyrodigal genes as spans: ``meta`` uses its pre-trained metagenomic models, else it trains on each sequence."""
    import pyrodigal

    def call(texts: Sequence[str]) -> list[list[Span]]:
        out = []
        for text in texts:
            finder = pyrodigal.GeneFinder(meta=meta)
            if not meta:
                finder.train(text)
            genes = finder.find_genes(text)
            out.append([(g.begin - 1, g.end, "CDS+" if g.strand == 1 else "CDS-") for g in genes])
        return out

    return call


def every_base_forward(texts: Sequence[str]) -> list[list[Span]]:
    """The trivial caller: the whole sequence is one forward-strand CDS (per-base F1 = F1 of "all coding")."""
    return [[(0, len(t), "CDS+")] for t in texts]


def score(predicted: Sequence[Sequence[Span]], truth: Sequence[Sequence[Span]], lengths: Sequence[int],
          min_length: int) -> dict[str, float]:
    """Per-base F1 of coding vs non-coding and per-base accuracy of the 3 tags (``O``, ``CDS+``, ``CDS-``) on
    all predicted bases; gene recall / precision on predictions of at least ``min_length`` bases."""
    bases = np.zeros(4, dtype=np.int64)
    genes = np.zeros(4, dtype=np.int64)
    ends = np.zeros(6, dtype=np.int64)
    confusion = np.zeros((3, 3), dtype=np.int64)  # [truth tag, predicted tag] over O, CDS+, CDS-
    for pred, true, n in zip(predicted, truth, lengths):
        p, t = base_labels(pred, n), base_labels(true, n)
        bases += base_counts(p, t)
        confusion += np.bincount(3 * t.astype(np.int64) + p, minlength=9).reshape(3, 3)
        long_enough = [s for s in pred if s[1] - s[0] >= min_length]
        genes += gene_counts(long_enough, true)
        ends += gene_end_counts(long_enough, true)
    recall, precision = gene_scores(genes)
    stop_r, exact_r, stop_p, exact_p = (ends[0] / max(1, ends[2]), ends[1] / max(1, ends[2]),
                                        ends[3] / max(1, ends[5]), ends[4] / max(1, ends[5]))
    tag_f1 = [f1(confusion[i, i] / max(1, confusion[i].sum()), confusion[i, i] / max(1, confusion[:, i].sum()))
              for i in range(3)]
    return {"base_f1": base_f1(bases), "base_accuracy": float(np.trace(confusion)) / max(1, sum(lengths)),
            "tag_macro_f1": float(np.mean(tag_f1)), "gene_recall": recall, "gene_precision": precision,
            "gene_f1": f1(recall, precision), "gene_f1_stop": f1(float(stop_r), float(stop_p)),
            "gene_f1_exact": f1(float(exact_r), float(exact_p)),
            "genes_true": int(genes[1]), "genes_predicted": int(genes[3])}


def read_chromosome(path: str) -> tuple[list[str], list[str]]:
    """(ids, sequences) of a FASTA file (plain or gzip)."""
    from corpora.genome import iter_fasta

    records = list(iter_fasta(path))
    return [r.id for r in records], [r.sequence for r in records]


def read_genbank(path: str) -> tuple[list[str], list[list[Span]]]:
    """(sequences, annotated CDS segments by strand) of every record of a GenBank file, whole."""
    from corpora.genome.genbank import iter_genbank

    texts, truth = [], []
    for rec in iter_genbank(path, feature_types=("CDS",), on_invalid="mask"):
        texts.append(rec.sequence)
        truth.append(sorted({(f.start, f.end, "CDS+" if f.strand == 1 else "CDS-") for f in rec.features}))
    return texts, truth


def evaluate(args: argparse.Namespace) -> list[dict]:
    """Every (sequence set, method) row of the table."""
    methods: dict[str, Callable] = {}
    if args.model:
        methods[f"BigBird, {args.model}"] = tagger(args.model, stride=args.stride)
    if args.baseline:
        methods[f"BigBird, {args.baseline}"] = tagger(args.baseline, stride=args.stride)
    fixed = {ORFS_ONLY: orfs_only, "pyrodigal (meta)": pyrodigal_caller(meta=True), TRIVIAL: every_base_forward}
    rows: list[dict] = []
    if args.test:
        loci = pq.read_table(args.test, columns=["id", "text", "spans"]).to_pylist()[: args.limit]
        texts = [r["text"] for r in loci]
        truth = [list(iter_spans(r)) for r in loci]
        sets = {f"held-out loci ({len(loci)}, {sum(map(len, texts)) / 1e6:.2f} Mbp), vs annotation":
                (texts, truth)}
    else:
        sets = {}
    for path in args.genbank or []:
        texts, truth = read_genbank(path)
        name = Path(path).name.split(".")[0]
        sets[f"genome {name} ({sum(map(len, texts)) / 1e6:.2f} Mbp), vs annotation"] = (texts, truth)
    if args.chromosome:
        _, texts = read_chromosome(args.chromosome)
        reference = pyrodigal_caller(meta=False)(texts)  # trained on and run over the whole chromosome
        if args.chromosome_bases:  # then the region: its first N bases and the reference genes inside it
            texts = [t[: args.chromosome_bases] for t in texts]
            reference = [[g for g in genes if g[1] <= args.chromosome_bases] for genes in reference]
        sets[f"chromosome NCTC11397 ({sum(map(len, texts)) / 1e6:.2f} Mbp), vs pyrodigal (single) calls"] = (
            texts, reference)
    for name, (texts, truth) in sets.items():
        lengths = [len(t) for t in texts]
        for method, call in {**methods, **fixed}.items():
            clock = time.perf_counter()
            predicted = call(texts)
            seconds = round(time.perf_counter() - clock, 1)
            outputs = {f"{method}, tag runs": predicted["runs"], f"{method} + ORF decoding": predicted["genes"],
                       f"{method} + ORF decoding from probabilities": predicted["soft"]} \
                if isinstance(predicted, dict) else {method: predicted}
            for label, pred in outputs.items():
                row = {"set": name, "method": label, **score(pred, truth, lengths, args.min_gene_length),
                       "seconds": seconds}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def table(rows: Sequence[dict]) -> str:
    """The rows as a markdown table."""
    lines = ["| sequences | method | per-base F1 (coding) | per-base accuracy (3 tags) | 3-tag macro F1 "
             "| gene F1, same stop | gene F1, start-exact | gene recall / precision (80% overlap) "
             "| genes (ref / predicted) | seconds |", "| --- " * 10 + "|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['method']} | {r['base_f1']:.3f} | {r['base_accuracy']:.3f} | "
                     f"{r['tag_macro_f1']:.3f} | {r['gene_f1_stop']:.3f} | {r['gene_f1_exact']:.3f} | "
                     f"{r['gene_recall']:.3f} / {r['gene_precision']:.3f} | "
                     f"{r['genes_true']} / {r['genes_predicted']} | {r['seconds']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation and print the table; exit 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="the long-window tagger folder")
    p.add_argument("--baseline", help="the 512-position baseline folder")
    p.add_argument("--test", help="held-out loci (parquet with spans): data/kaptive-split/test")
    p.add_argument("--limit", type=int, default=None, help="score only the first N held-out loci")
    p.add_argument("--chromosome", help="FASTA of the unseen genome (the NCTC11397 file of the pyrodigal wheel)")
    p.add_argument("--genbank", nargs="*", help="annotated unseen genomes (GenBank), scored whole against their CDS")
    p.add_argument("--chromosome-bases", type=int, default=None, help="score only its first N bases")
    p.add_argument("--min-gene-length", type=int, default=90, help="tagger spans shorter than this are no gene")
    p.add_argument("--stride", type=int, default=256, help="tokens shared by neighbouring windows (default 256)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    rows = evaluate(args)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
