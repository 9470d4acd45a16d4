"""Extractive question answering over long contexts: the best span across all windows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from bigbird.heads import BigBirdForQuestionAnswering
from bigbird.tasks.base import Encoded, TaskPipeline, softmax
from bigbird.tasks.spec import TaskSpec, param
from bigbird.windows import Window


@dataclass
class QuestionAnsweringParams:
    top_k: int = param(1, help="Answers per question", ge=1, le=100,
                       cli="answers per context (default 1; more prints a list)")
    max_answer_len: int = param(15, help="Most tokens in an answer", ge=1, le=10000,
                                cli="longest answer in tokens (default 15)")
    handle_impossible_answer: bool = param(False, help="Allow the empty answer")


def best_spans(start: np.ndarray, end: np.ndarray, allowed: np.ndarray, top_k: int,
               max_answer_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top spans ``start <= end < start + max_answer_len`` by ``p_start * p_end`` over allowed positions
    (transformers' ``decode_spans``)."""
    outer = np.triu(np.tril(start[:, None] * end[None, :], max_answer_len - 1))
    outer = np.where(allowed[:, None] & allowed[None, :], outer, -1.0)
    flat = outer.ravel()
    k = min(top_k, int((flat > 0).sum()))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    idx = np.argpartition(-flat, k - 1)[:k]
    idx = idx[np.argsort(-flat[idx], kind="stable")]
    s, e = np.unravel_index(idx, outer.shape)
    return s.astype(np.int64), e.astype(np.int64), flat[idx]


class QuestionAnsweringPipeline(TaskPipeline):
    """``pipe(question=..., context=...)`` or ``pipe({"question": ..., "context": ...})`` ->
    ``{"score", "start", "end", "answer"}`` (character offsets into the context), as in transformers."""

    task = "question-answering"
    model_class = BigBirdForQuestionAnswering
    default_params = asdict(QuestionAnsweringParams())

    def records(self, inputs: Any, **params: Any) -> tuple[list[dict[str, Any]], bool]:
        single = isinstance(inputs, dict)
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items:
            raise TypeError(f"question-answering expects {{'question': ..., 'context': ...}} or a list of them, "
                            f"got {type(inputs).__name__}")
        records = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "question" not in item or "context" not in item:
                raise ValueError(f"input {i} must be a dict with 'question' and 'context', got {item!r:.80}")
            records.append({"text": item["context"], "question": item["question"]})
        return records, single

    def __call__(self, inputs: Any = None, *, question: Any = None, context: Any = None, **params: Any) -> Any:
        if inputs is None:
            if question is None or context is None:
                raise ValueError("pass question= and context=, or a dict with both")
            if isinstance(question, list):
                inputs = [{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
            else:
                inputs = {"question": question, "context": context}
        return super().__call__(inputs, **params)

    def extract(self, windows: Sequence[Window], inputs: dict[str, torch.Tensor], outputs: Any,
                **params: Any) -> list[dict[str, np.ndarray]]:
        start_logits = outputs.start_logits.float().cpu().numpy()
        end_logits = outputs.end_logits.float().cpu().numpy()
        top_k, max_len = int(params["top_k"]), int(params["max_answer_len"])
        out = []
        for i, w in enumerate(windows):
            n = len(w.input_ids)
            allowed = np.zeros(n, dtype=bool)
            allowed[w.context_start : n - 1] = True  # context tokens only
            keep = allowed.copy()
            keep[0] = True  # [CLS] stays in the softmax (the no-answer score), as in transformers
            start = softmax(np.where(keep, start_logits[i, :n], -10000.0))
            end = softmax(np.where(keep, end_logits[i, :n], -10000.0))
            null = float(start[0] * end[0])
            start[0] = end[0] = 0.0
            s, e, scores = best_spans(start, end, allowed, top_k, max_len)
            shift = w.token_start - w.context_start  # window position -> record token index
            out.append({"starts": s + shift, "ends": e + shift, "scores": scores.astype(np.float64),
                        "null": np.float64(null)})
        return out

    def merge(self, record: dict[str, Any], encoded: Encoded, windows: Sequence[Window],
              outputs: Sequence[dict[str, np.ndarray]], **params: Any) -> Any:
        context, offsets = record["text"], encoded.offsets
        best: dict[tuple[int, int], float] = {}
        for o in outputs:
            for s, e, score in zip(o["starts"], o["ends"], o["scores"]):
                span = (int(offsets[s, 0]), int(offsets[e, 1]))
                best[span] = max(score, best.get(span, 0.0))
        answers = [{"score": float(score), "start": s, "end": e, "answer": context[s:e]}
                   for (s, e), score in best.items()]
        if params.get("handle_impossible_answer"):
            answers.append({"score": float(min(o["null"] for o in outputs)), "start": 0, "end": 0, "answer": ""})
        answers.sort(key=lambda a: -a["score"])
        answers = answers[: int(params["top_k"])]
        if not answers:
            answers = [{"score": 0.0, "start": 0, "end": 0, "answer": ""}]
        return answers[0] if int(params["top_k"]) == 1 else answers


def to_row(result: Any, params: Mapping[str, Any], offset: int | None = None) -> dict[str, Any]:
    """The best answer of a record as batch columns."""
    best = result[0] if isinstance(result, list) else result
    return {k: best[k] for k in ("answer", "score", "start", "end")}


SPEC = TaskSpec(
    name="question-answering", summary="extract the answer to a question from a (long) context",
    model_class=BigBirdForQuestionAnswering, pipeline_class=QuestionAnsweringPipeline,
    params=QuestionAnsweringParams, aliases=("qa",),
    columns=(("answer", pa.string()), ("score", pa.float64()), ("start", pa.int64()), ("end", pa.int64())),
    to_row=to_row, examples="""\
examples:
  bigbird question-answering --model ./bigbird-qa --question "Who wrote it?" --context-file book.txt
  cat book.txt | bigbird question-answering --model ./bigbird-qa --question "Who wrote it?" --top-k 3
  bigbird question-answering --model ./bigbird-qa --question "When?" --context "It rained on Monday." """)
