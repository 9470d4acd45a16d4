"""Batch job at scale: the same job over a corpus grown 1x, 4x and 16x, with throughput and peak memory.

The unit corpus is real sequence data shipped as test fixtures: the 200 16S rRNA genes of
``rRNA16S.gold.sample.fasta`` and the GenBank excerpt ``gbpri1-excerpt.seq`` cut into genome windows, scored
by the committed phylum classifier (``models/rrna16s-phylum``: hidden 128, 2 layers). Size N is the unit
repeated N times under fresh ids, written as ONE parquet file (the case the job must cut into bounded blocks).

Each size runs in a fresh driver process with its own local Ray cluster (so each high-water mark is that
size's own): tokens/s over the whole wall time and in the steady state (from the first result file written
to the last), the driver's peak RSS (VmHWM), and the Ray workers' peak RSS, sampled every 0.25 s from
/proc/PID/status (VmHWM) of every process under the driver (the model actor, the read tasks' workers; the
raylet, GCS and other Ray daemons reported apart). Throughput should stay flat and memory bounded as the
corpus grows.

    python benchmarks/bench_scale.py                      # 1x, 4x, 16x: a few minutes on 2 quiet cores
    python benchmarks/bench_scale.py --quick --out /tmp/smoke  # smoke run (tests/test_benchmarks.py)
    python benchmarks/bench_scale.py --plan-only 20000,200000,2000000  # the driver's planning: peak RSS per size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "corpora"
MODEL = ROOT / "models" / "rrna16s-phylum"
DAEMONS = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env", "ray_client_server")


def unit_corpus(tmp: Path, *, genes: int | None, genome: bool, window: int) -> list[dict]:
    """The unit: ``{id, text}`` rows of the 16S genes (the first ``genes``) and the genome windows."""
    import pyarrow.parquet as pq

    from corpora.genome.convert import convert_to_parquet

    convert_to_parquet([FIXTURES / "rRNA16S.gold.sample.fasta"], tmp / "genes", limit=genes)
    rows = pq.read_table(tmp / "genes", columns=["id", "text"]).to_pylist()
    if genome:
        convert_to_parquet([FIXTURES / "gbpri1-excerpt.seq"], tmp / "genome", window=window)
        rows += pq.read_table(tmp / "genome", columns=["id", "text"]).to_pylist()
    return rows


def write_size(unit: list[dict], copies: int, path: Path) -> int:
    """The unit repeated ``copies`` times under fresh ids, as one parquet file; returns its bytes of text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"{r['id']}#{c}" for c in range(copies) for r in unit]
    texts = [r["text"] for _ in range(copies) for r in unit]
    pq.write_table(pa.table({"id": ids, "text": texts}), path)
    return sum(len(t) for t in texts)


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakSampler(threading.Thread):
    """Every ``interval`` s: the VmHWM of every process under this one (Ray's daemons and workers), kept per
    pid with its kind (``actor`` for the model actor, ``worker`` for other Ray workers, ``daemon``)."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval, self.stop, self.peaks = interval, threading.Event(), {}

    def sample(self) -> None:
        import psutil

        for p in psutil.Process().children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            kind = "daemon" if any(d in cmd for d in DAEMONS) else "actor" if "MapWorker" in cmd else "worker"
            hwm = _vm_hwm_kib(p.pid)
            old = self.peaks.get(p.pid, (kind, 0))
            # A pool worker becomes the model actor once it runs it: keep the actor label.
            self.peaks[p.pid] = ("actor" if "actor" in (kind, old[0]) else kind, max(hwm, old[1]))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def peak_mib(self, kind: str) -> float:
        return max((kib for k, kib in self.peaks.values() if k == kind), default=0) / 1024


def run_one(corpus: Path, out: Path, *, threads: int, block_records: int, batch_size: int) -> dict:
    """One size, in this (fresh) process: the job on a new local Ray cluster, memory sampled throughout."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import pyarrow.parquet as pq
    import ray

    from pipelines import batch
    from pipelines.settings import BatchSettings

    sampler = PeakSampler()
    for attempt in range(3):  # on a loaded machine the raylet may miss Ray's 30 s start-up wait
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception as e:  # Ray raises a plain Exception for it
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
            ray.shutdown()
    ray.data.DataContext.get_current().enable_progress_bars = False
    sampler.start()
    settings = BatchSettings(task="text-classification", model=str(MODEL), input=str(corpus), output=str(out),
                             batch_size=batch_size, block_records=block_records, actors=1, threads=threads,
                             progress_seconds=30)
    stats = batch.run(settings, report=lambda line: None)
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    ray.shutdown()
    parts = sorted(out.glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
    tokens = [sum(pq.read_table(p, columns=["num_tokens"]).column(0).to_pylist()) for p in parts]
    span = parts[-1].stat().st_mtime - parts[0].stat().st_mtime if len(parts) > 1 else 0.0
    return {"records": stats.records, "tokens": stats.tokens, "errors": stats.errors, "blocks": len(parts),
            "wall_s": stats.seconds, "tokens_per_s": stats.tokens_per_second,
            "steady_tokens_per_s": sum(tokens[1:]) / span if span else 0.0,
            "driver_peak_mib": _vm_hwm_kib(os.getpid()) / 1024, "actor_peak_mib": sampler.peak_mib("actor"),
            "worker_peak_mib": sampler.peak_mib("worker"), "daemon_peak_mib": sampler.peak_mib("daemon"),
            "worker_processes": sum(k != "daemon" for k, _ in sampler.peaks.values())}


def short_corpus(path: Path, records: int, *, bases: int = 100, files: int = 1) -> None:
    """``records`` short DNA records (``bases`` each, fresh ids), as ``files`` parquet files under ``path``
    (pyarrow's default row groups: one per file up to 1 M rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_file = -(-records // files)
    for f in range(files):
        lo, hi = f * per_file, min(records, (f + 1) * per_file)
        letters = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (hi - lo) * bases)]
        texts = pa.Array.from_buffers(pa.string(), hi - lo, [None, pa.py_buffer(
            np.arange(0, (hi - lo + 1) * bases, bases, dtype=np.int32)), pa.py_buffer(letters.tobytes())])
        ids = pa.array([f"read-{i:09d}" for i in range(lo, hi)])
        pq.write_table(pa.table({"id": ids, "text": texts}), path / f"part-{f:04d}.parquet")


def plan_one(corpus: Path, out: Path) -> dict:
    """The driver's work before Ray starts (checks, id count, planning), in this fresh process: its peak RSS."""
    import time

    from pipelines import inputs
    from pipelines.settings import BatchSettings

    start = time.perf_counter()
    baseline = _vm_hwm_kib(os.getpid()) / 1024
    job = inputs.plan_job(BatchSettings(task="text-classification", model=str(MODEL), input=str(corpus),
                                        output=str(out)))
    import pyarrow as pa

    return {"parts": len(job.parts), "plan_s": time.perf_counter() - start, "import_peak_mib": baseline,
            "driver_peak_mib": _vm_hwm_kib(os.getpid()) / 1024,
            "arrow_peak_mib": pa.default_memory_pool().max_memory() / 2**20}


def plan_sizes(sizes: list[int], pythonpath: str | None) -> None:
    """:func:`plan_one` per corpus size, each in a fresh process (``pythonpath`` first: another checkout's
    ``pipelines`` to compare against)."""
    with tempfile.TemporaryDirectory() as tmp:
        for records in sizes:
            corpus = Path(tmp) / f"short-{records}"
            short_corpus(corpus, records)
            path = os.pathsep.join(filter(None, [pythonpath, str(ROOT), os.environ.get("PYTHONPATH")]))
            proc = subprocess.run([sys.executable, __file__, "--plan-one", str(corpus), str(Path(tmp) / f"o{records}")],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, cwd=ROOT)
            result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")),
                          None)
            if proc.returncode or result is None:
                raise SystemExit(f"{records} records failed:\n{proc.stderr[-3000:]}")
            print(f"{records:,} short records: driver peak RSS {result['driver_peak_mib']:.0f} MiB (after imports "
                  f"{result['import_peak_mib']:.0f} MiB; Arrow's pool at most {result['arrow_peak_mib']:.0f} MiB), planning {result['plan_s']:.1f} s, {result['parts']:,} "
                  f"blocks", flush=True)
            shutil.rmtree(corpus)


