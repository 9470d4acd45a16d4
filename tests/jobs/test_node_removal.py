"""A worker node removed mid fine-tuning on a simulated multi-node cluster (``ray.cluster_utils.Cluster``: a
head and three 2-CPU worker raylets on this machine): the run resumes from its last checkpoint and finishes.

Train workers take 2 CPUs each, so they land on the worker nodes (the head has 1 CPU, for the data tasks);
once Ray Train has registered a checkpoint (uploaded is not enough: a removal in between restarts the run from
scratch), the node of one train worker is removed and its processes killed. The third
worker node gives the restarted group room, as an autoscaler's replacement node would. The recovery time
(node removed -> first checkpoint of the restarted group) and the step it resumed from are printed (``-s``).

This test makes its own cluster, so it ends the session's local Ray first (and brings it back afterwards).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jobs.finetune import run
from jobs.settings import load_settings
from jobs.train_loop import RAY_CHECKPOINT_SNAPSHOT
from tests.cluster import hosts as cluster_hosts
from tests.cluster import remove_node, simulated_cluster
from tests.jobs.conftest import TINY_SCRATCH, job, trainer_state
from tests.jobs.test_train import assert_resumed_without_repeats

pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]
EVERY, LAST = 4, 24


def _checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints Ray Train has registered (named in its snapshot), not merely uploaded: a restart resumes
    only from those (its controller polls the workers every 2 s)."""
    snapshot = run_dir / RAY_CHECKPOINT_SNAPSHOT
    try:
        text = snapshot.read_text()
    except OSError:
        return []
    return sorted(p for p in run_dir.glob("checkpoint_*") if p.is_dir() and p.name in text
                  and (p / "trainer_state.json").is_file())


@pytest.fixture
def cluster():
    with simulated_cluster(1, [2, 2, 2]) as c_workers:
        yield c_workers


def test_worker_node_removed_mid_finetuning_resumes_from_last_checkpoint(cluster, corpus, tmp_path):
    c, workers = cluster
    data = {"train": str(corpus["rrna16s"]), "max_length": 128, "stride": 16, "first_window_only": True}
    settings = job(tmp_path, "text-classification", {"from_scratch": TINY_SCRATCH, "tokenizer": "dna"}, data,
                   name="nodes", train={"max_steps": LAST, "checkpoint_every_steps": EVERY, "log_every": 4},
                   scaling={"num_workers": 2, "cpus_per_worker": 2}, run={"max_failures": 3})
    run_dir = tmp_path / "runs" / "nodes"
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["summary"] = run(load_settings(data=settings))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = e

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    deadline = time.monotonic() + 900
    while not _checkpoints(run_dir) and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert thread.is_alive() and _checkpoints(run_dir), outcome or "no checkpoint before the deadline"
    before = {p.name for p in _checkpoints(run_dir)}
    hosts = cluster_hosts(workers, "RayTrainWorker")
    assert len(hosts) == 2 and all(len(found) == 1 for found in hosts.values()), hosts  # one per node
    node, (victim,) = next(iter(hosts.items()))
    removed_at = time.monotonic()
    remove_node(c, node)
    victim.wait(timeout=60)  # the train worker on that node is gone
    recovered = None
    while thread.is_alive() and time.monotonic() < deadline:
        if recovered is None and {p.name for p in _checkpoints(run_dir)} - before:
            recovered = time.monotonic() - removed_at
        time.sleep(0.5)
    thread.join(timeout=5)
    assert "error" not in outcome and "summary" in outcome, outcome
    history = trainer_state(outcome["summary"]["export_dir"])["history"]
    print(f"\n[nodes] history {history}; checkpoints before the removal {sorted(before)}; "
          f"removal -> first new checkpoint {recovered and round(recovered, 1)} s")
    assert_resumed_without_repeats(history, every=EVERY, last=LAST)
    assert len(history) >= 2 and history[1][0] > 1, history  # resumed from a checkpoint, not from scratch
    assert outcome["summary"]["metrics"]["step"] == LAST
