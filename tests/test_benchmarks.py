"""Smoke test: each benchmark runs with --quick, prints ratios against the reference and writes its plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script,name", [("bench_attention.py", "attention"), ("bench_model.py", "model")])
def test_benchmark_quick_run(tmp_path, script, name):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)  # a loaded machine is slow
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