def table(rows: list[dict]) -> str:
    lines = ["| size | records | tokens | blocks | wall s | tokens/s (wall) | tokens/s (steady) | driver peak MiB "
             "| model actor peak MiB | other workers peak MiB | Ray daemons peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']}x | {r['records']:,} | {r['tokens']:,} | {r['blocks']} | {r['wall_s']:.1f} "
                     f"| {r['tokens_per_s']:,.0f} | {r['steady_tokens_per_s']:,.0f} | {r['driver_peak_mib']:.0f} "
                     f"| {r['actor_peak_mib']:.0f} | {r['worker_peak_mib']:.0f} | {r['daemon_peak_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,4,16", help="corpus sizes, in units (default 1,4,16)")
    parser.add_argument("--genes", type=int, default=None, help="16S genes per unit (default: all 200)")
    parser.add_argument("--no-genome", dest="genome", action="store_false", help="no genome windows in the unit")
    parser.add_argument("--window", type=int, default=8192, help="bases per genome window (default 8192)")
    parser.add_argument("--block-records", type=int, default=64, help="records per block (default 64)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the actor")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for scale.{md,json}")
    parser.add_argument("--quick", action="store_true", help="40 genes, no genome, sizes 1 and 2: a smoke run")
    parser.add_argument("--run-one", nargs=2, metavar=("CORPUS", "OUTPUT"), help=argparse.SUPPRESS)
    parser.add_argument("--plan-only", metavar="RECORDS", help="only the driver's planning (no Ray) over short "
                        "records, e.g. 20000,200000,2000000: its peak RSS per size")
    parser.add_argument("--pythonpath", help="with --plan-only: a checkout whose pipelines/ to measure instead")
    parser.add_argument("--plan-one", nargs=2, metavar=("CORPUS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan_one:
        print("RESULT " + json.dumps(plan_one(Path(args.plan_one[0]), Path(args.plan_one[1]))))
        return
    if args.plan_only:
        plan_sizes([int(s) for s in args.plan_only.split(",")], args.pythonpath)
        return
    if args.run_one:
        result = run_one(Path(args.run_one[0]), Path(args.run_one[1]), threads=args.threads,
                         block_records=args.block_records, batch_size=args.batch_size)
        print("RESULT " + json.dumps(result))
        return
    if args.quick:
        args.sizes, args.genes, args.genome, args.block_records = "1,2", 40, False, 10
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        unit = unit_corpus(tmp, genes=args.genes, genome=args.genome, window=args.window)
        for size in sizes:
            corpus = tmp / f"corpus-{size}x.parquet"
            text_bytes = write_size(unit, size, corpus)
            cmd = [sys.executable, __file__, "--run-one", str(corpus), str(tmp / f"out-{size}x"), "--threads",
                   str(args.threads), "--block-records", str(args.block_records), "--batch-size", str(args.batch_size)]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")),
                          None)
            if proc.returncode or result is None:
                raise SystemExit(f"size {size}x failed:\n{proc.stderr[-3000:]}")
            rows.append({"size": size, "text_bytes": text_bytes, **result})
            print(f"{size}x: {result['records']:,} records, {result['tokens']:,} tokens, {result['wall_s']:.1f} s",
                  flush=True)
    report = table(rows)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    header = (f"model {MODEL.name} (hidden 128, 2 layers, windows of 512 tokens), 1 model actor, torch threads "
              f"{args.threads}, blocks of {args.block_records} records, unit {len(unit)} records; load average "
              f"before the table: {load}")
    print(header)
    print(report)
    base = rows[0]
    for r in rows[1:]:
        print(f"{r['size']}x vs {base['size']}x: tokens x{r['tokens'] / base['tokens']:.2f}, steady tokens/s "
              f"x{r['steady_tokens_per_s'] / max(1e-9, base['steady_tokens_per_s']):.2f}, driver peak "
              f"x{r['driver_peak_mib'] / base['driver_peak_mib']:.2f}, model actor peak "
              f"x{r['actor_peak_mib'] / max(1e-9, base['actor_peak_mib']):.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.md").write_text(f"{header}\n\n{report}\n")
    (out / "scale.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
