"""Summarise a classification batch job's output against the true labels it carried (``--keep-columns``).

    python -m corpora.report outputs/rrna16s-phylum --label-column label --holdout-fraction 0.1
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import pyarrow.parquet as pq

from bigbird.splits import in_holdout


def summarise(output: str, *, label_column: str = "label_true", holdout_fraction: float | None = None,
              split_seed: int = 0, samples: int = 8) -> str:
    """Accuracy (all records, and the held-out split when its fraction is given), majority baseline and a
    few rows to check by eye.

    Raises:
        ValueError: If the output has no predictions or no column ``label_column``.
    """
    table = pq.read_table(output)
    if "label" not in table.column_names:
        raise ValueError(f"{output!r} is not a text-classification output (no 'label' column)")
    if label_column == "label" or label_column not in table.column_names:
        raise ValueError(f"{output!r} has no true-label column {label_column!r}: run the job with "
                         f"--keep-columns <true label column> (and name it here with --label-column)")
    rows = table.to_pylist()
    scored = [r for r in rows if r["error"] is None and r[label_column] is not None]
    lines = [f"output: {output}", f"records: {len(rows)}, scored: {len(scored)}, "
                                   f"errors: {sum(r['error'] is not None for r in rows)}"]

    def accuracy(subset: list[dict], name: str) -> None:
        if not subset:
            return
        correct = sum(r["label"] == r[label_column] for r in subset)
        majority, count = Counter(r[label_column] for r in subset).most_common(1)[0]
        lines.append(f"{name}: accuracy {correct / len(subset):.1%} on {len(subset)} records "
                     f"(majority class {majority!r}: {count / len(subset):.1%})")

    accuracy(scored, "all records")
    if holdout_fraction:
        held = in_holdout([r["id"] for r in scored], holdout_fraction, split_seed)
        accuracy([r for r, h in zip(scored, held) if h], f"held-out {holdout_fraction:.0%} (never trained on)")
    lines.append(f"{'id':<28} {'true':<22} {'predicted':<22} score")
    for r in scored[:samples]:
        lines.append(f"{r['id'][:28]:<28} {str(r[label_column])[:22]:<22} {r['label'][:22]:<22} {r['score']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m corpora.report", description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="the batch job's output folder")
    p.add_argument("--label-column", default="label_true",
                   help="the kept column with the true labels (default label_true)")
    p.add_argument("--holdout-fraction", type=float, help="also score the split held out by the training job")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=8, help="rows to print")
    args = p.parse_args(argv)
    try:
        print(summarise(args.output, label_column=args.label_column, holdout_fraction=args.holdout_fraction,
                        split_seed=args.split_seed, samples=args.samples))
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"report: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
