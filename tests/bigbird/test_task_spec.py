"""The task registry (one TaskSpec per task) and the prepare / score / finish split of the task pipelines."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

import bigbird
from bigbird.tasks import ALIASES, RESULT_COLUMNS, SPECS, Prepared, get_spec, pipeline, task_class
from bigbird.tasks.spec import COMMON_COLUMNS, DEFAULT_STRIDE
from bigbird.windows import RecordError
from tests.helpers import SPM_TEXT, build_task_model

# Written out here, independently of the specs: what users rely on.
MODEL_CLASSES = {"fill-mask": "BigBirdForMaskedLM", "question-answering": "BigBirdForQuestionAnswering",
                 "text-classification": "BigBirdForSequenceClassification",
                 "token-classification": "BigBirdForTokenClassification"}
DEFAULTS = {"fill-mask": {"top_k": 5, "targets": None},
            "question-answering": {"top_k": 1, "max_answer_len": 15, "handle_impossible_answer": False},
            "text-classification": {"top_k": 1, "function_to_apply": None},
            "token-classification": {"aggregation_strategy": "simple", "ignore_labels": ("O",)}}


def test_registry_holds_each_task_once():
    assert sorted(SPECS) == sorted(MODEL_CLASSES)
    for name, spec in SPECS.items():
        assert spec.model_class is getattr(bigbird, MODEL_CLASSES[name])
        assert spec.defaults() == DEFAULTS[name]
        assert task_class(name) is spec.pipeline_class and spec.pipeline_class.spec is spec
        assert spec.pipeline_class.default_params == DEFAULTS[name]  # the derived compatibility view
        assert dataclasses.is_dataclass(spec.params)
    assert get_spec("masked-lm").name == "fill-mask" and get_spec("masked-lm").train_name == "masked-lm"
    for alias, name in {"ner": "token-classification", "sentiment-analysis": "text-classification",
                        "qa": "question-answering", "mlm": "fill-mask"}.items():
        assert ALIASES[alias] == name and get_spec(alias) is SPECS[name]
    with pytest.raises(ValueError, match="unknown task 'summarize'.*fill-mask.*ner"):
        get_spec("summarize")
    assert DEFAULT_STRIDE == 128


def test_batch_schema_and_rows():
    assert get_spec("fill-mask").columns is None  # the batch job does not run fill-mask
    with pytest.raises(ValueError, match="does not run fill-mask"):
        get_spec("fill-mask").result_schema()
    schema = get_spec("question-answering").result_schema((("src", "title"),))
    assert schema.names == [n for n, _ in COMMON_COLUMNS] + ["answer", "score", "start", "end", "title"]
    assert schema.field("title").type == pa.string()
    assert RESULT_COLUMNS >= {"id", "label", "labels", "scores", "entities", "offset", "answer"}
    assert "title" not in RESULT_COLUMNS
    tc = get_spec("text-classification")
    result = [{"label": "POS", "score": 0.7}, {"label": "NEG", "score": 0.3}]
    assert tc.row(result) == {"label": "POS", "score": 0.7, "scores": result, "labels": ["POS"]}
    assert tc.row(result, {"multi_label_threshold": 0.2})["labels"] == ["POS", "NEG"]
    ents = [{"entity_group": "LOC", "score": 0.9, "word": "Paris", "start": 3, "end": 8}]
    row = get_spec("token-classification").row(ents, offset=100)
    assert row == {"entities": [{"label": "LOC", "score": 0.9, "start": 103, "end": 108, "word": "Paris"}],
                   "offset": 100}
    pa.Table.from_pylist([{**{n: None for n, _ in COMMON_COLUMNS}, **row}],
                         schema=get_spec("token-classification").result_schema())
    answer = {"answer": "x", "score": 0.5, "start": 1, "end": 2}
    assert get_spec("question-answering").row([answer, {**answer, "score": 0.1}]) == answer


def test_prepare_score_finish_equals_call(task_models):
    pipe = pipeline("text-classification", task_models["text-classification"], max_length=64, stride=16)
    texts = ["A short review.", SPM_TEXT[:1500], "", "Another one."]
    prepared = pipe.prepare(texts, {"top_k": None})
    assert isinstance(prepared, Prepared) and not prepared.single
    assert prepared.params == {"top_k": None, "function_to_apply": None}
    assert isinstance(prepared.encoded[2], RecordError) and set(prepared.errors) == {2}
    assert prepared.tokens[2] == 0 and prepared.tokens[1] > 64
    assert prepared.tokens == [0 if i == 2 else len(e.ids) for i, e in enumerate(prepared.encoded)]
    assert len(prepared.windows_of()[1]) > 1  # a long record spans several windows
    results = pipe.finish(prepared, pipe.score(prepared.windows, **prepared.params))
    assert isinstance(results[2], RecordError) and "empty text" in str(results[2])
    good = [t for i, t in enumerate(texts) if i != 2]
    assert [r for i, r in enumerate(results) if i != 2] == pipe(good, top_k=None)
    with pytest.raises(ValueError, match="unknown parameters.*topk"):
        pipe.prepare("x", {"topk": 2})
    with pytest.raises(ValueError, match="function_to_apply"):
        pipe.prepare("x", {"function_to_apply": "relu"})  # checked before anything is scored


def test_preparer_has_no_model(task_models):
    full = pipeline("question-answering", task_models["question-answering"], max_length=64, stride=16)
    cls = task_class("question-answering")
    prep = cls.preparer(full.tokenizer, full.config, max_length=64, stride=16)
    assert prep.model is None and prep.max_length == 64
    inputs = [{"question": "Who?", "context": SPM_TEXT[:800]}, {"question": " ", "context": "x"}]
    a, b = prep.prepare(inputs), full.prepare(inputs)
    assert [w.input_ids.tolist() for w in a.windows] == [w.input_ids.tolist() for w in b.windows]
    assert "empty question" in str(a.errors[1])
    with pytest.raises(RuntimeError, match="without a model"):
        prep.score(a.windows, **a.params)
    results = prep.finish(a, full.score(a.windows, **a.params))  # scored elsewhere, finished here
    assert results[0] == full(inputs[0])


def test_bad_unicode_fails_only_its_record(task_models):
    pipe = pipeline("token-classification", task_models["token-classification"])
    prepared = pipe.prepare(["Alice flew to Paris.", "bad \ud800 text", "Bob stayed home."])
    assert set(prepared.errors) == {1}
    assert "not valid Unicode" in str(prepared.errors[1]) and "U+D800 at character 4" in str(prepared.errors[1])
    with pytest.raises(ValueError, match="input 1: text is not valid Unicode"):
        pipe(["fine", "\udfff"])
    qa = pipeline("question-answering", task_models["question-answering"])
    with pytest.raises(ValueError, match="question is not valid Unicode"):
        qa(question="why \ud800", context="Because.")


def test_dna_bases_are_validated_in_prepare(tmp_path):
    from bigbird.tokenization import DNATokenizer

    folder = build_task_model(tmp_path / "dna", "token-classification", tokenizer=DNATokenizer())
    pipe = pipeline("token-classification", folder)
    prepared = pipe.prepare(["ACGTNACGT", "ACGXT", "acgt"])
    assert set(prepared.errors) == {1} and "invalid DNA characters" in str(prepared.errors[1])
    assert "'X' at 3" in str(prepared.errors[1])
    with pytest.raises(ValueError, match="input 0: invalid DNA characters.*'Z' at 2"):
        pipe("ACZ")  # no longer silently read as <unk>
    assert isinstance(pipe("ACGTACGT"), list)
