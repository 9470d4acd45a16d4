"""The batch job against a bare Ray Data pipeline on the same short records, model, batch size and CPUs.

Bare: ``read_parquet -> map_batches(tokenize + forward, one actor) -> write_parquet``, the in-process task
pipeline (``bigbird.tasks.pipeline``) as the actor's model; ours: ``bigbird batch`` with its defaults (lease,
id check, resume, blocks). Each run in a fresh process with its own local Ray cluster (2 CPUs, one model actor
with ``--threads`` torch threads): records/s over the run's wall time, the driver's peak RSS, result files.

    nice -n 19 python benchmarks/bench_bare.py --records 20000        # a short size, on a loaded machine
    python benchmarks/bench_bare.py --records 200000,1000000           # quiet machine: the issue's sizes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_scale import MODEL, _vm_hwm_kib, short_corpus  # noqa: E402


class Forward:
    """The bare pipeline's actor: the task pipeline loaded once; a batch of records in, labels out."""

    def __init__(self, model: str, batch_size: int, threads: int) -> None:
        import torch

        from bigbird.tasks import pipeline

        torch.set_num_threads(threads)
        self.pipe = pipeline("text-classification", model, batch_size=batch_size)

    def __call__(self, batch):
        import pyarrow as pa

        out = self.pipe(batch.column("text").to_pylist())
        best = [r[0] if isinstance(r, list) else r for r in out]
        return pa.table({"id": batch.column("id"), "label": [b["label"] for b in best],
                         "score": [float(b["score"]) for b in best]})


def run_one(kind: str, corpus: Path, out: Path, batch_size: int, threads: int) -> dict:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    start = time.perf_counter()
    if kind == "bare":
        from ray.data import ActorPoolStrategy

        ds = ray.data.read_parquet(str(corpus))
        ds.context.enable_progress_bars = False
        ds = ds.map_batches(Forward, batch_format="pyarrow", batch_size=256, compute=ActorPoolStrategy(size=1),
                            num_cpus=1, fn_constructor_kwargs={"model": str(MODEL), "batch_size": batch_size,
                                                               "threads": threads})
        ds.write_parquet(str(out))
    else:
        from pipelines import batch
        from pipelines.settings import BatchSettings

        batch.run(BatchSettings(task="text-classification", model=str(MODEL), input=str(corpus),
                                        output=str(out), batch_size=batch_size, actors=1, threads=threads,
                                        progress_seconds=60), report=lambda line: None)
    wall = time.perf_counter() - start
    ray.shutdown()
    import pyarrow.parquet as pq

    files = sorted(out.glob("*.parquet"))
    records = sum(pq.read_metadata(f).num_rows for f in files)
    return {"records": records, "wall_s": wall, "records_per_s": records / wall, "files": len(files),
            "driver_peak_mib": _vm_hwm_kib(os.getpid()) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", default="20000", help="corpus sizes, comma-separated (default 20000)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--run-one", nargs=3, metavar=("KIND", "CORPUS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        kind, corpus, out = args.run_one
        print("RESULT " + json.dumps(run_one(kind, Path(corpus), Path(out), args.batch_size, args.threads)))
        return
    with open("/proc/loadavg") as f:
        print(f"load average before: {' '.join(f.read().split()[:3])}; model {MODEL.name}, batch "
              f"{args.batch_size}, threads {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        for records in [int(r) for r in args.records.split(",")]:
            corpus = Path(tmp) / f"short-{records}"
            short_corpus(corpus, records)
            got = {}
            for kind in ("bare", "ours"):
                cmd = [sys.executable, __file__, "--run-one", kind, str(corpus), str(Path(tmp) / f"{kind}-{records}"),
                       "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                result = next((json.loads(line[7:]) for line in proc.stdout.splitlines()
                               if line.startswith("RESULT ")), None)
                if proc.returncode or result is None:
                    raise SystemExit(f"{kind} at {records} failed:\n{proc.stderr[-3000:]}")
                got[kind] = result
                print(f"{records:,} records, {kind}: {result['records_per_s']:,.0f} records/s, "
                      f"{result['wall_s']:.1f} s, {result['files']} files, driver peak {result['driver_peak_mib']:.0f} "
                      f"MiB", flush=True)
            print(f"{records:,} records: ours / bare records/s {got['ours']['records_per_s'] / got['bare']['records_per_s']:.2f}x")


if __name__ == "__main__":
    main()
