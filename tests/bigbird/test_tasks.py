"""Task pipelines: equal to transformers' pipelines on the same weights, and correct on long inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from bigbird.tasks import pipeline
from tests.helpers import SPM_MODEL

TEXT = (SPM_MODEL.parent / "botchan_excerpt.txt").read_text()
SHORT = "I was showing it to my friends, reflecting its pretty blades against the rays of the sun."


def _hf(task, folder):
    return transformers.pipeline(task, model=str(folder), tokenizer=str(folder), device=-1)


def test_text_classification_equals_transformers(task_models):
    ours = pipeline("text-classification", task_models["text-classification"])
    hf = _hf("text-classification", task_models["text-classification"])
    a, b = ours(SHORT), hf(SHORT)
    assert a[0]["label"] == b[0]["label"] and a[0]["score"] == pytest.approx(b[0]["score"], abs=1e-5)
    many_a = ours([SHORT, TEXT[:300]], top_k=None)
    many_b = hf([SHORT, TEXT[:300]], top_k=None)
    for x, y in zip(many_a, many_b):
        assert [d["label"] for d in x] == [d["label"] for d in y]
        assert np.allclose([d["score"] for d in x], [d["score"] for d in y], atol=1e-5)


def test_token_classification_equals_transformers(task_models):
    ours = pipeline("token-classification", task_models["token-classification"])
    hf = _hf("token-classification", task_models["token-classification"])
    for strategy in ("simple", "none"):
        a = ours(SHORT, aggregation_strategy=strategy)
        b = hf(SHORT, aggregation_strategy=strategy)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b):
            assert (x["start"], x["end"]) == (y["start"], y["end"])
            assert x.get("entity_group", x.get("entity")) == y.get("entity_group", y.get("entity"))
            assert x["score"] == pytest.approx(float(y["score"]), abs=1e-5)


def _reference_qa(folder, question, context, top_k, random_eval=False):
    """transformers 5 has no QA pipeline: transformers' QA model plus the decoding of its v4 pipeline."""
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.BigBirdForQuestionAnswering.from_pretrained(
        str(folder), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model.train(not random_eval)  # train(): the seeded random blocks, as our default (no dropout)
    enc = tok(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0]
    seq_ids = enc.sequence_ids(0)
    with torch.no_grad():
        out = model(**enc)
    keep = np.array([s == 1 for s in seq_ids])
    keep_cls = keep.copy()
    keep_cls[0] = True
    start = np.where(keep_cls, out.start_logits[0].numpy(), -10000.0)
    end = np.where(keep_cls, out.end_logits[0].numpy(), -10000.0)
    start, end = np.exp(start - start.max()), np.exp(end - end.max())
    start, end = start / start.sum(), end / end.sum()
    start[0] = end[0] = 0.0
    scores = np.triu(np.tril(start[:, None] * end[None, :], 14))
    scores[~keep, :] = 0
    scores[:, ~keep] = 0
    order = np.argsort(-scores.ravel(), kind="stable")[:top_k]
    answers = []
    for idx in order:
        s, e = np.unravel_index(idx, scores.shape)
        a, b = int(offsets[s][0]), int(offsets[e][1])
        answers.append({"score": float(scores[s, e]), "start": a, "end": b, "answer": context[a:b]})
    return answers


# Trailing whitespace is left out: transformers 5's BigBirdTokenizer keeps a trailing "▁" that its own
# SentencePiece conversion (and sentencepiece) drop; we follow the conversion (see tests/bigbird/test_tokenizer.py).
@pytest.mark.parametrize("context", [SHORT, TEXT[:600].rstrip()])
def test_question_answering_equals_transformers_model(task_models, context):
    folder = task_models["question-answering"]
    ours = pipeline("question-answering", folder)
    question = "What did he show?"
    n_tokens = len(ours.tokenizer(question, context)["input_ids"])
    assert n_tokens <= 256
    a = ours(question=question, context=context, top_k=3)
    b = _reference_qa(folder, question, context, 3)
    for x, y in zip(a, b):
        assert (x["start"], x["end"], x["answer"]) == (y["start"], y["end"], y["answer"])
        assert x["score"] == pytest.approx(y["score"], rel=1e-4)


def test_fill_mask_equals_transformers(task_models):
    ours = pipeline("fill-mask", task_models["fill-mask"])
    hf = _hf("fill-mask", task_models["fill-mask"])
    # no punctuation right after [MASK]: transformers 5 puts a "▁" before it there, SentencePiece (and we) do not
    text = "I was showing it to my [MASK] reflecting its pretty blades."
    a, b = ours(text, top_k=3), hf(text, top_k=3)
    assert [x["token"] for x in a] == [y["token"] for y in b]
    assert np.allclose([x["score"] for x in a], [y["score"] for y in b], atol=1e-5)
    assert [x["sequence"] for x in a] == [y["sequence"] for y in b]
    two = ours("The [MASK] was [MASK].", top_k=2)
    assert len(two) == 2 and all(len(m) == 2 for m in two)


def test_long_question_answering_finds_spans_in_any_window(task_models):
    qa = pipeline("question-answering", task_models["question-answering"], stride=32)
    context = TEXT[:12000]  # several times max_position_embeddings (256)
    assert len(qa.tokenizer(context)["input_ids"]) > 4 * 256
    answers = qa(question="Who broke the fence?", context=context, top_k=5)
    assert len(answers) == 5
    for a in answers:
        assert context[a["start"] : a["end"]] == a["answer"] and a["answer"]
    scores = [a["score"] for a in answers]
    assert scores == sorted(scores, reverse=True)
    # The merged best equals the best over the windows scored one by one.
    encoded = qa.encode([context], ["Who broke the fence?"])
    windows, _ = qa.windows(encoded)
    assert len(windows) > 4
    per_window = qa.score(windows, top_k=1, max_answer_len=15, handle_impossible_answer=False)
    assert max(o["scores"].max() for o in per_window if len(o["scores"])) == pytest.approx(scores[0])


def test_long_token_classification_stitches_owned_tokens(task_models):
    tagger = pipeline("token-classification", task_models["token-classification"], stride=40)
    text = TEXT[:8000]
    entities = tagger(text, aggregation_strategy="none", ignore_labels=[])
    encoded = tagger.encode([text])[0]
    assert len(entities) == len(encoded.ids)  # one prediction per token, none lost, none doubled
    windows, _ = tagger.windows([encoded])
    for w in windows:
        with torch.inference_mode():
            logits = tagger.model(input_ids=torch.as_tensor(w.input_ids)[None]).logits[0]
        labels = logits.argmax(-1).numpy()
        lo = w.context_start + w.own_start - w.token_start
        hi = w.context_start + w.own_end - w.token_start
        expected = [tagger.config.id2label[int(x)] for x in labels[lo:hi]]
        assert [e["entity"] for e in entities[w.own_start : w.own_end]] == expected
    starts = [e["start"] for e in entities]
    assert starts == sorted(starts)


def test_results_do_not_depend_on_batch_composition(task_models):
    clf = pipeline("text-classification", task_models["text-classification"], batch_size=3)
    texts = [TEXT[:200], TEXT[:3000], SHORT, TEXT[5000:9000]]
    together = clf(texts, top_k=None)
    alone = [clf(t, top_k=None) for t in texts]
    for x, y in zip(together, alone):
        assert np.allclose([d["score"] for d in x], [d["score"] for d in y], atol=1e-6)


def test_bad_inputs(task_models):
    clf = pipeline("text-classification", task_models["text-classification"])
    with pytest.raises(ValueError, match="empty text"):
        clf("")
    with pytest.raises(ValueError, match="input 1: empty text"):
        clf(["fine", "   \n\t "])
    with pytest.raises(TypeError, match="string"):
        clf(42)
    with pytest.raises(ValueError, match="unknown parameters"):
        clf("x", topk=3)
    qa = pipeline("question-answering", task_models["question-answering"])
    with pytest.raises(ValueError, match="no room"):
        qa(question=TEXT[:3000], context=SHORT)
    with pytest.raises(ValueError, match="empty question"):
        qa(question=" ", context=SHORT)
    fm = pipeline("fill-mask", task_models["fill-mask"])
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        fm("nothing to fill")
    with pytest.raises(ValueError, match="unknown task 'summarize'"):
        pipeline("summarize", task_models["fill-mask"])
    with pytest.raises(ValueError, match="max_length 512"):
        pipeline("fill-mask", task_models["fill-mask"], max_length=512)
