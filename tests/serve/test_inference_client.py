"""huggingface_hub's own InferenceClient, unmodified, against the service: every task, both ways of pointing it
at us (``base_url`` = the service root, ``model=`` = the task URL), sync and async, with the parameters the
client sends. The hub endpoint points at a closed local port, so nothing leaves the machine."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
import requests

from tests.serve.common import BOTCHAN, LONG, TIMEOUT, assert_close, expected, post

hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import AsyncInferenceClient, InferenceClient  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

QA = {"question": "Who was the father?", "context": BOTCHAN[:600]}


@pytest.fixture(autouse=True)
def online_to_nowhere(monkeypatch):
    """The client online (it refuses every request in offline mode), its hub a closed local port."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "unused")  # no token lookup on disk


def clients(urls: dict[str, str], task: str) -> list[InferenceClient]:
    return [InferenceClient(base_url=urls[task], timeout=TIMEOUT),
            InferenceClient(model=f"{urls[task]}/v1/{task}", timeout=TIMEOUT)]


def plain(out: Any) -> Any:
    """The client's output dataclasses -> dicts of the fields the service sent (None fields dropped)."""
    if isinstance(out, list):
        return [plain(o) for o in out]
    return {k: v for k, v in dataclasses.asdict(out).items() if v is not None}


def check(out: Any, want: Any, where: str = "") -> None:
    """The client's parse of our answer equals ``want`` on the fields its output type has (the Inference API
    spec has no ``index`` for tokens: the client drops it)."""
    if isinstance(out, list):
        assert isinstance(want, list) and len(out) == len(want), f"{where}: {out!r} vs {want!r}"
        for o, w in zip(out, want):
            check(o, w, where)
        return
    names = {f.name for f in dataclasses.fields(out)}
    assert_close(plain(out), {k: v for k, v in want.items() if k in names}, where)


# (client method, its arguments, the same request in the service's own terms)
CALLS: dict[str, list[tuple[dict[str, Any], Any, dict[str, Any]]]] = {
    "text-classification": [
        ({"text": "A short review."}, "A short review.", {}),
        ({"text": LONG, "top_k": 3}, LONG, {"top_k": 3}),
        ({"text": "A short review.", "top_k": 2, "function_to_apply": "sigmoid"}, "A short review.",
         {"top_k": 2, "function_to_apply": "sigmoid"}),
    ],
    "fill-mask": [
        ({"text": "The [MASK] sat on the mat."}, "The [MASK] sat on the mat.", {}),
        ({"text": "The [MASK] sat on the mat.", "top_k": 2}, "The [MASK] sat on the mat.", {"top_k": 2}),
    ],
    "question-answering": [
        (dict(QA), QA, {}),
        ({**QA, "top_k": 2, "max_answer_len": 5, "handle_impossible_answer": True}, QA,
         {"top_k": 2, "max_answer_len": 5, "handle_impossible_answer": True}),
    ],
    "token-classification": [
        ({"text": "Alice flew from Paris to Tokyo."}, "Alice flew from Paris to Tokyo.", {}),
        ({"text": LONG, "aggregation_strategy": "none", "ignore_labels": []}, LONG,
         {"aggregation_strategy": "none", "ignore_labels": []}),
    ],
}
METHOD = {t: t.replace("-", "_") for t in CALLS}


@pytest.mark.parametrize("task", sorted(CALLS))
def test_client_matches_pipeline(urls, references, task):
    """Both ways of pointing the client at us give what the pipeline gives, in the Inference API's shape."""
    for kwargs, inputs, params in CALLS[task]:
        want = expected(references, task, inputs, params)
        if task == "text-classification":
            want = want[0]  # the client takes the single input's list
        for client in clients(urls, task):
            out = getattr(client, METHOD[task])(**kwargs)
            check(out, want, f"{task} {kwargs}")


