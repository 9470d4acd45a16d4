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
