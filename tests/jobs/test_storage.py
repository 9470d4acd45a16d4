"""Object-storage settings: the pyarrow filesystem is built with them, and they reach Ray workers both inside
the (pickled) filesystem object and through the job's runtime env. No real S3: nothing is connected to."""

from __future__ import annotations

import os

import pyarrow.fs as pafs
import pytest

from jobs.settings import StorageSettings, load_settings
from jobs.storage import filesystem, runtime_env

STORAGE = {"endpoint": "http://127.0.0.1:9", "region": "eu-west-3", "anonymous": True}


def s3_options(fs: pafs.S3FileSystem) -> dict:
    return fs.__reduce__()[1][0]  # the options the filesystem is rebuilt from (what pickling sends)


def test_filesystem_is_built_with_the_storage_settings():
    settings = load_settings(data={"task": "masked-lm", "model": {"from_pretrained": "m"},
                                   "data": {"train": "s3://bucket/corpus"}, "storage": STORAGE})
    fs, inner = filesystem(settings.data.train, settings.storage)
    assert isinstance(fs, pafs.S3FileSystem) and inner == "bucket/corpus"
    options = s3_options(fs)
    assert (options["endpoint_override"], options["scheme"], options["region"], options["anonymous"]) == \
        ("127.0.0.1:9", "http", "eu-west-3", True)
    gcs, inner = filesystem("gs://b/x", StorageSettings(endpoint="localhost:4443", anonymous=True))
    assert isinstance(gcs, pafs.GcsFileSystem) and inner == "b/x"
    assert gcs.__reduce__()[1][0]["endpoint_override"] == "localhost:4443"
    assert filesystem("data/x", StorageSettings()) == (None, "data/x")  # local: pyarrow's default
    plain = s3_options(filesystem("s3://b/x", StorageSettings())[0])
    assert plain["endpoint_override"] == "" and plain["anonymous"] is False


@pytest.mark.parametrize("endpoint", ["not a host", "ftp://x:1"])
def test_bad_endpoint_is_named(endpoint):
    with pytest.raises(ValueError, match="storage.endpoint"):
        StorageSettings(endpoint=endpoint)


def test_storage_settings_reach_the_workers(ray_cluster):
    """A Ray task started with the job's runtime env sees the variables, and a filesystem object sent to it
    arrives with the endpoint, region and anonymous access it was built with."""
    ray = ray_cluster
    storage = StorageSettings(**STORAGE)
    env = runtime_env(storage)
    assert env == {"env_vars": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "eu-west-3",
                                "AWS_DEFAULT_REGION": "eu-west-3"}}
    assert runtime_env(StorageSettings()) == {}
    submitted = {"RAY_JOB_CONFIG_JSON_ENV_VAR": '{"runtime_env": {"env_vars": {"AWS_REGION": "us-east-2"}}}'}
    assert runtime_env(storage, submitted) == {"env_vars": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                                                            "AWS_DEFAULT_REGION": "eu-west-3"}}  # theirs win

    @ray.remote(num_cpus=0.1)
    def on_worker(fs: pafs.S3FileSystem) -> tuple[int, dict, dict]:
        return os.getpid(), {k: os.environ.get(k) for k in env["env_vars"]}, s3_options(fs)

    pid, seen, options = ray.get(on_worker.options(runtime_env=env).remote(filesystem("s3://b/x", storage)[0]),
                                 timeout=300)
    assert pid != os.getpid() and seen == env["env_vars"]
    assert (options["endpoint_override"], options["region"], options["anonymous"]) == ("127.0.0.1:9", "eu-west-3", True)
