"""Models in object storage: ``bigbird.pipeline`` on an ``s3://`` folder (a local moto S3 server) gives the
local folder's outputs; the folder is downloaded once into the cache and again only when an object changes."""

from __future__ import annotations

import json

import pyarrow.fs as pafs
import pytest

import bigbird
from bigbird import model_store
from bigbird.model_store import StorageOptions
from tests.helpers import S3_KEYS, moto_s3

KEYS = S3_KEYS
TEXTS = ["I was showing it to my friends.", "reflecting its pretty blades against the rays of the sun " * 20]


class CountingHandler(pafs.FileSystemHandler):
    """A pyarrow filesystem over another that counts the objects opened for reading."""

    def __init__(self, fs: pafs.FileSystem) -> None:
        self.fs, self.reads = fs, []

    def get_type_name(self): return "counting"
    def normalize_path(self, path): return path
    def equals(self, other): return other is self
    def get_file_info(self, paths): return self.fs.get_file_info(paths)
    def get_file_info_selector(self, selector): return self.fs.get_file_info(selector)
    def create_dir(self, path, recursive): self.fs.create_dir(path, recursive=recursive)
    def delete_dir(self, path): self.fs.delete_dir(path)
    def delete_dir_contents(self, path, missing_dir_ok=False): self.fs.delete_dir_contents(path, missing_dir_ok)
    def delete_root_dir_contents(self): raise NotImplementedError
    def delete_file(self, path): self.fs.delete_file(path)
    def move(self, src, dest): self.fs.move(src, dest)
    def copy_file(self, src, dest): self.fs.copy_file(src, dest)
    def open_output_stream(self, path, metadata): return self.fs.open_output_stream(path, metadata=metadata)
    def open_append_stream(self, path, metadata): raise NotImplementedError

    def open_input_stream(self, path):
        self.reads.append(path)
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        self.reads.append(path)
        return self.fs.open_input_file(path)


@pytest.fixture(scope="module")
def s3(task_models):
    """``(endpoint, filesystem with credentials)`` of a moto S3 server holding ``models/tc`` (an export)."""
    with moto_s3("models") as (endpoint, fs):
        pafs.copy_files(str(task_models["text-classification"]), "models/tc",
                        source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        yield endpoint, fs


def _scores(pipe):
    return [[(d["label"], round(d["score"], 6)) for d in res] for res in pipe(TEXTS, top_k=None)]


def test_pipeline_loads_an_s3_model_once_and_again_when_it_changes(s3, task_models, tmp_path, monkeypatch):
    endpoint, fs = s3
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    expected = _scores(bigbird.pipeline("text-classification", task_models["text-classification"]))
    options = StorageOptions(endpoint=endpoint, region="us-east-1")
    pipe = bigbird.pipeline("text-classification", "s3://models/tc", storage=options, cache_dir=tmp_path)
    assert _scores(pipe) == expected
    counting = CountingHandler(fs)
    again = bigbird.pipeline("text-classification", "s3://models/tc/", storage=pafs.PyFileSystem(counting),
                             cache_dir=tmp_path)
    assert counting.reads == [] and _scores(again) == expected  # listed, not downloaded: the cache's copy
    entries = list((tmp_path / "models").iterdir())
    assert len(entries) == 1 and [p.name for p in entries[0].iterdir() if not p.name.startswith(".")] != []
    # A new export (here: other label names) is a new listing: fetched again, and loaded as it is now.
    with fs.open_input_stream("models/tc/config.json") as f:
        config = json.loads(f.read())
    config["id2label"] = {k: f"new-{v}" for k, v in config["id2label"].items()}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    with fs.open_output_stream("models/tc/config.json") as f:
        f.write(json.dumps(config).encode())
    fresh = bigbird.pipeline("text-classification", "s3://models/tc", storage=pafs.PyFileSystem(counting),
                             cache_dir=tmp_path)
    assert len(counting.reads) == len(model_store.listing(fs, "models/tc")) and "models/tc/config.json" in counting.reads
    assert _scores(fresh) == [[(f"new-{label}", score) for label, score in res] for res in expected]


def test_missing_folders_and_bad_uris_are_named(s3, tmp_path, monkeypatch):
    endpoint, fs = s3
    with pytest.raises(FileNotFoundError, match="model folder 'models/nothing' holds no files"):
        model_store.fetch_model("s3://models/nothing", fs, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'http://x/y' is not an s3:// or gs:// URI"):
        model_store.filesystem("http://x/y")
    assert model_store.is_remote("s3://b/m") and model_store.is_remote("gs://b/m")
    assert not model_store.is_remote("org/name") and not model_store.is_remote("/local/s3:/x")
    monkeypatch.setenv(model_store.CACHE_VAR, str(tmp_path / "env"))
    assert model_store.cache_root() == tmp_path / "env" / "models"


def test_storage_options_open_s3_and_gcs():
    s3fs, inner = model_store.filesystem("s3://bucket/models/x/", StorageOptions(endpoint="http://127.0.0.1:9",
                                                                                  region="eu-west-3", anonymous=True))
    assert isinstance(s3fs, pafs.S3FileSystem) and inner == "bucket/models/x"
    options = s3fs.__reduce__()[1][0]
    assert (options["endpoint_override"], options["scheme"], options["region"], options["anonymous"]) == \
        ("127.0.0.1:9", "http", "eu-west-3", True)
    gcs, inner = model_store.filesystem("gs://bucket/m", StorageOptions(endpoint="127.0.0.1:9", anonymous=True))
    assert isinstance(gcs, pafs.GcsFileSystem) and inner == "bucket/m"
