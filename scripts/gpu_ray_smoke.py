"""Smoke test of the Ray side on a GPU: the batch job (Ray Data) and the HTTP service (Ray Serve), each with
one model actor / replica holding ``--num-gpus`` GPUs, on a tiny random-weight classifier.

Checks that the job scores every record and that the service answers (a replica given a GPU refuses to
start without a CUDA device, serve/model.py), and writes the timings to ``OUT/ray_smoke.json``.
``--num-gpus 0`` runs the same on CPU (what CI checks).

    python scripts/gpu_ray_smoke.py --out benchmarks/results/gpu            # on a GPU machine
    python scripts/gpu_ray_smoke.py --out /tmp/smoke --num-gpus 0           # anywhere
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

TASK = "text-classification"


def _corpus(folder: Path, records: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.models import text_lines

    lines = text_lines()
    texts = [" ".join(lines[i % len(lines):][:6]) for i in range(records)]
    path = folder / "corpus.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(records)], "text": texts}), path)
    return path


def _batch(model: Path, corpus: Path, output: Path, num_gpus: float, records: int) -> dict:
    import pyarrow.parquet as pq

    from pipelines.batch import run
    from pipelines.settings import BatchSettings

    settings = BatchSettings(task=TASK, model=str(model), input=str(corpus), output=str(output), num_gpus=num_gpus,
                             actors=1, max_length=128, stride=32, progress_seconds=2.0)
    stats = run(settings)
    rows = pq.read_table(output, columns=["id"]).num_rows if output.exists() else 0
    if stats.records != records or rows != records or stats.errors:
        raise RuntimeError(f"batch job: {stats.summary()}, {rows} output rows; wanted {records} records, no errors")
    return {"records": stats.records, "seconds": round(stats.seconds, 2), "summary": stats.summary()}


def _serve(model: Path, num_gpus: float) -> dict:
    import requests
    from ray import serve

    from serve.app import build_application
    from serve.settings import make_settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        start = time.perf_counter()
        settings = make_settings({"model": str(model), "task": TASK, "num_gpus": num_gpus, "num_cpus": 1,
                                  "max_batch_size": 4})
        serve.run(build_application(settings), name="smoke", route_prefix="/")
        started = time.perf_counter() - start
        url = f"http://127.0.0.1:{port}/v1/{TASK}"
        t0 = time.perf_counter()
        r = requests.post(url, json={"inputs": ["a short text", "another one, a little longer"]}, timeout=60)
        latency = time.perf_counter() - t0
        if r.status_code != 200:
            raise RuntimeError(f"POST {url}: HTTP {r.status_code}: {r.text[:300]}")
        return {"deploy_seconds": round(started, 2), "request_seconds": round(latency, 3), "response": r.json()}
    finally:
        serve.shutdown()


def _gpu_probe(num_gpus: float) -> dict:
    """What a Ray task given ``num_gpus`` GPUs sees."""
    import ray

    @ray.remote(num_gpus=num_gpus)
    def probe() -> dict:
        import torch

        return {"cuda": torch.cuda.is_available(), "devices": torch.cuda.device_count(),
                "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}

    return ray.get(probe.remote(), timeout=120)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for ray_smoke.json")
    p.add_argument("--num-gpus", type=float, default=1.0, help="GPUs of the model actor and replica (0: CPU)")
    p.add_argument("--records", type=int, default=16)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import ray

    from benchmarks.models import random_task_model

    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"num_gpus": args.num_gpus, "ok": False}
    try:
        ray.init(address="local", num_cpus=max(2, os.cpu_count() or 1), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        with tempfile.TemporaryDirectory(prefix="bigbird-ray-smoke-") as tmp:
            folder = Path(tmp)
            model = random_task_model(folder / "model")
            result["cluster"] = ray.cluster_resources()
            result["probe"] = _gpu_probe(args.num_gpus)
            if args.num_gpus > 0 and not result["probe"]["cuda"]:
                raise RuntimeError(f"a task given {args.num_gpus} GPU(s) sees no CUDA device: {result['probe']}")
            result["batch"] = _batch(model, _corpus(folder, args.records), folder / "scored", args.num_gpus,
                                     args.records)
            result["serve"] = _serve(model, args.num_gpus)
            result["ok"] = True
    except Exception as exc:  # the report says what failed; the exit status too
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        ray.shutdown()
        (args.out / "ray_smoke.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "cluster"}, default=str))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