@pytest.mark.parametrize("task", sorted(CALLS))
def test_async_client(urls, references, task):
    kwargs, inputs, params = CALLS[task][-1]
    want = expected(references, task, inputs, params)
    want = want[0] if task == "text-classification" else want

    async def call_both() -> list[Any]:
        async with AsyncInferenceClient(base_url=urls[task], timeout=TIMEOUT) as a, \
                AsyncInferenceClient(model=f"{urls[task]}/v1/{task}", timeout=TIMEOUT) as b:
            return await asyncio.gather(getattr(a, METHOD[task])(**kwargs), getattr(b, METHOD[task])(**kwargs))

    for out in asyncio.run(call_both()):
        check(out, want, task)


def test_text_classification_shapes(urls):
    """Single input -> ``[[{label, score}, ...]]``; a batch -> one list per input; top_k is honoured."""
    url = urls["text-classification"]
    one = post(url, {"inputs": "A short review.", "parameters": {"top_k": 2}}).json()
    assert isinstance(one, list) and len(one) == 1 and len(one[0]) == 2 and set(one[0][0]) == {"label", "score"}
    many = post(url, {"inputs": ["A short review.", LONG, "x"]}).json()
    assert [len(r) for r in many] == [1, 1, 1]
    assert one[0][0]["score"] >= one[0][1]["score"]


def test_options_accepted(urls):
    r = post(urls["text-classification"], {"inputs": "A short review.",
                                           "options": {"wait_for_model": True, "use_cache": False}})
    assert r.status_code == 200, r.text
    r = post(urls["text-classification"], {"inputs": "x", "options": {"wait": True}})
    assert r.status_code == 422 and "options.wait" in r.json()["error"], r.text


def test_qa_window_parameters(urls, references):
    """doc_stride / max_seq_len cut the windows as given: the answer matches a pipeline built with them."""
    from bigbird.tasks import pipeline

    ref = references["question-answering"]
    question = {"question": "What did he do?", "context": LONG}
    client = InferenceClient(base_url=urls["question-answering"], timeout=TIMEOUT)
    out = client.question_answering(**question, doc_stride=32, max_seq_len=128, max_question_len=3,
                                    align_to_words=False)
    mirror = pipeline("question-answering", ref.model, ref.tokenizer, max_length=128, stride=32)
    ids = ref.tokenizer(question["question"], add_special_tokens=False)["input_ids"]
    short_q = ref.tokenizer.decode(ids[:3])
    assert len(ids) > 3 and ref.tokenizer(short_q, add_special_tokens=False)["input_ids"] == ids[:3]
    want = mirror({"question": short_q, "context": LONG})
    check(out, want)
    default = client.question_answering(**question)
    check(default, ref(question))


def test_token_classification_stride(urls, references):
    from bigbird.tasks import pipeline

    ref = references["token-classification"]
    client = InferenceClient(model=f"{urls['token-classification']}/v1/token-classification", timeout=TIMEOUT)
    out = client.token_classification(LONG, stride=16, aggregation_strategy="none")
    mirror = pipeline("token-classification", ref.model, ref.tokenizer, stride=16)
    check(out, mirror(LONG, aggregation_strategy="none"))


@pytest.mark.parametrize("task,kwargs,name", [
    ("question-answering", {**QA, "align_to_words": True}, "align_to_words"),
    ("question-answering", {**QA, "max_seq_len": 100000}, "max_seq_len"),
    ("question-answering", {**QA, "doc_stride": 100, "max_seq_len": 64}, "doc_stride"),
    ("token-classification", {"text": "x y", "stride": 100000}, "stride"),
])
def test_unsupported_values_named(urls, task, kwargs, name):
    client = InferenceClient(base_url=urls[task], timeout=TIMEOUT)
    with pytest.raises(HfHubHTTPError) as info:
        getattr(client, METHOD[task])(**kwargs)
    assert info.value.response.status_code == 422
    assert name in info.value.response.json()["error"]


