"""``bigbird batch --model s3://...``: a model exported to object storage (a local moto S3 server) scores a
corpus as its local folder does; the driver and every worker on the node share one cached copy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from bigbird.tasks import pipeline
from tests.helpers import S3_KEYS, SPM_LINES, moto_s3

ROOT = Path(__file__).resolve().parents[2]
KEYS = S3_KEYS


@pytest.fixture(scope="module")
def s3(task_models):
    with moto_s3("models") as (endpoint, fs):
        pafs.copy_files(str(task_models["text-classification"]), "models/tc",
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        yield endpoint


def test_batch_scores_with_a_model_in_object_storage(s3, task_models, tmp_path):
    texts = [" ".join(SPM_LINES[i:i + 5]) for i in range(10)]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(10)], "text": texts}), tmp_path / "in.parquet")
    args = ["--task", "text-classification", "--model", "s3://models/tc", "--input", str(tmp_path / "in.parquet"),
            "--output", str(tmp_path / "out"), "--block-records", "4", "--stride", "32", "--storage-endpoint", s3,
            "--storage-region", "us-east-1", "--quantize", "int8"]
    script = f"import sys; from pipelines import batch; sys.exit(batch.main({args!r}))"
    env = {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "HOME": os.environ.get("HOME", "/tmp"), "BIGBIRD_CACHE": str(tmp_path / "cache"), **KEYS}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "bigbird batch: done: records 10 (skipped 0 already done), errors 0" in done.stdout
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out").to_pylist()}
    expected = pipeline("text-classification", task_models["text-classification"], stride=32, quantize="int8")(
        texts, top_k=None)
    for i, exp in enumerate(expected):
        assert rows[f"r{i}"]["label"] == exp[0]["label"]
        assert rows[f"r{i}"]["score"] == pytest.approx(exp[0]["score"], abs=1e-5)
    copies = list((tmp_path / "cache" / "models").iterdir())
    assert len(copies) == 1 and len([p for p in copies[0].iterdir() if not p.name.startswith(".")]) == 1
