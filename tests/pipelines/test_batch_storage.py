"""Object-storage options of the batch job (endpoint, region, anonymous access): settings and flags, the
filesystems the driver and the workers open, the runtime env the workers get, and whole jobs against a local
S3-compatible server (moto's, in this process) through pyarrow's S3 filesystem.

moto stores an anonymous upload's aws-chunked body as it is (it decodes only signed ones), so anonymous access
is tested reading a public input; writing and resuming are tested with (moto's dummy) credentials."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from jobs.settings import StorageSettings
from pipelines import batch, errors, lease, manifest, stages
from pipelines.settings import BatchSettings
from tests.helpers import S3_KEYS, SPM_LINES, moto_s3

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 24
KEYS = S3_KEYS


def s3_options(fs: pafs.S3FileSystem) -> dict:
    return fs.__reduce__()[1][0]  # the options the filesystem is rebuilt from (what pickling sends)


@pytest.fixture(scope="module")
def s3():
    """``(endpoint, filesystem with credentials)`` of a moto S3 server holding ``corpus/docs/part.parquet``."""
    with moto_s3("corpus", "results") as (endpoint, fs):
        texts = [" ".join(SPM_LINES[(i + k) % len(SPM_LINES)] for k in range(2)) for i in range(RECORDS)]
        table = pa.table({"id": [f"doc-{i}" for i in range(RECORDS)], "text": texts})
        with fs.open_output_stream("corpus/docs/part.parquet") as f:
            pq.write_table(table, f, row_group_size=8)
        yield endpoint, fs


def test_storage_flags_and_yaml_section(tmp_path):
    args = ["--task", "text-classification", "--model", "m", "--input", "s3://b/in", "--output", "s3://b/out",
            "--storage-endpoint", "http://127.0.0.1:9000", "--storage-anonymous"]
    settings = batch.settings_from_args(batch.build_parser().parse_args(args))
    assert settings.storage == StorageSettings(endpoint="http://127.0.0.1:9000", anonymous=True)
    config = tmp_path / "job.yaml"
    config.write_text("task: text-classification\nmodel: m\ninput: s3://b/in\noutput: s3://b/out\n"
                      "storage: {endpoint: minio:9000, region: eu-west-3}\n")
    settings = batch.settings_from_args(batch.build_parser().parse_args(
        ["--config", str(config), "--storage-region", "us-east-2"]))  # a flag overrides one field of the section
    assert settings.storage == StorageSettings(endpoint="minio:9000", region="us-east-2")
    assert BatchSettings(task="text-classification", model="m", input="i", output="o").storage == StorageSettings()


def test_bad_endpoint_is_named(capsys, tmp_path):
    code = batch.main(["--task", "text-classification", "--model", "m", "--input", "s3://b/in", "--output", "s3://b/out",
                       "--storage-endpoint", "ftp://x:1"])
    err = capsys.readouterr().err
    assert code == 2 and "storage.endpoint 'ftp://x:1'" in err, err


def test_filesystems_are_opened_with_the_options():
    storage = StorageSettings(endpoint="http://127.0.0.1:9", region="eu-west-3", anonymous=True)
    fs, inner = stages.filesystem("s3://bucket/corpus", storage)
    assert isinstance(fs, pafs.S3FileSystem) and inner == "bucket/corpus"
    options = s3_options(fs)
    assert (options["endpoint_override"], options["scheme"], options["region"], options["anonymous"]) == \
        ("127.0.0.1:9", "http", "eu-west-3", True)
    local, path = stages.filesystem("out", storage)
    assert isinstance(local, pafs.LocalFileSystem) and path == os.path.abspath("out")


def test_the_workers_get_the_options_in_their_runtime_env(ray_cluster):
    storage = StorageSettings(endpoint="http://127.0.0.1:9", region="eu-west-3")
    settings = BatchSettings(task="text-classification", model="m", input="s3://b/in", output="s3://b/out", storage=storage)
    remote = batch.stage_remote_args(settings)
    assert batch.stage_remote_args(settings.model_copy(update={"storage": StorageSettings()})) == {}

    @ray_cluster.remote(num_cpus=0.1)
    def environment() -> tuple[int, dict]:
        return os.getpid(), {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")}

    pid, seen = ray_cluster.get(environment.options(**remote).remote(), timeout=300)
    assert pid != os.getpid()
    assert seen == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "eu-west-3",
                    "AWS_DEFAULT_REGION": "eu-west-3"}


def test_public_input_read_anonymously_through_the_endpoint(ray_cluster, task_models, s3, tmp_path):
    endpoint, _ = s3
    storage = StorageSettings(endpoint=endpoint, region="us-east-1", anonymous=True)
    settings = BatchSettings(task="text-classification", model=str(task_models["text-classification"]),
                             input="s3://corpus/docs", output=str(tmp_path / "out"), block_records=5, stride=32,
                             storage=storage)
    stats = batch.run(settings, report=lambda line: None)
    assert (stats.records, stats.errors, stats.skipped) == (RECORDS, 0, 0)
    ids = pq.read_table(tmp_path / "out", columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == sorted(f"doc-{i}" for i in range(RECORDS))
    with pytest.raises(ValueError, match="cannot read input 's3://corpus/nothing-here'"):
        batch.run(settings.model_copy(update={"input": "s3://corpus/nothing-here"}))


def test_the_s3_lease_is_a_conditional_put(s3, monkeypatch):
    endpoint, fs = s3
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    storage = StorageSettings(endpoint=endpoint, region="us-east-1")
    out_fs, root = stages.filesystem("s3://results/leased", storage)
    store = lease.store_for(out_fs, root, "s3://results/leased", storage)
    assert isinstance(store, lease.S3Store)
    first = store.create(b"one")
    assert first is not None and store.create(b"two") is None  # If-None-Match: *
    second = store.swap(first, b"one, renewed")
    assert second is not None and store.swap(first, b"stale renewal") is None  # If-Match: the ETag read
    assert store.read() == (b"one, renewed", second)
    lines: list[str] = []
    holder = lease.Lease(store, "s3://results/leased", report=lines.append)
    holder.acquire()  # bytes that are no lease: taken over, and said so
    assert lines == ["took over an unreadable lease on output 's3://results/leased': its lease file is unreadable"]
    with pytest.raises(lease.LeaseHeld, match="being written by another batch job"):
        lease.Lease(store, "s3://results/leased").acquire()
    lease.verify(out_fs, root, holder.token)
    holder.renew()
    holder.release()
    assert store.read() is None


def test_job_writes_and_resumes_on_object_storage_from_the_command_line(task_models, s3, capsys, monkeypatch,
                                                                        tmp_path):
    """The command as a user runs it (its own local Ray, credentials in the environment): results written to
    the server, the same command started while it runs refused (the folder's lease), and a re-run scores
    nothing again."""
    endpoint, fs = s3
    args = ["--task", "text-classification", "--model", str(task_models["text-classification"]), "--input",
            "s3://corpus/docs", "--output", "s3://results/run", "--block-records", "5", "--stride", "32",
            "--storage-endpoint", endpoint, "--storage-region", "us-east-1"]
    go = tmp_path / "second-run"
    script = ("import sys, time, pathlib; from pipelines import batch; "
              f"codes = [batch.main({args!r})]; flag = pathlib.Path({str(go)!r}); "
              "[time.sleep(0.1) for _ in range(3000) if not flag.exists()]; "
              f"codes.append(batch.main({args!r})); sys.exit(max(codes))")
    env = {"PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "HOME": os.environ.get("HOME", "/tmp"), **KEYS}
    job = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        held = f"results/run/{lease.LEASE}"
        deadline = time.monotonic() + 300
        while fs.get_file_info(held).type == pafs.FileType.NotFound and job.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        for k, v in KEYS.items():
            monkeypatch.setenv(k, v)
        code = batch.main([*args[:-8], "--block-records", "7", *args[-6:]])  # the same job, other blocks
        err = capsys.readouterr().err
        assert code == 1 and "output 's3://results/run' is being written by another batch job (host" in err, err
        go.touch()
        stdout, stderr = job.communicate(timeout=600)
    finally:
        go.touch()
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, stderr[-3000:]
    ours = [line for line in stderr.splitlines() if line.strip()]
    assert all(line.startswith("bigbird batch: ") for line in ours), stderr[-3000:]  # Ray's console is off
    summaries = [line for line in stdout.splitlines() if line.startswith("bigbird batch: done:")]
    assert summaries[0].startswith(f"bigbird batch: done: records {RECORDS} (skipped 0 already done), errors 0")
    assert summaries[1].startswith(f"bigbird batch: done: records 0 (skipped {RECORDS} already done)")
    names = [info.base_name for info in fs.get_file_info(pafs.FileSelector("results/run"))]
    parts = sorted(n for n in names if manifest.PART.match(n))
    assert manifest.MANIFEST in names and len(parts) == 5 and not [n for n in names if n.startswith(".")]
    assert lease.LEASE not in names  # released
    with fs.open_input_file(f"results/run/{manifest.MANIFEST}") as f:
        assert json.loads(f.read())["input"]
    ids = pa.concat_tables(pq.read_table(f"results/run/{n}", filesystem=fs) for n in parts).column("id")
    assert sorted(ids.to_pylist()) == sorted(f"doc-{i}" for i in range(RECORDS))


def test_a_missing_output_bucket_is_one_line(task_models, s3, monkeypatch):
    endpoint, _ = s3
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    settings = BatchSettings(task="text-classification", model=str(task_models["text-classification"]),
                             input="s3://corpus/docs", output="s3://no-such-bucket/run", stride=32,
                             storage=StorageSettings(endpoint=endpoint, region="us-east-1"))
    with pytest.raises(errors.JobIOError) as e:
        batch.run(settings, report=lambda line: None)
    assert str(e.value) == (f"cannot write s3://no-such-bucket/run/{lease.LEASE}: the bucket does not exist; 0 of "
                            f"{RECORDS} records are kept in the output folder; re-run the same command to score "
                            f"the other {RECORDS}")


def test_a_bucket_lost_mid_job_is_one_line_naming_the_part(ray_cluster, task_models, s3, monkeypatch):
    endpoint, fs = s3
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    fs.create_dir("doomed")
    execute = batch._execute

    def losing_the_bucket(*args, **kwargs):  # after planning (lease and manifest written), before any block
        admin = pafs.S3FileSystem(**{**s3_options(fs), "allow_bucket_deletion": True})
        admin.delete_dir("doomed")
        return execute(*args, **kwargs)

    monkeypatch.setattr(batch, "_execute", losing_the_bucket)
    lines: list[str] = []
    settings = BatchSettings(task="text-classification", model=str(task_models["text-classification"]),
                             input="s3://corpus/docs", output="s3://doomed/run", stride=32, block_records=8,
                             storage=StorageSettings(endpoint=endpoint, region="us-east-1"))
    with pytest.raises(errors.JobIOError) as e:
        batch.run(settings, report=lines.append)
    text = str(e.value)
    assert re.fullmatch(rf"cannot write s3://doomed/run/part-00000-\d{{12}}-\d{{12}}\.parquet: the bucket does not "
                        rf"exist; 0 of {RECORDS} records are kept in the output folder; re-run the same command to "
                        rf"score the other {RECORDS}", text), text
    assert "\n" not in text and len(text) < 300
