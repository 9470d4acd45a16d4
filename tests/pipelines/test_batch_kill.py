"""A single-file corpus scored in bounded blocks written as they finish: SIGKILL the driver half-way, re-run,
and the earlier blocks are kept, the rest scored, every id exactly once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import batch, manifest
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES

ROOT = Path(__file__).resolve().parents[2]
RECORDS, BLOCK = 400, 2


def _parts(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}


def test_sigkill_of_the_driver_keeps_every_written_block(ray_cluster, task_models, tmp_path):
    corpus = tmp_path / "one-export.parquet"
    texts = [" ".join(SPM_LINES[(i + k) % len(SPM_LINES)] for k in range(3)) for i in range(RECORDS)]
    pq.write_table(pa.table({"id": pa.array(range(10_000, 10_000 + RECORDS), pa.int64()), "text": texts}), corpus)
    assert pq.ParquetFile(corpus).metadata.num_row_groups == 1  # one file, one row group: the hard case
    out, model = tmp_path / "out", str(task_models["text-classification"])
    args = ["--task", "text-classification", "--model", model, "--input", str(corpus), "--output", str(out),
            "--block-records", str(BLOCK), "--stride", "32", "--progress-seconds", "1"]
    script = ("import sys, ray; from pipelines import batch; "
              "ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False); "
              f"sys.exit(batch.main({args!r}))")
    env = {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "driver.log"
    with open(log, "w") as f:
        driver = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=f, stderr=f,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while len(_parts(out)) < RECORDS // BLOCK // 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert driver.poll() is None, f"the driver ended before it was killed:\n{log.read_text()[-2000:]}"
        os.kill(driver.pid, signal.SIGKILL)  # the driver, half-way through the job
        driver.wait()
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # then what it started (its local Ray cluster)
        except ProcessLookupError:
            pass
    time.sleep(2)
    kept = _parts(out)
    written = sum(pq.read_metadata(out / name).num_rows for name in kept)
    assert 0 < written < RECORDS, f"{written} of {RECORDS} records written before the kill"
    assert re.search(rf"scored \d+ of {RECORDS} records", log.read_text())

    lines: list[str] = []
    second = batch.run(BatchSettings(task="text-classification", model=model, input=str(corpus), output=str(out),
                                     block_records=BLOCK, stride=32, progress_seconds=1), report=lines.append)
    print(f"first run wrote {written} records in {len(kept)} blocks before SIGKILL; "
          f"second run scored {second.records}, skipped {second.skipped}")
    assert second.skipped == written and second.records == RECORDS - written
    after = _parts(out)
    assert all(after[name] == data for name, data in kept.items())  # earlier blocks kept as they were
    ids = pa.concat_tables(pq.read_table(out / name) for name in after).column("id")
    assert ids.type == pa.int64() and sorted(ids.to_pylist()) == list(range(10_000, 10_000 + RECORDS))
    assert len(after) == RECORDS // BLOCK and all(manifest.PART.match(name) for name in after)
    assert lines[-1].startswith(f"scored {RECORDS - written:,} of {RECORDS - written:,} records (100.0%, "
                                f"{written:,} done earlier)")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
