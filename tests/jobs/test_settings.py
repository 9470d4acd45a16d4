"""Job settings: the shipped configs validate, bad settings fail with one clear line, the CLI exits non-zero."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from jobs.finetune import main
from jobs.settings import JobSettings, check_sources, load_settings

CONFIGS = sorted((Path(__file__).parents[2] / "jobs" / "configs").glob("*.yaml"))
SCRATCH = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64,
           "max_position_embeddings": 256, "block_size": 16}


def settings(**changes) -> dict:
    base = {"task": "text-classification", "model": {"from_scratch": dict(SCRATCH), "tokenizer": "dna"},
            "data": {"train": "data/x", "max_length": 128, "stride": 16}}
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            base.setdefault(section, {})[field] = value
        else:
            base[section] = value
    return base


def test_shipped_configs_validate():
    assert {p.name for p in CONFIGS} >= {"rrna16s_phylum.yaml", "rrna16s_phylum_512.yaml", "squad_qa.yaml",
                                         "genbank_exons.yaml", "wiki_mlm.yaml"}
    tasks = {load_settings(p).task for p in CONFIGS}
    assert tasks == {"text-classification", "question-answering", "token-classification", "masked-lm"}


def test_defaults_and_metric():
    s = load_settings(data=settings())
    assert s.train.batch_size == 8 and s.scaling.num_workers == 1 and s.metric == ("eval_accuracy", "max")
    assert load_settings(data=settings(task="fill-mask")).metric == ("eval_loss", "min")
    assert load_settings(data=settings(task="qa")).task == "question-answering"


def test_unigram_tokenizer_settings():
    s = load_settings(data=settings(model={"from_scratch": SCRATCH, "tokenizer": "unigram"}),
                      overrides=["model.unigram.vocab_size=512", "model.unigram.add_prefix_space=false"])
    assert s.model.unigram.vocab_size == 512 and s.model.unigram.add_prefix_space is False
    assert s.model.unigram.max_piece_length == 16


def test_overrides_are_yaml_values():
    s = load_settings(data=settings(), overrides=["train.lr=3e-4", "scaling.num_workers=2", "data.eval_fraction=0.1",
                                                  "train.bf16=false", "run.name=x-1"])
    assert s.train.lr == 3e-4 and s.scaling.num_workers == 2 and s.data.eval_fraction == 0.1
    assert s.train.bf16 is False and s.run.name == "x-1"


@pytest.mark.parametrize("changes, message", [
    ({"task": "summarization"}, "unknown task 'summarization'"),
    ({"data__stride": 128}, "data.stride 128 must be smaller than data.max_length 128"),
    ({"data__max_length": 512}, "max_length 512 exceeds model.from_scratch.max_position_embeddings 256"),
    ({"model": {"from_scratch": SCRATCH, "from_pretrained": "m", "tokenizer": "dna"}}, "exactly one of"),
    ({"model": {"tokenizer": "dna"}}, "exactly one of"),
    ({"model": {"from_scratch": SCRATCH}}, "needs model.tokenizer"),
    ({"model": {"from_scratch": {**SCRATCH, "hiden_size": 3}, "tokenizer": "dna"}}, "unknown BigBirdConfig fields"),
    ({"model": {"from_scratch": {**SCRATCH, "vocab_size": 9}, "tokenizer": "dna"}}, "set by the job"),
    ({"model": {"from_scratch": {**SCRATCH, "num_attention_heads": 5}, "tokenizer": "dna"}}, "not a multiple"),
    ({"model": {"from_pretrained": "m", "tokenizer": "unigram", "unigram": {"vocab_size": 3}}}, "model.unigram.vocab_size"),
    ({"data__eval": "e", "data__eval_fraction": 0.1}, "not both"),
    ({"data__eval_fraction": 1.5}, "data.eval_fraction"),
    ({"data__tagging_scheme": "IO", "data__tag_period": 3}, "data.tag_period 3 needs data.tagging_scheme: BIO"),
    ({"data__tag_period": 1}, "data.tag_period"),
    ({"train__batch_size": 0}, "train.batch_size"),
    ({"train__lr": -1}, "train.lr"),
    ({"train__fail_at_step": 3, "train__fail_rank": 1}, "fail_rank 1 must be below"),
    ({"train__learning_rate": 1e-3}, "train.learning_rate: Extra inputs are not permitted"),
    ({"scaling__use_gpu": "maybe"}, "scaling.use_gpu"),
    ({"run__name": "a b"}, "run.name"),
    ({"data__multi_label": True, "task": "token-classification"}, "multi_label applies to text-classification"),
])
def test_bad_settings_fail_with_a_clear_message(changes, message):
    with pytest.raises(ValueError, match="invalid settings") as err:
        load_settings(data=settings(**changes))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_overrides():
    with pytest.raises(ValueError, match="must look like section.key=value"):
        load_settings(data=settings(), overrides=["train.lr"])
    with pytest.raises(ValueError, match="is a value, not a section"):
        load_settings(data=settings(), overrides=["task.x=1"])


def test_check_sources_names_missing_files_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such parquet"):
        check_sources(load_settings(data=settings(data__train=str(tmp_path / "missing"))))
    pq.write_table(pa.table({"id": ["a"], "text": ["ACGT"]}), tmp_path / "part.parquet")
    with pytest.raises(ValueError, match=r"lacks columns \['label'\] needed for text-classification"):
        check_sources(load_settings(data=settings(data__train=str(tmp_path))))
    ok = load_settings(data=settings(data__train=str(tmp_path), task="masked-lm"))
    check_sources(ok)
    renamed = settings(data__train=str(tmp_path), data__columns={"label": "text"})
    check_sources(load_settings(data=renamed))  # any column can play a role
    with pytest.raises(FileNotFoundError, match="model.from_pretrained: no such folder"):
        check_sources(JobSettings.model_validate(settings(data__train=str(tmp_path), task="masked-lm",
                                                          model={"from_pretrained": str(tmp_path / "nope")})))


def test_model_names_follow_the_hub_rule_of_from_pretrained(tmp_path):
    """A hub id (``name`` or ``org/name``) passes the job's checks as it passes ``from_pretrained``; a path that
    does not exist fails, naming the field."""
    pq.write_table(pa.table({"id": ["a"], "text": ["ACGT"]}), tmp_path / "part.parquet")

    def check(model: dict) -> None:
        check_sources(load_settings(data=settings(data__train=str(tmp_path), task="masked-lm", model=model)))

    for hub_id in ("roberta-base", "google/bigbird-roberta-base"):
        check({"from_pretrained": hub_id})
        check({"from_scratch": SCRATCH, "tokenizer": hub_id})
    for path in (str(tmp_path / "nope"), "./nope", "~/no-such-model-here", "a/b/c"):
        with pytest.raises(FileNotFoundError, match=f"model.from_pretrained: no such folder '{re.escape(path)}'"):
            check({"from_pretrained": path})
    with pytest.raises(FileNotFoundError, match="model.tokenizer: no such folder './nope'"):
        check({"from_scratch": SCRATCH, "tokenizer": "./nope"})


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: text-classification\nmodel: {from_pretrained: m}\ndata: {train: x, max_length: 64, stride: 64}\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: invalid settings") and "stride 64" in err and "\n" not in err
    assert main(["--config", str(tmp_path / "none.yaml")]) == 2
    assert "no such job file" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- a\n")
    assert main(["--config", str(tmp_path / "list.yaml")]) == 2
    assert "mapping of sections" in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--override" in out and "resumes" in out and "ray job submit" in out
    assert "train.max_steps=20" in out and "data.limit=200" in out and "--base-dir" in out  # a short run


def _submitted(monkeypatch, workdir: Path) -> None:
    """This process as the driver of a submitted job: Ray's supervisor variable set, cwd the uploaded copy."""
    from bigbird.paths import JOB_CONFIG_VAR

    monkeypatch.setenv(JOB_CONFIG_VAR, json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_1.zip"},
                                                   "metadata": {"job_submission_id": "raysubmit_test"}}))
    monkeypatch.chdir(workdir)


