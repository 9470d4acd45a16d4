"""Question/context pairs reach the model as they reach transformers' BigBird from transformers' tokenizer.

transformers' BigBird tokenizer returns no ``token_type_ids`` (``model_input_names``), and
``transformers.BigBirdForQuestionAnswering`` then derives them itself: 0 up to the first ``[SEP]``, 1 after. Our
QA windows carry those same types explicitly, so our pipeline's numbers are the reference's. The model weights
are random (ours, saved, loaded into transformers); the texts are real TriviaQA question/evidence pairs.
"""

from __future__ import annotations

import pytest
import torch

from bigbird.tasks import pipeline
from bigbird.windows import collate
from tests import spm_corpora
from tests.helpers import build_task_model

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def qa_folder(tmp_path_factory):
    return build_task_model(tmp_path_factory.mktemp("reference_pairs") / "qa", "question-answering")


@pytest.fixture(scope="module")
def full_folder(tmp_path_factory):
    """The same weights with full attention: the comparison of inputs does not depend on random blocks."""
    return build_task_model(tmp_path_factory.mktemp("reference_pairs") / "qa_full", "question-answering",
                            attention_type="original_full")


@pytest.fixture(scope="module")
def reference(full_folder):
    tok = transformers.BigBirdTokenizer.from_pretrained(str(full_folder))
    model = transformers.BigBirdForQuestionAnswering.from_pretrained(
        str(full_folder), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return tok, model.eval()


def _pairs(n: int, limit: int = 250) -> list[tuple[str, str]]:
    """Real (question, evidence paragraph) pairs that fit one window of this tiny model (256 positions)."""
    from tests.helpers import spm_tokenizer

    tok, out = spm_tokenizer(), []
    for question, doc in spm_corpora.triviaqa_pairs():
        for paragraph in spm_corpora.paragraphs(doc):
            if len(paragraph) > 150 and len(tok(question, paragraph.strip())["input_ids"]) <= limit:
                out.append((question, paragraph.strip()))
                break
    return out[:n]


def test_qa_windows_equal_transformers_inputs_and_logits(full_folder, reference):
    tok, model = reference
    ours = pipeline("question-answering", full_folder)
    pairs = _pairs(8)
    assert len(pairs) == 8
    encoded = ours.encode([c for _, c in pairs], [q for q, _ in pairs])
    windows, errors = ours.windows(encoded)
    assert not errors and len(windows) == len(pairs)  # one window each
    for window, (question, context) in zip(windows, pairs):
        ref = tok(question, context, return_tensors="pt")
        assert list(ref) == ["input_ids", "attention_mask"]  # no token types from transformers' tokenizer
        assert window.input_ids.tolist() == ref["input_ids"][0].tolist()
        batch = collate([window], pad_id=ours.tokenizer.pad_token_id)
        sep = window.input_ids.tolist().index(ours.tokenizer.sep_token_id)
        assert batch["token_type_ids"][0].tolist() == [0] * (sep + 1) + [1] * (len(window.input_ids) - sep - 1)
        with torch.no_grad():
            expected = model(**ref)
            got = ours.model(**batch)
            zeros = ours.model(**{**batch, "token_type_ids": torch.zeros_like(batch["token_type_ids"])})
        torch.testing.assert_close(got.start_logits, expected.start_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.end_logits, expected.end_logits, atol=1e-5, rtol=1e-5)
        # segment 0 everywhere would not be the reference's input for QA
        assert not torch.allclose(zeros.start_logits, expected.start_logits, atol=1e-3)


def test_qa_pipeline_answers_equal_transformers_model(qa_folder):
    from tests.bigbird.test_tasks import _reference_qa

    ours = pipeline("question-answering", qa_folder)
    for question, context in _pairs(4):
        got = ours(question=question, context=context, top_k=3)
        expected = _reference_qa(qa_folder, question, context, 3)
        assert [(a["start"], a["end"], a["answer"]) for a in got] == [(b["start"], b["end"], b["answer"])
                                                                       for b in expected]
        assert [a["score"] for a in got] == pytest.approx([b["score"] for b in expected], rel=1e-4)


def test_tokenizer_returns_token_types_only_when_asked(qa_folder):
    from bigbird import BigBirdTokenizer

    tok = BigBirdTokenizer.from_pretrained(qa_folder)
    ref = transformers.BigBirdTokenizer.from_pretrained(str(qa_folder))
    question, context = _pairs(1)[0]
    assert tok.model_input_names == ref.model_input_names == ["input_ids", "attention_mask"]
    assert dict(tok(question, context)) == dict(ref(question, context))
    asked = dict(tok(question, context, return_token_type_ids=True))
    assert asked == dict(ref(question, context, return_token_type_ids=True))
    assert set(asked["token_type_ids"]) == {0, 1}
