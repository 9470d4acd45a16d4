"""Inference precision: float32, bfloat16 and int8 (dynamic int8 linear layers) on the committed 16S model.

Each option loads the model through the one loader (:func:`bigbird.tasks.load`, as the batch job's scorers
and the service's replicas do) in its own fresh process, scores every gene of the corpus and reports:
accuracy against the corpus labels, agreement with float32's labels, the scoring rate (tokens of the genes /
seconds of the forward passes; tokenizing is the same for every option and not counted), the peak resident
memory of the process, and the load time. Same threads, same windows, same batches for every option.

    python -m corpora fetch rrna16s --dest data
    python benchmarks/bench_precision.py --corpus data/rrna16s          # all 5,181 genes
    python benchmarks/bench_precision.py --corpus data/rrna16s --quick  # the first 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as a script: the repository's benchmarks package, as the other scripts do
    sys.path.insert(0, str(ROOT))
OPTIONS = {"float32": {}, "bfloat16": {"dtype": "bfloat16"}, "int8": {"quantize": "int8"}}
CPU_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def worker(args: argparse.Namespace) -> None:
    """One option, in this process: load, score, print one JSON line."""
    import pyarrow.parquet as pq
    import torch

    from bigbird.tasks import load

    table = pq.read_table(args.corpus, columns=["id", "text", "label"])
    if args.limit:
        table = table.slice(0, args.limit)
    records = [{"text": t} for t in table.column("text").to_pylist()]
    start = time.perf_counter()
    pipe = load("text-classification", args.model, device="cpu", threads=args.threads, batch_size=args.batch_size,
                **OPTIONS[args.worker])
    load_s = time.perf_counter() - start
    prepared = pipe.prepare_records(records)
    start = time.perf_counter()
    outputs = pipe.score(prepared.windows, **prepared.params)
    score_s = time.perf_counter() - start
    results = pipe.finish(prepared, outputs, {"top_k": 1})
    labels = [r[0]["label"] if isinstance(r, list) else None for r in results]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"option": args.worker, "records": len(records), "tokens": prepared.num_tokens,
                      "windows": len(prepared.windows), "score_s": score_s, "load_s": load_s, "peak_mib": peak_mib,
                      "threads": torch.get_num_threads(), "labels": labels,
                      "truth": table.column("label").to_pylist()}))


def cpu_flags() -> str:
    """The CPU features that decide bf16 and int8 speed, present or not."""
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in CPU_FLAGS)


def report(rows: list[dict], args: argparse.Namespace, wall_s: float, load_before: float) -> str:
    from benchmarks.report import machine

    ref = next(r for r in rows if r["option"] == "float32")
    lines = [
        "# Inference precision on models/rrna16s-phylum", "",
        f"machine: {machine()}; CPU flags: {cpu_flags()}",
        f"command: `python benchmarks/bench_precision.py {' '.join(args.argv)}`",
        f"corpus: {args.corpus}, {ref['records']} genes, {ref['tokens']:,} tokens, {ref['windows']} windows; "
        f"{ref['threads']} torch threads, batch {args.batch_size}; 1-min load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; wall {wall_s:.0f} s", "",
        "| option | accuracy | same label as float32 | tokens/s | vs float32 | peak MiB | load s |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        n = r["records"]
        acc = sum(a == b for a, b in zip(r["labels"], r["truth"])) / n
        same = sum(a == b for a, b in zip(r["labels"], ref["labels"])) / n
        rate = r["tokens"] / r["score_s"]
        lines.append(f"| {r['option']} | {acc:.2%} | {same:.2%} | {rate:,.0f} | "
                     f"{rate / (ref['tokens'] / ref['score_s']):.2f}x | {r['peak_mib']:.0f} | {r['load_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "rrna16s-phylum"))
    p.add_argument("--corpus", default=str(ROOT / "data" / "rrna16s"), help="parquet with text and label columns")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, help="only the first N genes")
    p.add_argument("--quick", action="store_true", help="the first 64 genes")
    p.add_argument("--out", help="folder for precision.md and precision.json")
    p.add_argument("--worker", choices=OPTIONS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.quick and not args.limit:
        args.limit = 64
    if args.worker:
        worker(args)
        return 0
    if not Path(args.corpus).exists():
        p.error(f"--corpus {args.corpus!r} does not exist: python -m corpora fetch rrna16s --dest data")
    load_before, start, rows = os.getloadavg()[0], time.perf_counter(), []
    for option in OPTIONS:  # each in a fresh process: its own peak memory, no state from the others
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", option, "--model", args.model,
               "--corpus", args.corpus, "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
        cmd += ["--limit", str(args.limit)] if args.limit else []
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{option}: {r['tokens'] / r['score_s']:,.0f} tokens/s, peak {r['peak_mib']:.0f} MiB "
              f"({time.perf_counter() - start:.0f} s so far)", file=sys.stderr, flush=True)
    text = report(rows, args, time.perf_counter() - start, load_before)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "precision.md").write_text(text)
        (out / "precision.json").write_text(json.dumps(
            [{k: v for k, v in r.items() if k not in ("labels", "truth")} for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