def test_root_and_task_path_agree(urls):
    for task in sorted(CALLS):
        kwargs, inputs, params = CALLS[task][0]
        a = post(urls[task] + "/", {"inputs": inputs, "parameters": params})
        b = post(f"{urls[task]}/v1/{task}", {"inputs": inputs, "parameters": params})
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert_close(a.json(), b.json())
    assert requests.get(urls["fill-mask"] + "/healthz", timeout=TIMEOUT).status_code == 200


def test_fill_mask_targets(urls, references):
    """targets: the full-vocabulary probabilities of just those words, ranked among themselves."""
    text = "The [MASK] sat on the mat."
    client = InferenceClient(base_url=urls["fill-mask"], timeout=TIMEOUT)
    full = plain(client.fill_mask(text, top_k=6))
    chosen = [full[3], full[1]]
    words = [ref_word(references, c["token"]) for c in chosen]
    out = plain(client.fill_mask(text, targets=words, top_k=5))
    assert [o["token"] for o in out] == [full[1]["token"], full[3]["token"]]
    assert_close([o["score"] for o in out], [full[1]["score"], full[3]["score"]])
    one = plain(client.fill_mask(text, targets=words, top_k=1))
    assert [o["token"] for o in one] == [full[1]["token"]]


def ref_word(references: dict[str, Any], token: int) -> str:
    """A token as a word a user would type (the SentencePiece word marker dropped)."""
    return references["fill-mask"].tokenizer.convert_ids_to_tokens([token])[0].lstrip("\u2581")


