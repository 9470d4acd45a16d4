"""SQuAD v1.1 exact match and F1 (the official script's normalisation), for a QA model or a trivial baseline.

Reads a corpus written by ``python -m corpora fetch squad-v1-dev`` (questions against their paragraph) or
``squad-v1-articles-dev`` (against their whole Wikipedia article). Scores, as the official
``evaluate-v1.1.py``: lower case, punctuation removed, articles ``a/an/the`` removed, whitespace collapsed; EM and
token F1 each the best over the gold answers, averaged over questions, in percent.

Predictions come from a model folder through ``bigbird.pipeline("question-answering", ...)`` (``--model``), or
from a trivial baseline (``--baseline``) that reads no model:

* ``first-sentence``: the context's first sentence;
* ``overlap-sentence``: the sentence sharing the most (normalised) words with the question, the first on ties.

    python benchmarks/eval_squad.py --corpus data/squad-v1-dev --baseline overlap-sentence
    python benchmarks/eval_squad.py --corpus data/squad-v1-articles-dev --model models/squad-qa --max-length 4096
"""

from __future__ import annotations

import argparse
import json
import re
import string
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

_PUNCTUATION = set(string.punctuation)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token F1 of the normalised strings; 0 when they share no token (also when both are empty, as the
    official script)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], golds: dict[str, Sequence[str]]) -> dict[str, float | int]:
    """EM and F1 in percent over every question of ``golds`` (a missing prediction scores 0).

    Raises:
        ValueError: a question without gold answers (names it).
    """
    em = f1 = 0.0
    for qid, answers in golds.items():
        if not answers:
            raise ValueError(f"question {qid!r} has no gold answer")
        pred = predictions.get(qid, "")
        em += max(exact_match(pred, a) for a in answers)
        f1 += max(f1_score(pred, a) for a in answers)
    n = len(golds)
    return {"exact_match": 100.0 * em / n if n else 0.0, "f1": 100.0 * f1 / n if n else 0.0, "questions": n}


# ------------------------------------------------------------------------------------------------ baselines
def sentences(context: str) -> list[str]:
    """The context cut after ``.``/``!``/``?`` followed by a capital or digit, and at newlines."""
    return [s.strip() for s in _SENTENCE_END.split(context) if s.strip()]


def first_sentence(question: str, context: str) -> str:
    parts = sentences(context)
    return parts[0] if parts else ""


def overlap_sentence(question: str, context: str) -> str:
    words = set(normalize_answer(question).split())
    parts = sentences(context)
    if not parts:
        return ""
    overlaps = [len(words & set(normalize_answer(s).split())) for s in parts]
    return parts[overlaps.index(max(overlaps))]


BASELINES: dict[str, Callable[[str, str], str]] = {"first-sentence": first_sentence,
                                                   "overlap-sentence": overlap_sentence}


# ------------------------------------------------------------------------------------------------ running
def model_predictions(model: str, rows: Sequence[dict], *, max_length: int | None, batch_size: int = 8,
                      dtype: str | None = None) -> dict[str, str]:
    """The best answer of each row from a QA model folder through ``bigbird.pipeline``."""
    from bigbird import pipeline

    pipe = pipeline("question-answering", model, max_length=max_length, batch_size=batch_size, dtype=dtype)
    out: dict[str, str] = {}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        answers = pipe([{"question": r["question"], "context": r["text"]} for r in chunk])
        for r, a in zip(chunk, answers):
            out[r["id"]] = a["answer"] if a else ""
    return out


def evaluate(corpus: str, *, model: str | None = None, baseline: str | None = None,
             max_length: int | None = None, limit: int | None = None, dtype: str | None = None) -> dict:
    """Score a model or a baseline on a SQuAD corpus folder; returns the scores with what was run and the time.

    Raises:
        ValueError: neither or both of ``model`` and ``baseline``, or an unknown baseline.
    """
    from corpora.format import read_corpus

    if (model is None) == (baseline is None):
        raise ValueError("give exactly one of model and baseline")
    if baseline is not None and baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; known: {', '.join(BASELINES)}")
    rows = read_corpus(corpus).select(["id", "question", "text", "answers"]).to_pylist()[:limit]
    t0 = time.perf_counter()
    if model is not None:
        predictions = model_predictions(model, rows, max_length=max_length, dtype=dtype)
    else:
        predictions = {r["id"]: BASELINES[baseline](r["question"], r["text"]) for r in rows}
    seconds = time.perf_counter() - t0
    scores = squad_scores(predictions, {r["id"]: r["answers"] for r in rows})
    return {"corpus": corpus, "model": model, "baseline": baseline, "max_length": max_length, "dtype": dtype,
            "seconds": round(seconds, 1), **scores}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="SQuAD corpus folder (squad-v1-dev / squad-v1-articles-dev)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="question-answering model folder")
    what.add_argument("--baseline", choices=sorted(BASELINES))
    parser.add_argument("--max-length", type=int, default=None, help="tokens per window (default: the model's)")
    parser.add_argument("--dtype", default=None, help="load the weights as this dtype (float32: upcast a "
                        "float16 model, which has no fast CPU path)")
    parser.add_argument("--limit", type=int, default=None, help="score the first N questions only")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = evaluate(args.corpus, model=args.model, baseline=args.baseline, max_length=args.max_length,
                      limit=args.limit, dtype=args.dtype)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
