"""Entity-level F1 (seqeval-style: exact span and type, IOB2) of a token-classification model on CoNLL-2003.

The model tags every row of a corpus written by ``python -m corpora fetch conll2003[-docs]-{split}`` (sentence
or whole-document rows) through ``bigbird.pipeline`` (words labelled by their first token,
``aggregation_strategy="first"``); its entities become IOB2 tags of the whitespace-separated words, and those are
scored against the gold tags with the CoNLL / seqeval definition: an entity counts only when its first word,
last word and type all match.

    python benchmarks/eval_conll.py --model models/conll-ner --corpus data/conll2003-docs-test \
        [--max-length 4096] [--out benchmarks/results/conll_ner.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from corpora.conll import iob2_chunks, word_tags


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float | int]:
    """Micro precision / recall / F1 over entities of IOB2 tag sequences, plus per-type F1.

    Args:
        gold: per sentence (or document), the gold tag of each word.
        pred: the predicted tags, aligned with ``gold``.

    Returns:
        ``precision``, ``recall``, ``f1`` (in [0, 1]), ``gold``/``predicted``/``correct`` entity counts and
        ``f1_{TYPE}`` for every type in either side.

    Raises:
        ValueError: sequences of different counts or lengths (names the first one).
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted")
    gold_set: set[tuple[int, int, int, str]] = set()
    pred_set: set[tuple[int, int, int, str]] = set()
    for k, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sequence {k}: {len(g)} gold tags but {len(p)} predicted")
        gold_set.update((k, *c) for c in iob2_chunks(g))
        pred_set.update((k, *c) for c in iob2_chunks(p))
    out: dict[str, float | int] = _prf(gold_set, pred_set)
    for kind in sorted({c[3] for c in gold_set | pred_set}):
        out[f"f1_{kind}"] = _prf({c for c in gold_set if c[3] == kind}, {c for c in pred_set if c[3] == kind})["f1"]
    return out


def _prf(gold: set, pred: set) -> dict[str, float | int]:
    correct = len(gold & pred)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "gold": len(gold), "predicted": len(pred),
            "correct": correct}


def predicted_tags(pipe, texts: Sequence[str], *, batch_size: int = 8) -> list[list[str]]:
    """IOB2 word tags of each text from a token-classification pipeline's entities."""
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        for text, entities in zip(chunk, pipe(chunk, aggregation_strategy="first")):
            spans = [{"start": e["start"], "end": e["end"], "label": e["entity_group"]} for e in entities]
            out.append(word_tags(text, spans))
    return out


def evaluate(model: str, corpus: str, *, max_length: int | None, limit: int | None,
             dtype: str | None = None) -> dict:
    """Tag the corpus with the model and score it (see :func:`entity_scores`), with timing."""
    from bigbird import pipeline
    from corpora.format import read_corpus

    table = read_corpus(corpus)
    rows = table.to_pylist()[:limit]
    pipe = pipeline("token-classification", model, max_length=max_length, dtype=dtype)
    t0 = time.perf_counter()
    pred = predicted_tags(pipe, [r["text"] for r in rows])
    seconds = time.perf_counter() - t0
    gold = [word_tags(r["text"], r["spans"] or []) for r in rows]
    scores = entity_scores(gold, pred)
    return {"model": model, "corpus": corpus, "rows": len(rows), "max_length": max_length, "dtype": dtype,
            "seconds": round(seconds, 1), **scores}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="token-classification model folder")
    parser.add_argument("--corpus", required=True, help="CoNLL-2003 corpus folder (python -m corpora fetch ...)")
    parser.add_argument("--max-length", type=int, default=None, help="tokens per window (default: the model's)")
    parser.add_argument("--dtype", default=None, help="load the weights as this dtype (float32: upcast a "
                        "float16 model, which has no fast CPU path)")
    parser.add_argument("--limit", type=int, default=None, help="score the first N rows only")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = evaluate(args.model, args.corpus, max_length=args.max_length, limit=args.limit, dtype=args.dtype)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
