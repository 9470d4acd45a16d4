"""The batch job owns what it writes: foreign files are never deleted nor taken as done; ids checked up front."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import batch, manifest
from pipelines.settings import BatchSettings
from tests.helpers import SPM_LINES


def _settings(model, corpus, output, **kw) -> BatchSettings:
    return BatchSettings(task="text-classification", model=str(model), input=str(corpus), output=str(output),
                         **{"stride": 32, "batch_size": 4, **kw})


@pytest.fixture()
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(8)], "text": SPM_LINES[:8]}), folder / "a.parquet")
    return folder


def _no_ray(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the job started work it should have refused")

    monkeypatch.setattr(batch, "_execute", forbidden)


def test_foreign_parquet_in_the_output_is_refused_and_left_alone(task_models, corpus, tmp_path, monkeypatch):
    _no_ray(monkeypatch)
    out = tmp_path / "out"
    (out / "mine").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["r0", "r1"], "note": ["a user's", "own table"]}), out / "mine" / "t.parquet")
    (out / "half-copied.parquet").write_bytes(b"PAR1 cut")
    model = task_models["text-classification"]
    with pytest.raises(ValueError, match=r"holds parquet files this job did not write \(half-copied.parquet, "
                                         r"mine/t.parquet\); the job never deletes or resumes from them"):
        batch.run(_settings(model, corpus, out))
    with pytest.raises(ValueError, match="did not write"):
        batch.run(_settings(model, corpus, out, resume=False))
    assert (out / "half-copied.parquet").read_bytes() == b"PAR1 cut"
    assert pq.read_table(out / "mine" / "t.parquet").num_rows == 2
    assert sorted(p.name for p in out.iterdir()) == ["half-copied.parquet", "mine"]  # no manifest written


def test_output_equal_to_or_inside_the_input_is_refused(task_models, corpus, monkeypatch):
    _no_ray(monkeypatch)
    model = task_models["text-classification"]
    for output in (corpus, corpus / "results"):
        with pytest.raises(ValueError, match="is the input .* or inside it"):
            batch.run(_settings(model, corpus, output))
    assert [p.name for p in corpus.iterdir()] == ["a.parquet"]


def test_part_files_without_the_manifest_are_not_taken_as_done(task_models, corpus, tmp_path, monkeypatch):
    _no_ray(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.table({"id": ["r0"]}), out / manifest.part_name(0, 0, 8))
    with pytest.raises(ValueError, match="part-00000-000000000000-000000000008.parquet"):
        batch.run(_settings(task_models["text-classification"], corpus, out))


def test_resume_refuses_results_of_other_settings_or_another_input(task_models, corpus, tmp_path, monkeypatch):
    model = task_models["text-classification"]
    out = tmp_path / "out"
    batch.plan_job(_settings(model, corpus, out))  # claims the folder: writes the manifest
    written = json.loads((out / manifest.MANIFEST).read_text())
    assert written["job"]["model"] == str(model) and written["input"] == [["a.parquet", 8]]
    _no_ray(monkeypatch)
    with pytest.raises(ValueError, match=r"other settings \(stride: 32 -> 16\); pass --no-resume"):
        batch.run(_settings(model, corpus, out, stride=16))
    pq.write_table(pa.table({"id": ["r8"], "text": [SPM_LINES[9]]}), corpus / "b.parquet")
    with pytest.raises(ValueError, match="the input changed since the earlier run"):
        batch.run(_settings(model, corpus, out))


def test_null_and_repeated_ids_are_refused_up_front_with_counts(task_models, tmp_path, monkeypatch):
    _no_ray(monkeypatch)
    model = task_models["text-classification"]
    ids = pa.array([1, None, 3, 3, 3, 7, 7, None, 9], pa.int64())
    pq.write_table(pa.table({"id": ids, "text": SPM_LINES[:9]}), tmp_path / "in.parquet")
    with pytest.raises(ValueError, match=r"column 'id': 2 record\(s\) have a null id and 2 id\(s\) appear more "
                                         r"than once, 5 records in all \(e.g. 3, 7\)"):
        batch.run(_settings(model, tmp_path / "in.parquet", tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    pq.write_table(pa.table({"id": ["a", None], "text": SPM_LINES[:2]}), tmp_path / "in.parquet")
    with pytest.raises(ValueError, match=r"1 record\(s\) have a null id and no id repeats"):
        batch.run(_settings(model, tmp_path / "in.parquet", tmp_path / "out"))


def test_ids_that_cannot_be_ids_and_a_file_as_output_are_refused(task_models, corpus, tmp_path, monkeypatch):
    _no_ray(monkeypatch)
    model = task_models["text-classification"]
    pq.write_table(pa.table({"id": [["a"], ["b"]], "text": SPM_LINES[:2]}), tmp_path / "lists.parquet")
    with pytest.raises(ValueError, match=r"id column 'id' has type list<element: string>, which cannot serve"):
        batch.run(_settings(model, tmp_path / "lists.parquet", tmp_path / "out"))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        batch.run(_settings(model, corpus, tmp_path / "file"))
    assert (tmp_path / "file").read_text() == "not a folder"


def test_no_resume_replaces_only_the_jobs_own_results(ray_cluster, task_models, corpus, tmp_path):
    model = task_models["text-classification"]
    out = tmp_path / "out"
    first = batch.run(_settings(model, corpus, out, limit=3))
    assert first.records == 3
    (out / "README.txt").write_text("the user's notes")
    again = batch.run(_settings(model, corpus, out, resume=False, block_records=5))
    assert again.records == 8 and again.skipped == 0
    ids = pa.concat_tables(pq.read_table(f) for f in out.glob("*.parquet")).column("id").to_pylist()
    assert sorted(ids) == [f"r{i}" for i in range(8)]  # each id once: the earlier results were replaced
    assert (out / "README.txt").read_text() == "the user's notes"
    assert sorted(p.name for p in out.glob("*.parquet")) == [manifest.part_name(0, 0, 5), manifest.part_name(0, 5, 8)]
