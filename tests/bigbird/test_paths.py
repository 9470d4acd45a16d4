"""bigbird.paths: the path rule of every shell, locally and under ``ray job submit`` (simulated by its
environment variable, as Ray's job supervisor sets it on the driver)."""

from __future__ import annotations

import json

import pytest

from bigbird.paths import JOB_CONFIG_VAR, RelativePathError, is_uri, job_submitted, resolve_path

SUBMITTED = {JOB_CONFIG_VAR: json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"},
                                         "metadata": {"job_submission_id": "raysubmit_abc", "job_name": "x"}})}


def test_uris_and_absolute_paths_pass_unchanged(tmp_path):
    for uri in ("s3://bucket/corpus", "gs://b/x", "hf://datasets/x"):
        assert is_uri(uri) and resolve_path(uri, setting="data.train", environ=SUBMITTED) == uri
    assert resolve_path(str(tmp_path / "x"), setting="data.train", environ=SUBMITTED) == str(tmp_path / "x")
    assert resolve_path(f"file://{tmp_path}/x", setting="data.train", environ=SUBMITTED) == f"{tmp_path}/x"
    with pytest.raises(ValueError, match=r"names a host \('other'\)"):
        resolve_path("file://other/x", setting="data.train")


def test_relative_path_outside_a_submitted_job_resolves_against_the_current_directory(tmp_path):
    assert job_submitted({}) is None
    assert resolve_path("data/x", setting="data.train", environ={}, cwd=tmp_path) == str(tmp_path / "data" / "x")
    assert resolve_path("out", setting="run.export_dir", output=True, environ={}, cwd=tmp_path) == str(tmp_path / "out")


def test_submitted_job_refuses_relative_paths_it_cannot_honour(tmp_path):
    assert job_submitted(SUBMITTED) == "raysubmit_abc"
    with pytest.raises(RelativePathError, match=r"data.train 'data/rrna16s' is a relative path.*raysubmit_abc.*"
                                                r"not in the uploaded working dir.*--override data.train=\"\$PWD/data/rrna16s\""):
        resolve_path("data/rrna16s", setting="data.train", environ=SUBMITTED, cwd=tmp_path)
    (tmp_path / "outputs").mkdir()  # an output is refused even when the folder came with the upload
    with pytest.raises(RelativePathError, match="--output 'outputs/runs'.*deleted with the job.*--output ") as e:
        resolve_path("outputs/runs", setting="--output", output=True, fix="--output {path}", base_option=None,
                     environ=SUBMITTED, cwd=tmp_path)
    assert "--base-dir" not in str(e.value)  # a shell without that option is not told to use it


def test_submitted_job_reads_inputs_that_came_with_the_working_dir(tmp_path):
    (tmp_path / "models" / "m").mkdir(parents=True)
    got = resolve_path("models/m", setting="model.from_pretrained", environ=SUBMITTED, cwd=tmp_path)
    assert got == str(tmp_path / "models" / "m")


def test_base_dir_resolves_relative_paths_against_the_submitter(tmp_path):
    got = resolve_path("outputs/runs", setting="run.storage_path", output=True, base_dir=str(tmp_path),
                       environ=SUBMITTED, cwd="/nonexistent")
    assert got == str(tmp_path / "outputs" / "runs")
    with pytest.raises(ValueError, match="'rel' must be an absolute path"):
        resolve_path("x", setting="data.train", base_dir="rel")
    with pytest.raises(ValueError, match="does not exist on this node"):
        resolve_path("x", setting="data.train", base_dir=str(tmp_path / "missing"))
