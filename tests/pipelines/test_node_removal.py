"""A worker node removed mid batch job on a simulated multi-node cluster (``ray.cluster_utils.Cluster``: a 1-CPU
head and two 2-CPU worker raylets on this machine): the job finishes, or a re-run of it does, with every id in
the output exactly once and no duplicate rows.

Two model actors take a CPU each, so at least one lands on a worker node; once about a quarter of the blocks
are written, the node of one model actor is removed and every process it started killed (its actor, and any
read task there). Ray Data restarts the actor on the nodes left (3 CPUs: the two actors plus a reader) and
retries the blocks that were lost; a block is written under a temporary name and renamed, so one scored twice
replaces its file rather than adding rows. What happened (blocks written before the removal, whether the job
itself finished) is printed (``-s``).

This test makes its own cluster, so it ends the session's local Ray first (and brings it back afterwards).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import batch, manifest
from pipelines.settings import BatchSettings
from tests.cluster import hosts as cluster_hosts
from tests.cluster import remove_node, simulated_cluster
from tests.helpers import SPM_LINES

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
RECORDS, BLOCK = 240, 2
FIRST_ID = 50_000


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.parquet"))


@pytest.fixture
def cluster():
    with simulated_cluster(1, [2, 2], object_store_mib=200) as c_workers:
        yield c_workers


def test_worker_node_removed_mid_batch_job_keeps_every_id_once(cluster, task_models, tmp_path):
    c, workers = cluster
    corpus = tmp_path / "corpus.parquet"
    texts = [" ".join(SPM_LINES[(i + k) % len(SPM_LINES)] for k in range(3)) for i in range(RECORDS)]
    ids = list(range(FIRST_ID, FIRST_ID + RECORDS))
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "text": texts}), corpus)
    out = tmp_path / "out"
    settings = BatchSettings(task="text-classification", model=str(task_models["text-classification"]),
                             input=str(corpus), output=str(out), block_records=BLOCK, stride=32, actors=2,
                             threads=1, progress_seconds=2)
    lines: list[str] = []
    outcome: dict = {}

    def score() -> None:
        try:
            outcome["stats"] = batch.run(settings, report=lines.append)
        except BaseException as e:  # noqa: BLE001 - the re-run below covers a job that stops
            outcome["error"] = e

    thread = threading.Thread(target=score, daemon=True)
    thread.start()
    blocks = RECORDS // BLOCK
    deadline = time.monotonic() + 400
    while len(_parts(out)) < blocks // 4 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    hosts = list(cluster_hosts(workers, "MapWorker"))
    written_before = len(_parts(out))
    assert thread.is_alive() and written_before < blocks, (outcome, written_before, lines[-3:])
    assert hosts, "no model actor on a worker node"
    killed = remove_node(c, hosts[0])
    psutil.wait_procs(killed, timeout=60)
    thread.join(timeout=400)
    assert not thread.is_alive(), f"the job did not end after the node removal: {lines[-3:]}"
    finished = "stats" in outcome
    rerun = None
    if not finished:  # the job stopped: a re-run scores only what is missing
        rerun = batch.run(settings, report=lines.append)
        assert rerun.skipped + rerun.records == RECORDS, (rerun, outcome)
    print(f"\n[batch nodes] {written_before} of {blocks} blocks written before the node removal; job "
          f"{'finished' if finished else 'stopped: ' + repr(outcome.get('error'))[:300]}; "
          f"re-run {rerun and rerun.summary()}; last line {lines[-1]!r}")

    parts = _parts(out)
    assert len(parts) == blocks and all(manifest.PART.match(p.name) for p in parts)
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    got = table.column("id").to_pylist()
    assert len(got) == RECORDS and sorted(got) == ids  # every id exactly once: no duplicate rows, none missing
    assert table.column("error").null_count == RECORDS
    again = batch.run(settings, report=lines.append)  # nothing left to score
    assert (again.records, again.skipped) == (0, RECORDS)
