"""I/O failures as one line: the file, the cause, the records kept and what a re-run scores; the traceback
only with BIGBIRD_DEBUG=1 (a missing bucket mid-job is in test_batch_storage.py)."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import errors, inputs, lease, manifest
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES

ROOT = Path(__file__).resolve().parents[2]


def test_causes_are_named_in_words():
    assert errors.cause(OSError(errno.ENOSPC, "No space left on device")) == "no space left on the device"
    assert errors.cause(PermissionError(errno.EACCES, "Permission denied")) == "permission denied"
    assert errors.cause(OSError("When creating key 'x' in bucket 'nope': AWS Error NO_SUCH_BUCKET during "
                                "PutObject operation: The specified bucket does not exist")) == \
        "the bucket does not exist"
    assert errors.cause(OSError("AWS Error SLOW_DOWN during PutObject operation")).startswith("the store is throttling")
    assert errors.cause(OSError("AWS Error ACCESS_DENIED during PutObject operation")) == "permission denied"


def test_a_write_error_is_found_behind_rays_wrapping():
    error = errors.WriteError("s3://b/out/part-1.parquet", OSError(errno.ENOSPC, "No space left on device"))
    assert str(error) == "cannot write s3://b/out/part-1.parquet: no space left on the device"
    back = pickle.loads(pickle.dumps(error))
    assert str(back) == str(error) and back.uri == error.uri
    try:
        try:
            raise error
        except OSError as e:
            raise RuntimeError("UserCodeException") from e
    except RuntimeError as wrapped:
        assert errors.find_io_error(wrapped) == ("cannot write s3://b/out/part-1.parquet", "no space left on the device")

    class RayTaskError(Exception):  # what reaches the driver when Ray cannot rebuild the cause: its text only
        pass

    remote = RayTaskError("ray::MapWorker(MapBatches(Scorer)).submit() ...\nTraceback (most recent call last):\n"
                          "  File \"stages.py\", line 240, in _write\npipelines.errors.WriteError: cannot write "
                          "/data/out/part-00000-000000000000-000000000256.parquet: no space left on the device\n")
    assert errors.find_io_error(remote) == ("cannot write /data/out/part-00000-000000000000-000000000256.parquet",
                                            "no space left on the device")
    assert errors.find_io_error(ValueError("no I/O here")) is None


def _without_root_powers() -> list[str]:
    """A command prefix under which root, too, obeys file permissions (no CAP_DAC_OVERRIDE), as a user
    without write access would; nothing for another user."""
    if os.geteuid() != 0:
        return []
    tool = shutil.which("setpriv")
    if tool is None:
        pytest.skip("running as root without setpriv: a read-only folder is writable")
    drop = "-dac_override,-dac_read_search"
    return [tool, f"--inh-caps={drop}", f"--bounding-set={drop}"]


def test_a_read_only_output_folder_is_one_line_with_what_is_kept(task_models, tmp_path):
    model = task_models["text-classification"]
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(8)], "text": SPM_LINES[:8]}), corpus)
    out = tmp_path / "out"
    settings = BatchSettings(task="text-classification", model=str(model), input=str(corpus), output=str(out),
                             stride=32)
    inputs.plan_job(settings)  # an earlier run: its manifest and one block of 3 records
    pq.write_table(pa.table({"id": ["r0", "r1", "r2"]}), out / manifest.part_name(0, 0, 3))
    out.chmod(0o555)
    try:
        args = ["--task", "text-classification", "--model", str(model), "--input", str(corpus), "--output",
                str(out), "--stride", "32"]
        env = {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
               "HOME": str(tmp_path)}
        command = [*_without_root_powers(), sys.executable, "-c",
                   f"import sys; from pipelines import batch; sys.exit(batch.main({args!r}))"]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr[-3000:]
        err = done.stderr.strip()
        assert err == (f"bigbird batch: error: cannot write {out}/{lease.LEASE}: permission denied; 3 of 8 records "
                       f"are kept in the output folder; re-run the same command to score the other 5"), err
        debug = subprocess.run(command, cwd=ROOT, env={**env, "BIGBIRD_DEBUG": "1"}, capture_output=True,
                               text=True, timeout=300)
        assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
        assert "PermissionError" in debug.stderr and debug.stderr.strip().endswith(err.split("error: ", 1)[1])
    finally:
        out.chmod(0o755)
