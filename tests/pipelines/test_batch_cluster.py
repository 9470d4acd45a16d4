"""A cluster that cannot run the read and the model at once gets a clear error, not a job waiting forever;
progress lines a person can read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import batch, console
from pipelines.progress import Progress, follow
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": SPM_LINES[:3]}), path)
    return path


def test_resources_the_job_needs_at_once():
    batch.check_resources({"CPU": 2.0}, actors=1, actor_cpus=1, actor_gpus=0)
    batch.check_resources({"CPU": 1.0, "GPU": 2.0}, actors=2, actor_cpus=0, actor_gpus=1)
    with pytest.raises(ValueError, match=r"has 1 CPU\(s\) and 0 GPU\(s\), but the job needs 2 CPU\(s\) at once "
                                         r"\(1 model actor\(s\) with 1 CPU and 0 GPU each, plus 1 CPU to read"):
        batch.check_resources({"CPU": 1.0}, actors=1, actor_cpus=1, actor_gpus=0)
    with pytest.raises(ValueError, match=r"needs 1 CPU\(s\) and 4 GPU\(s\)"):
        batch.check_resources({"CPU": 8.0, "GPU": 2.0}, actors=2, actor_cpus=0, actor_gpus=2)


def test_too_many_actors_for_the_cluster_fail_before_any_block(ray_cluster, task_models, corpus, tmp_path):
    settings = BatchSettings(task="text-classification", model=str(task_models["text-classification"]),
                             input=str(corpus), output=str(tmp_path / "out"), actors=4)  # the cluster has 4 CPUs
    with pytest.raises(ValueError, match=r"has 4 CPU\(s\) and 0 GPU\(s\), but the job needs 5 CPU\(s\)"):
        batch.run(settings)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_bigbird_batch.json"]


def test_a_one_cpu_cluster_gets_an_error_not_a_hang(task_models, corpus, tmp_path):
    script = (f"import sys, ray; from pipelines import batch; "
              f"ray.init(address='local', num_cpus=1, include_dashboard=False, log_to_driver=False); "
              f"sys.exit(batch.main(['--task', 'text-classification', '--model', "
              f"{str(task_models['text-classification'])!r}, '--input', {str(corpus)!r}, "
              f"'--output', {str(tmp_path / 'out')!r}]))")
    env = {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)  # today's job waits forever here
    assert done.returncode == 1, done.stderr[-2000:]  # the job could not run (bigbird.commands)
    assert "bigbird batch: error: the Ray cluster has 1 CPU(s) and 0 GPU(s), but the job needs 2 CPU(s)" in done.stderr


def test_a_cluster_that_loses_its_cpus_mid_job_stops_with_the_reason(monkeypatch):
    class FakeRay:
        resources = {"CPU": 4.0}

        def cluster_resources(self):
            return self.resources

    fake = FakeRay()
    check = batch._watchdog(fake, actors=1, actor_cpus=1, actor_gpus=0)
    check()
    fake.resources = {"CPU": 1.0}  # a node lost: the actor holds the only CPU
    monkeypatch.setattr(batch, "RESOURCE_GRACE_S", 0.0)
    with pytest.raises(ValueError, match=r"stopped: for 0 s the Ray cluster has 1 CPU\(s\)"):
        check()


def test_progress_lines_give_records_tokens_rate_and_eta():
    now = [100.0]
    progress = Progress(total=1000, skipped=200, clock=lambda: now[0])
    now[0] = 104.0
    assert progress.line() == ("scored 0 of 1,000 records (0.0%, 200 done earlier), waiting for the first block "
                               "(4 s so far)")
    progress.add({"records": 250, "errors": 3, "tokens": 50_000, "padding_tokens": 10})
    now[0] = 110.0
    assert progress.line() == ("scored 250 of 1,000 records (25.0%, 200 done earlier), 50.0k of ~200.0k tokens, "
                               "5,000 tokens/s, 25.0 records/s, errors 3, part files 1, ETA 30 s")
    progress.add({"records": 50, "errors": 0, "tokens": 10_000, "padding_tokens": 0})
    now[0] = 400.0
    assert progress.line().endswith("1.0 records/s, errors 3, part files 2, ETA 11 min 40 s")  # 700 left at 1/s


def test_the_console_drops_rays_constructor_arguments_line_only(capfd):
    with console.quiet():
        os.write(2, b"[2026-12-08 01:00:00,000 E 1 2] core_worker.cc:2170: Actor with class name: 'MapWorker' and "
                    b"ID: 'ab' has constructor arguments in the object store and max_restarts > 0. If the ...\n")
        os.write(2, b"bigbird batch: scored 1 of 2 records\nno newline at the end")
    err = capfd.readouterr().err
    assert err == "bigbird batch: scored 1 of 2 records\nno newline at the end"
    os.write(2, b"has constructor arguments in the object store and max_restarts > 0\n")  # outside: kept
    assert "constructor arguments" in capfd.readouterr().err


def test_follow_reports_while_waiting_and_raises_the_jobs_error():
    lines: list[str] = []

    def rows():
        yield {"records": 2, "errors": 0, "tokens": 9, "padding_tokens": 0}
        raise RuntimeError("a block failed")

    progress = Progress(total=4)
    with pytest.raises(RuntimeError, match="a block failed"):
        follow(rows, progress, interval=0.01, report=lines.append)
    assert progress.records == 2

    def stalled():
        import time

        time.sleep(0.3)
        return iter([{"records": 4, "errors": 1, "tokens": 20, "padding_tokens": 2}])

    progress = Progress(total=4)
    follow(stalled, progress, interval=0.05, report=lines.append)
    assert any("waiting for the first block" in line for line in lines) and progress.errors == 1
