"""scripts/gpu_check.sh without a GPU: every command it runs parses (so the day a GPU machine is lent is not
spent on a typo), and the Ray smoke test runs on CPU (slow)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "commands.txt").read_text().splitlines()
    return {name: shlex.split(cmd) for name, cmd in (line.split("\t") for line in lines)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine: run scripts/gpu_check.sh itself")
def test_every_gpu_check_command_parses(tmp_path, capsys):
    from benchmarks import bench_attention, bench_model
    from scripts.gpu_ray_smoke import build_parser

    commands = _commands(tmp_path)
    assert list(commands) == ["tests", "attention", "model", "ray"]
    assert commands["tests"][:3] == [sys.executable, "-m", "pytest"] and "tests/cuda" in commands["tests"]
    assert any((ROOT / "tests" / "cuda").glob("test_*.py"))
    for name, module in (("attention", bench_attention), ("model", bench_model)):
        argv = commands[name][2:]
        assert commands[name][1] == f"benchmarks/{module.__name__.split('.')[-1]}.py"
        assert argv[argv.index("--out") + 1] == str(tmp_path)
        with pytest.raises(SystemExit) as exc:  # every flag parses; then it refuses: no CUDA device here
            module.main(argv)
        assert exc.value.code == 2 and "--device cuda: torch sees no CUDA device" in capsys.readouterr().err
    args = build_parser().parse_args(commands["ray"][2:])
    assert args.num_gpus == 1 and args.out == tmp_path


@pytest.mark.slow
def test_ray_smoke_runs_on_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_ray_smoke.py"), "--num-gpus", "0", "--out",
                           str(tmp_path), "--records", "6"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert (tmp_path / "ray_smoke.json").exists(), (proc.returncode, proc.stderr[-3000:])
    result = json.loads((tmp_path / "ray_smoke.json").read_text())
    assert proc.returncode == 0 and result["ok"], (result.get("error"), proc.stderr[-2000:])
    assert result["batch"]["records"] == 6 and result["probe"]["cuda"] is torch.cuda.is_available()
    assert result["serve"]["response"]