def word_spans(tokens: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Tokens (aggregation "none") grouped into words: a new word at the word marker or after a gap."""
    words: list[list[dict[str, Any]]] = []
    for t in tokens:
        if not words or t["word"].startswith("\u2581") or t["start"] > words[-1][-1]["end"]:
            words.append([t])
        else:
            words[-1].append(t)
    return words


def merge_words(text: str, labelled: list[tuple[str, float, int, int]]) -> list[dict[str, Any]]:
    """transformers' grouping of labelled words: a run of one tag (a B- starts a new one), mean score."""
    groups: list[list[tuple[str, float, int, int]]] = []
    for w in labelled:
        bi, tag = (w[0][0], w[0][2:]) if w[0][:2] in ("B-", "I-") else ("I", w[0])
        prev = groups[-1][-1][0] if groups else None
        prev_tag = None if prev is None else prev[2:] if prev[:2] in ("B-", "I-") else prev
        if groups and tag == prev_tag and bi != "B":
            groups[-1].append(w)
        else:
            groups.append([w])
    out = []
    for g in groups:
        tag = g[0][0][2:] if g[0][0][:2] in ("B-", "I-") else g[0][0]
        if tag == "O":
            continue
        start, end = g[0][2], g[-1][3]
        out.append({"entity_group": tag, "score": sum(w[1] for w in g) / len(g), "word": text[start:end].strip(),
                    "start": start, "end": end})
    return out


@pytest.mark.parametrize("strategy", ["first", "max", "average"])
def test_word_aggregation_strategies(urls, references, strategy):
    """first / max / average label whole words, then merge them: checked against the per-token output
    (first, max) and against the model's own probabilities (average), on a one-window text."""
    import torch

    text = "Alice flew from Paris to Tokyo, then walked home slowly."
    client = InferenceClient(base_url=urls["token-classification"], timeout=TIMEOUT)
    tokens = post(urls["token-classification"], {"inputs": text, "parameters": {"aggregation_strategy": "none",
                                                                               "ignore_labels": []}}).json()
    words = word_spans(tokens)
    if strategy == "first":
        labelled = [(w[0]["entity"], w[0]["score"], w[0]["start"], w[-1]["end"]) for w in words]
    elif strategy == "max":
        labelled = [(b["entity"], b["score"], w[0]["start"], w[-1]["end"])
                    for w in words for b in [max(w, key=lambda t: t["score"])]]
    else:
        ref = references["token-classification"]
        tok = ref.tokenizer
        ids = [tok.cls_token_id, *tok(text, add_special_tokens=False)["input_ids"], tok.sep_token_id]
        with torch.no_grad():
            probs = torch.softmax(ref.model(input_ids=torch.tensor([ids])).logits[0, 1:-1].double(), -1)
        labelled, at = [], 0
        for w in words:
            mean = probs[at : at + len(w)].mean(0)
            k = int(mean.argmax())
            labelled.append((ref.model.config.id2label[k], float(mean[k]), w[0]["start"], w[-1]["end"]))
            at += len(w)
        assert at == len(probs)
    out = client.token_classification(text, aggregation_strategy=strategy)
    check(out, merge_words(text, labelled), strategy)


def test_strategies_and_targets_equal_transformers(urls, task_models):
    """The served first / average / max entities and fill-mask targets equal transformers' pipelines on the
    same weights (a one-window text)."""
    transformers = pytest.importorskip("transformers")

    def hf(task: str) -> Any:
        folder = str(task_models[task])
        return transformers.pipeline(task, model=folder, tokenizer=folder, device=-1)

    text = "I was showing it to my friends, reflecting its pretty blades against the rays of the sun."
    tagger = hf("token-classification")
    client = InferenceClient(base_url=urls["token-classification"], timeout=TIMEOUT)
    for strategy in ("first", "average", "max"):
        ours = plain(client.token_classification(text, aggregation_strategy=strategy))
        theirs = tagger(text, aggregation_strategy=strategy)
        assert len(ours) == len(theirs) > 0, (strategy, ours, theirs)
        for x, y in zip(ours, theirs):
            assert (x["start"], x["end"], x["entity_group"]) == (y["start"], y["end"], y["entity_group"]), strategy
            assert x["score"] == pytest.approx(float(y["score"]), abs=1e-5), strategy
    filler = hf("fill-mask")
    masked = "I was showing it to my [MASK], reflecting its pretty blades."
    targets = ["friends", "sun", "blades"]
    ours = plain(InferenceClient(base_url=urls["fill-mask"], timeout=TIMEOUT).fill_mask(masked, targets=targets))
    theirs = filler(masked, targets=targets)
    assert [o["token"] for o in ours] == [t["token"] for t in theirs]
    assert_close([o["score"] for o in ours], [float(t["score"]) for t in theirs])


def test_multi_task_config(urls, task_models):
    """serve/config.multi.yaml: a classifier and a QA model side by side in one Serve config, each its own
    application and route, both answering the stock client (models swapped for the tiny test ones)."""
    from pathlib import Path

    import yaml
    from ray import serve
    from ray.serve import RunTarget
    from ray.serve.schema import ServeDeploySchema

    from serve.app import build_app

    config = yaml.safe_load((Path(__file__).parents[2] / "serve" / "config.multi.yaml").read_text())
    validate = getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj
    validate(config)  # a valid Serve config
    apps = config["applications"]
    assert [a["args"]["task"] for a in apps] == ["text-classification", "question-answering"]
    assert len({a["route_prefix"] for a in apps}) == len({a["name"] for a in apps}) == 2
    names = [f"multi-{a['name']}" for a in apps]
    targets = [RunTarget(build_app({**a["args"], "model": str(task_models[a["args"]["task"]]), "num_cpus": 0.25}),
                         name=name, route_prefix="/multi" + a["route_prefix"]) for a, name in zip(apps, names)]
    base = urls["text-classification"].rstrip("/")
    try:
        serve.run_many(targets)
        cls = InferenceClient(base_url=f"{base}/multi/classify", timeout=TIMEOUT).text_classification("A review.")
        qa = InferenceClient(base_url=f"{base}/multi/qa", timeout=TIMEOUT).question_answering(**QA)
        assert len(cls) == 1 and cls[0].label and QA["context"][qa.start:qa.end] == qa.answer
        models = requests.get(f"{base}/multi/qa/v1/models", timeout=TIMEOUT).json()["data"]
        assert [m["task"] for m in models] == ["question-answering"]
    finally:
        for name in names:
            serve.delete(name)
