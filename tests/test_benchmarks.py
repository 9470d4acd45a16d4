"""Smoke test: each benchmark runs with --quick, prints ratios against the reference and writes its plot."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common, contention
from benchmarks.bench_model import _crossover

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script,name,extra", [
    ("bench_attention.py", "attention", []),
    ("bench_model.py", "model", []),
    ("bench_train.py", "train", []),
    ("bench_train.py", "train_interleaved_busy1", ["--interleaved", "--contention", "1"]),
])
def test_benchmark_quick_run(tmp_path, script, name, extra):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(tmp_path),
                           *extra], capture_output=True, text=True, timeout=240, cwd=ROOT)  # a loaded machine is slow
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "speed-up vs hf" in out and "GFLOP/s" in out and "% of mm" in out and "peak MiB" in out
    lines = [line.strip("|").split("|") for line in out.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0]]
    col = next(i for i, h in enumerate(header) if h.startswith("speed-up vs hf"))
    ratios = [cells[col].strip() for cells in lines[2:] if "ours" in "|".join(cells)]
    assert ratios and all(float(r) > 0 for r in ratios), out  # every row of ours has a measured ratio
    png = tmp_path / f"{name}.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"{name}.md").exists()
    spec = json.loads((tmp_path / f"{name}.json").read_text())["spec"]
    assert spec["contention"] == (1 if "--contention" in extra else 0) and spec["device"] == "cpu"


def _rows(sparse: dict[int, float], full: dict[int, float]) -> list[dict]:
    return ([{"impl": "ours_sparse", "mode": "forward", "length": L, "time_s": t} for L, t in sparse.items()]
            + [{"impl": "ours_full", "mode": "forward", "length": L, "time_s": t} for L, t in full.items()])


def test_crossover_reports_what_was_measured_in_any_order():
    # Faster at 1,024 but not at the longest length (a loaded machine): no crossover is claimed.
    mixed = _crossover(_rows({768: 1.0, 1024: 1.0, 2048: 3.0}, {768: 0.9, 1024: 1.2, 2048: 2.5}))
    assert mixed.startswith("no single crossover") and "[1024]" in mixed and "[768, 2048]" in mixed
    assert "2048: 0.83x" in mixed
    clean = _crossover(_rows({768: 1.0, 1024: 1.0, 2048: 2.0}, {768: 0.9, 1024: 1.2, 2048: 2.5}))
    assert clean.startswith("block-sparse is faster from 1024 tokens up (crossover between 768 and 1024)")
    assert _crossover(_rows({1024: 1.0}, {1024: 2.0})).startswith("block-sparse is faster from 1024 tokens up "
                                                                  "(crossover at or below 1024)")
    assert _crossover(_rows({1024: 2.0, 2048: 5.0}, {1024: 1.0, 2048: 4.0})).startswith("full attention is faster")
    assert _crossover(_rows({1024: 1.0}, {2048: 1.0})) == "not measured"


def test_caps_take_any_modes_and_name_the_bad_one():
    modes = ("forward", "step+ckpt")
    caps = common.caps({"a:forward": 8}, ["a:step+ckpt=4", "b:*=2"], ["a", "b"], modes)
    assert caps == {"a:forward": 8, "a:step+ckpt": 4, "b:forward": 2, "b:step+ckpt": 2}
    with pytest.raises(ValueError, match="'a:step=4'.*modes \\['forward', 'step\\+ckpt'\\]"):
        common.caps({}, ["a:step=4"], ["a"], modes)


def _niceness(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])  # field 19 of proc(5), counted after the command name


def test_busy_processes_run_at_our_niceness_and_are_stopped_on_an_error():
    with pytest.raises(RuntimeError, match="boom"):
        with contention.busy(2) as procs:
            assert len(procs) == 2 and all(p.poll() is None for p in procs)
            assert [_niceness(p.pid) for p in procs] == [contention.niceness()] * 2
            raise RuntimeError("boom")
    assert all(p.returncode is not None for p in procs)
    with pytest.raises(ValueError, match="-1"):
        contention.start(-1)


def test_scale_benchmark_quick_run(tmp_path):
    """Two sizes of the corpus, each in its own driver and Ray cluster: the tokens scale exactly with the size,
    and every rate and peak memory is measured."""
    import json

    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_scale.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| size | records | tokens |" in proc.stdout and "driver peak MiB" in proc.stdout
    rows = json.loads((tmp_path / "scale.json").read_text())
    assert [r["size"] for r in rows] == [1, 2]
    one, two = rows
    assert one["errors"] == two["errors"] == 0 and two["records"] == 2 * one["records"] > 0
    assert two["tokens"] == 2 * one["tokens"] > 0  # the corpus repeated under fresh ids: same tokens each copy
    for r in rows:
        assert r["tokens_per_s"] > 0 and r["steady_tokens_per_s"] > 0 and r["blocks"] > 1
        assert r["driver_peak_mib"] > 0 and r["actor_peak_mib"] > 0 and r["worker_processes"] >= 1
    assert (tmp_path / "scale.md").read_text().count("\n| ") == 3  # header + 2 rows after the separator


def test_flash_shapes_quick_run(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_flash_shapes.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "flash_shapes.json").read_text())
    assert [s["queries"] for s in result["shapes"]] == [32, 224, 16, 16]  # 256 tokens, block 16: 14 middle blocks
    assert all(s["gflops"] > 0 for s in result["shapes"]) and result["ceiling_gflops"] > 0
    assert len(result["grid"]) == 15 and "% of mm" in proc.stdout


def test_kernels_benchmark_compares_the_glue_settings_beside_a_busy_process(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_kernels.py"), "--length", "512",
                           "--repeat", "1", "--glue-pairs", "2", "--contention", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "kernels_busy1.md").read_text()
    assert "load: 1 busy processes" in report
    tables = [[c.strip() for c in line.strip().strip("|").split("|")] for line in report.splitlines()
              if line.startswith("|") and not line.startswith("|-")]
    kernels = {cells[0]: cells for cells in tables[1:] if cells[0] != "kernel"}
    assert {"cpu_flash", "sdpa_gather", "explicit"} <= set(kernels)
    assert all(float(cells[6]) < 1e-4 for name, cells in kernels.items() if len(cells) == 8)  # max |diff|
    glue = {name: cells for name, cells in kernels.items() if len(cells) == 5}  # best, median, mean, calls
    assert set(glue) == {"cpu_flash, glue on the calling thread (default)",
                         "cpu_flash, glue on every thread (before)"}
    assert all(cells[4] == "2" and float(cells[1]) > 0 for cells in glue.values())


def test_serve_benchmark_quick_run(tmp_path):
    """The three configurations (batched, unbatched, plain FastAPI + transformers) each answer every request and
    report throughput, latency percentiles and mean batch; the served scores equal transformers'. Before the
    plain baseline was kept out of Serve, this run never finished (a third model replica could not be placed)."""
    out = tmp_path / "serve.json"
    requests = 4
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_serve.py"), "--clients", "2",
                           "--requests", str(requests), "--rounds", "2", "--tokens", "64", "--hidden", "64",
                           "--layers", "1", "--max-batch-size", "4", "--num-cpus", "2", "--max-seconds", "120",
                           "--deploy-timeout", "180", "--timeout", "540", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    results = data["results"]
    assert sorted(results) == ["batched", "plain", "unbatched"]
    for name, r in results.items():
        assert r["ok"] == requests and r["errors"] == {}, (name, r)
        assert r["throughput"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"], (name, r)
        assert len(r["round_throughputs"]) == 2
        assert r["cpu_ms_per_request"] > 0, (name, r)  # the server processes' CPU was measured
    assert "plain" in results["plain"]["cpu_ms_per_request_by_process"]
    assert any("TaskModel" in k for k in results["batched"]["cpu_ms_per_request_by_process"])
    assert results["unbatched"]["mean_batch"] == results["plain"]["mean_batch"] == 1.0
    assert 1.0 <= results["batched"]["mean_batch"] <= 4.0
    assert data["same_model"] <= 1e-4  # the same weights answer alike in ours and in transformers
    for name in results:
        assert f"{name} (max_batch" in proc.stdout


def test_serve_benchmark_names_an_application_that_never_starts():
    """``serve.run_many`` waits forever for a replica the cluster cannot place; the benchmark's wait gives up at
    its deadline and says what Serve reports of each application."""
    from types import SimpleNamespace

    from benchmarks.bench_serve import wait_running

    pending = SimpleNamespace(status="DeploymentStatus.UPDATING",
                              message="1 replicas that have taken more than 30s to be scheduled")
    apps = {"batched": SimpleNamespace(status="ApplicationStatus.RUNNING", message="", deployments={}),
            "unbatched": SimpleNamespace(status="ApplicationStatus.DEPLOYING", message="",
                                         deployments={"TaskModel": pending})}
    fake = SimpleNamespace(status=lambda: SimpleNamespace(applications=apps))
    with pytest.raises(RuntimeError, match="unbatched: ApplicationStatus.DEPLOYING.*TaskModel.*30s to be sched"):
        wait_running(fake, ["batched", "unbatched"], 0.5)
    apps["unbatched"] = apps["batched"]
    wait_running(fake, ["batched", "unbatched"], 0.5)  # all running: returns


def test_server_cpu_counts_a_retitled_process_once():
    """Ray retitles a worker for each method call (``ray::X`` then ``ray::X.handle_request``): CPU is taken per
    process, so the time before the call is not counted again under the new title."""
    from benchmarks.serve_load import cpu_used

    before = {10: ("ray::ServeReplica:a:TaskModel", 5.0), 11: ("plain", 2.0)}
    after = {10: ("ray::ServeReplica:a:TaskModel", 7.5), 11: ("plain", 2.25), 12: ("ray::IDLE", 0.5)}
    assert cpu_used(before, after) == {"ray::ServeReplica:a:TaskModel": 2.5, "plain": 0.25, "ray::IDLE": 0.5}


def test_precision_benchmark_quick_run(tmp_path):
    """bench_precision.py over a few labelled genes: one row per option with accuracy, rate and memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    genes = ["".join(rng.choice("ACGT") for _ in range(1300)) for _ in range(6)]
    labels = ["Proteobacteria", "Firmicutes", "Actinobacteria"] * 2
    pq.write_table(pa.table({"id": [f"g{i}" for i in range(6)], "text": genes, "label": labels}),
                   tmp_path / "genes.parquet")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_precision.py"), "--corpus",
                           str(tmp_path / "genes.parquet"), "--limit", "4", "--threads", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["option"]: r for r in json.loads((tmp_path / "precision.json").read_text())}
    assert list(rows) == ["float32", "bfloat16", "int8"]
    assert all(r["records"] == 4 and r["tokens"] > 4 * 200 and r["score_s"] > 0 and r["peak_mib"] > 0
               for r in rows.values())
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| option | accuracy | same label as float32 | tokens/s | vs float32 | peak MiB")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["float32", "bfloat16", "int8"]
    assert "| float32 |" in table[2] and "| 100.00% |" in table[2] and "| 1.00x |" in table[2]
    assert "avx512_bf16" in proc.stdout  # the CPU features that decide bf16 and int8 speed are recorded
