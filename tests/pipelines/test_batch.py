"""End-to-end batch jobs on a local Ray cluster over small real corpora."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigbird.tasks import pipeline
from bigbird.tokenization import DNATokenizer
from corpora import iter_triviaqa_records, iter_wiki_records, write_corpus
from corpora.genome import convert_to_parquet
from pipelines import batch
from pipelines.settings import BatchSettings
from tests.helpers import build_task_model

FIXTURES = Path(__file__).parent.parent / "fixtures" / "corpora"


def _read(folder) -> pa.Table:
    return pq.read_table(folder)


@pytest.fixture(scope="module")
def wiki_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wiki")
    write_corpus(iter_wiki_records(FIXTURES / "enwiki-excerpt.xml.bz2"), out, ["id", "text", "source"], limit=6)
    bad = pa.table({"id": ["bad-null", "bad-blank"], "text": pa.array([None, "  \n "], pa.string()),
                    "source": ["test", "test"]})
    pq.write_table(bad, out / "bad.parquet")
    return out


def _settings(task, model, corpus, output, **kw) -> BatchSettings:
    return BatchSettings(task=task, model=str(model), input=str(corpus), output=str(output), batch_size=4, **kw)


def test_text_classification_job_equals_in_process_pipeline(ray_cluster, task_models, wiki_corpus, tmp_path):
    model = task_models["text-classification"]
    stats = batch.run(_settings("text-classification", model, wiki_corpus, tmp_path / "out", stride=32,
                                keep_columns=["source", "id=original_id"]))
    out = _read(tmp_path / "out").to_pylist()
    assert {r["source"] for r in out} == set(_read(wiki_corpus).column("source").to_pylist())
    assert all(r["original_id"] == r["id"] for r in out)
    source = _read(wiki_corpus)
    assert sorted(r["id"] for r in out) == sorted(source.column("id").to_pylist())  # each record once
    assert stats.records == len(out) == 8 and stats.errors == 2 and stats.tokens > 10 * 256
    by_id = {r["id"]: r for r in out}
    assert by_id["bad-null"]["error"] and by_id["bad-blank"]["error"] == "empty text: nothing to score"
    clf = pipeline("text-classification", model, stride=32)
    texts = {r["id"]: r["text"] for r in source.to_pylist() if r["id"].startswith("bad") is False}
    expected = clf(list(texts.values()), top_k=None)
    long_docs = 0
    for (rid, _), exp in zip(texts.items(), expected):
        row = by_id[rid]
        assert row["error"] is None and row["label"] == exp[0]["label"]
        assert row["score"] == pytest.approx(exp[0]["score"], abs=1e-6)
        assert [s["label"] for s in row["scores"]] == [e["label"] for e in exp]
        long_docs += row["num_windows"] > 1
    assert long_docs >= 3


def test_resume_after_interruption_loses_and_duplicates_nothing(ray_cluster, task_models, wiki_corpus, tmp_path):
    model = task_models["text-classification"]
    out = tmp_path / "out"
    first = batch.run(_settings("text-classification", model, wiki_corpus, out, limit=3))
    assert first.records == 3
    left_behind = out / ".part-00000-000000000003-000000000008.parquet.tmp-" f"{'0' * 32}"
    left_behind.write_bytes(b"PAR1 cut short")  # the job's own temporary file, as a killed run leaves it
    second = batch.run(_settings("text-classification", model, wiki_corpus, out))
    assert second.records == 5 and second.skipped == 3
    ids = _read(out).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 8
    assert not left_behind.exists()
    third = batch.run(_settings("text-classification", model, wiki_corpus, out))
    assert third.records == 0


def test_question_answering_job_with_question_column(ray_cluster, task_models, tmp_path):
    corpus = tmp_path / "trivia"
    write_corpus(iter_triviaqa_records(FIXTURES / "triviaqa-sample.tgz"), corpus,
                 ["id", "question", "text", "answers", "source"], limit=4)
    model = task_models["question-answering"]
    batch.run(_settings("question-answering", model, corpus, tmp_path / "out", question_column="question",
                        stride=64))
    out = {r["id"]: r for r in _read(tmp_path / "out").to_pylist()}
    qa = pipeline("question-answering", model, stride=64)
    for rec in _read(corpus).to_pylist():
        exp = qa(question=rec["question"], context=rec["text"])
        row = out[rec["id"]]
        assert (row["start"], row["end"], row["answer"]) == (exp["start"], exp["end"], exp["answer"])
        assert row["answer"] == rec["text"][row["start"] : row["end"]]
        assert row["score"] == pytest.approx(exp["score"], rel=1e-5)


def test_genome_token_classification_in_genome_coordinates(ray_cluster, tmp_path):
    model = build_task_model(tmp_path / "dna-model", "token-classification", tokenizer=DNATokenizer(),
                             max_position_embeddings=512, block_size=32, id2label={0: "O", 1: "exon"})
    corpus = tmp_path / "genome"
    convert_to_parquet([FIXTURES / "gbpri1-excerpt.seq"], corpus, window=20_000, limit=3)
    pq.write_table(pa.table({"id": ["bad-dna"], "text": ["ACGTNNXZ"], "offset": pa.array([0], pa.int64())}),
                   corpus / "bad.parquet")
    stats = batch.run(_settings("token-classification", model, corpus, tmp_path / "out", offset_column="offset",
                                stride=64))
    out = {r["id"]: r for r in _read(tmp_path / "out").to_pylist()}
    assert "X" in out["bad-dna"]["error"] and stats.errors == 1
    tagger = pipeline("token-classification", model, stride=64)
    checked = 0
    for rec in _read(corpus).to_pylist():
        if rec["id"] == "bad-dna":
            continue
        row = out[rec["id"]]
        assert row["num_tokens"] == len(rec["text"])  # one token per base
        expected = tagger(rec["text"])
        assert len(row["entities"]) == len(expected)
        for got, exp in zip(row["entities"], expected):
            assert (got["start"], got["end"]) == (exp["start"] + rec["offset"], exp["end"] + rec["offset"])
            assert got["label"] == exp["entity_group"]
            checked += 1
    assert checked > 0


def test_settings_errors_name_the_problem(task_models, wiki_corpus, tmp_path):
    model = str(task_models["text-classification"])
    with pytest.raises(ValueError, match="stride 300 must be smaller than max_length 256"):
        BatchSettings(task="text-classification", model=model, input="x", output="y", stride=300, max_length=256)
    with pytest.raises(ValueError, match="exactly one of question_column and question"):
        BatchSettings(task="question-answering", model=model, input="x", output="y")
    with pytest.raises(ValueError, match=r"no column\(s\) \['body'\]"):
        batch.scan_input(_settings("text-classification", model, wiki_corpus, tmp_path, text_column="body"))
    with pytest.raises(ValueError, match=r"keep_columns \['label'\] clash"):
        BatchSettings(task="text-classification", model=model, input="x", output="y", keep_columns=["label"])
    with pytest.raises(ValueError, match="cannot read input"):
        batch.scan_input(_settings("text-classification", model, tmp_path / "missing", tmp_path))


def test_cli_errors_are_one_line(capsys, task_models, tmp_path):
    code = batch.main(["--task", "text-classification", "--model", str(task_models["text-classification"]),
                       "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("bigbird batch: error: cannot read input") and "\n" not in err
    code = batch.main(["--task", "text-classification", "--model", "m", "--input", "i", "--output", "o",
                       "--stride", "-1"])
    assert code == 2 and "stride" in capsys.readouterr().err
    code = batch.main(["--config", str(tmp_path / "none.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == f"bigbird batch: error: no such batch settings file: {str(tmp_path / 'none.yaml')!r}"
    (tmp_path / "job.yaml").write_text("task: text-classification\nmodel: m\ninput: i\noutput: o\ntop_k: 0\n")
    code = batch.main(["--config", str(tmp_path / "job.yaml"), "--stride", "-1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("bigbird batch: error: invalid batch settings: stride: ") and "top_k: " in err
