"""Command line of ``python -m corpora.genome``: argument parser and entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from corpora.genome.convert import convert_to_parquet
from corpora.genome.records import DEFAULT_FEATURE_TYPES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m corpora.genome``."""
    parser = argparse.ArgumentParser(
        prog="python -m corpora.genome",
        description=(
            "Convert FASTA / GenBank files (plain or .gz) to the corpus parquet format "
            "(id, text, source [, spans, label, offset]), streaming."
        ),
        epilog=(
            "examples:\n"
            "  python -m corpora.genome gbpri1.seq --output out/ --window 4096 --features exon,CDS\n"
            "  python -m corpora.genome rRNA16S.fasta --output out/ "
            "--label-regex '\\t(?:Bacteria|Archaea);\\s*([^;\\t]+)'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="FASTA or GenBank files")
    parser.add_argument("--output", "-o", required=True, help="output directory for part-*.parquet")
    parser.add_argument("--format", default="auto", help="auto (default), fasta or genbank")
    parser.add_argument("--window", type=int, default=None, help="split sequences into windows of N bases")
    parser.add_argument("--overlap", type=int, default=0, help="bases shared by consecutive windows")
    parser.add_argument(
        "--features",
        default=",".join(DEFAULT_FEATURE_TYPES),
        help="GenBank feature keys to keep as spans, comma separated, or 'all' (default: %(default)s)",
    )
    parser.add_argument("--label-regex", default=None, help="regex on the header; group 1 is the row label")
    parser.add_argument("--records-per-file", type=int, default=50_000, help="rows per parquet file")
    parser.add_argument("--limit", type=int, default=None, help="stop after N input sequences")
    parser.add_argument(
        "--on-invalid", default="raise", help="raise (default) or mask: non-IUPAC characters become N"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace parquet files already in --output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 1 bad input, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    features = None if args.features == "all" else [f for f in args.features.split(",") if f]
    try:
        stats = convert_to_parquet(
            args.inputs,
            args.output,
            format=args.format,
            window=args.window,
            overlap=args.overlap,
            feature_types=features,
            label_from_header=args.label_regex,
            records_per_file=args.records_per_file,
            limit=args.limit,
            on_invalid=args.on_invalid,
            overwrite=args.overwrite,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    labels = f", {len(stats.labels)} labels" if stats.labels else ""
    print(
        f"wrote {stats.rows} rows from {stats.records} sequences ({stats.bases} bases, "
        f"{stats.spans} spans{labels}) to {len(stats.files)} file(s) in {args.output}"
    )
    return 0