def test_cli_under_job_submit_refuses_relative_data_before_any_work(tmp_path, monkeypatch, capsys):
    import ray

    upload, home = tmp_path / "upload", tmp_path / "home"
    (upload / "jobs").mkdir(parents=True)
    (home / "data").mkdir(parents=True)
    table = pa.table({"id": ["a", "b"], "text": ["ACGT", "TTGA"], "label": ["x", "y"]})
    pq.write_table(table, home / "data" / "x.parquet")
    (upload / "jobs" / "job.yaml").write_text(yaml.safe_dump(settings(data__train="data/x.parquet")))
    _submitted(monkeypatch, upload)
    initialized = ray.is_initialized()
    assert main(["--config", "jobs/job.yaml"]) == 2
    err = capsys.readouterr().err
    assert "error: data.train 'data/x.parquet' is a relative path" in err and "raysubmit_test" in err
    assert 'data.train="$PWD/data/x.parquet"' in err and '--base-dir "$PWD"' in err
    assert err.count("\n") == 1 and "(the same for run.storage_path, run.export_dir)" in err  # all, one line
    assert ray.is_initialized() == initialized  # refused before joining the cluster
    # The submitter's directory as base: every relative path resolves against it; the job file still comes
    # from the upload.
    assert main(["--config", "jobs/job.yaml", "--base-dir", str(home), "--check"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["data"]["train"] == str(home / "data" / "x.parquet")
    assert shown["run"]["storage_path"] == str(home / "outputs" / "runs")
    assert shown["run"]["export_dir"] == str(home / "outputs" / "models" / "bigbird-job")
    # An absolute path needs no base; a relative output is refused even when the input is absolute.
    assert main(["--config", "jobs/job.yaml", "--override", f"data.train={home}/data/x.parquet"]) == 2
    err = capsys.readouterr().err
    assert "run.storage_path 'outputs/runs' is a relative path" in err and "deleted with the job" in err


def test_local_paths_become_absolute_for_the_workers(tmp_path, monkeypatch):
    from jobs.finetune import resolve_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "data").mkdir()
    s = resolve_paths(load_settings(data=settings(model={"from_pretrained": "model"}, data__train="data",
                                                  data__eval="s3://bucket/eval")))
    assert s.model.from_pretrained == str(tmp_path / "model") and s.data.train == str(tmp_path / "data")
    assert s.data.eval == "s3://bucket/eval"  # URIs untouched
    assert s.run.storage_path == str(tmp_path / "outputs" / "runs")
    assert s.run.export_dir == str(tmp_path / "outputs" / "models" / "bigbird-job")
    hub = resolve_paths(load_settings(data=settings(model={"from_pretrained": "google/bigbird-roberta-base"})))
    assert hub.model.from_pretrained == "google/bigbird-roberta-base"  # not a local folder: a hub id
