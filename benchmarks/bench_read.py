"""Reading a corpus's blocks: block by block (each block streams its row group from the first row) against one
pass per row group (:func:`pipelines.stages.read_blocks`, what the batch job does).

One parquet file of N short records in ONE row group (pyarrow's default for a file written at once), blocks of
256 rows. The one pass reads every block; block by block is timed on ``--samples`` blocks spread over the file
and extrapolated (its cost grows linearly with the block's offset, so the mean of evenly spread samples times
the number of blocks is its total); rows decoded are counted for both.

    python benchmarks/bench_read.py                 # 1,000,000 rows
    python benchmarks/bench_read.py --rows 100000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--samples", type=int, default=9, help="blocks timed block by block")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.parquet"
        bases = "ACGT" * 25
        pq.write_table(pa.table({"id": [f"r{i}" for i in range(args.rows)],
                                 "text": [bases[i % 4:] + bases[:i % 4] for i in range(args.rows)]}), path)
        assert pq.ParquetFile(path).metadata.num_row_groups == 1
        fs, _ = stages.filesystem(str(path))
        ranges = [(s, min(s + args.block, args.rows)) for s in range(0, args.rows, args.block)]
        cpu0, t0 = _cpu(), time.perf_counter()
        rows = sum(t.num_rows for _, _, t in stages.read_blocks(fs, str(path), ranges, ["id", "text"]))
        one_pass, one_cpu = time.perf_counter() - t0, _cpu() - cpu0
        assert rows == args.rows
        picks = [ranges[round(k * (len(ranges) - 1) / (args.samples - 1))] for k in range(args.samples)]
        times, cpus = [], []
        for start, stop in picks:
            cpu0, t0 = _cpu(), time.perf_counter()
            stages.read_rows(fs, str(path), start, stop, ["id", "text"])
            times.append(time.perf_counter() - t0)
            cpus.append(_cpu() - cpu0)
        per_block, per_block_cpu = sum(times) / len(times), sum(cpus) / len(cpus)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.rows:,} rows in one row group, {len(ranges):,} blocks of {args.block}; load average {load}")
    print(f"one pass per row group: {one_pass:.2f} s wall ({one_cpu:.2f} s CPU), {args.rows:,} rows decoded")
    print("block by block (wall, CPU): " + ", ".join(f"block at row {s:,}: {t * 1e3:.0f} / {c * 1e3:.0f} ms"
                                                    for (s, _), t, c in zip(picks, times, cpus)))
    decoded = sum(stop for _, stop in ranges)
    print(f"block by block, extrapolated: {per_block * len(ranges):.0f} s wall, {per_block_cpu * len(ranges):.0f} s "
          f"CPU for all blocks ({decoded:,} rows decoded); {per_block_cpu / one_cpu * len(ranges):.0f}x the one "
          f"pass's CPU time")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
