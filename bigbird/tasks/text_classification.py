"""Text classification of long documents: per-window logits pooled (token-weighted mean) per record."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch

from bigbird.heads import BigBirdForSequenceClassification
from bigbird.tasks.base import Encoded, TaskPipeline, sigmoid, softmax
from bigbird.tasks.spec import TaskSpec, param
from bigbird.windows import Window

Function = Literal["softmax", "sigmoid", "none"]
FUNCTIONS: tuple[str, ...] = typing.get_args(Function)
MULTI_LABEL_THRESHOLD = 0.5  # batch job: a label scoring at least this goes into the ``labels`` column


@dataclass
class TextClassificationParams:
    top_k: int | None = param(1, help="Labels per text; null for all. Leave it out for transformers' legacy "
                              "output (one dict per text)", ge=1,
                              cli="labels per input, printed as a list (default: the best label as one object)")
    function_to_apply: Function | None = param(
        None, help="Score function (default: sigmoid for multi-label and one-label models, else softmax)")


class TextClassificationPipeline(TaskPipeline):
    """``pipe(text)`` -> ``[{"label", "score"}]`` as in transformers; ``top_k=None`` gives every label.

    Multi-label models (``problem_type="multi_label_classification"``) and one-label models use a sigmoid.
    """

    task = "text-classification"
    model_class = BigBirdForSequenceClassification
    default_params = asdict(TextClassificationParams())

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        params = super().check_params(params)
        self.function(params.get("function_to_apply"))
        return params

    def extract(self, windows: Sequence[Window], inputs: dict[str, torch.Tensor], outputs: Any,
                **params: Any) -> list[dict[str, np.ndarray]]:
        logits = outputs.logits.float().cpu().numpy()
        return [{"logits": logits[i], "weight": np.float32(w.n_context)} for i, w in enumerate(windows)]

    def function(self, name: str | None) -> str:
        if name is None:
            multi = self.config.problem_type == "multi_label_classification"
            return "sigmoid" if multi or self.config.num_labels == 1 else "softmax"
        if name not in FUNCTIONS:
            raise ValueError(f"function_to_apply must be one of {FUNCTIONS}, got {name!r}")
        return name

    def merge(self, record: dict[str, Any], encoded: Encoded, windows: Sequence[Window],
              outputs: Sequence[dict[str, np.ndarray]], **params: Any) -> list[dict[str, Any]]:
        weights = np.array([o["weight"] for o in outputs], dtype=np.float64)
        logits = (np.stack([o["logits"] for o in outputs]) * weights[:, None]).sum(0) / weights.sum()
        fn = self.function(params.get("function_to_apply"))
        scores = softmax(logits) if fn == "softmax" else sigmoid(logits) if fn == "sigmoid" else logits
        order = np.argsort(-scores, kind="stable")
        top_k = params.get("top_k")
        if top_k is not None:
            order = order[:top_k]
        return [{"label": self.config.id2label[int(i)], "score": float(scores[i])} for i in order]

    def shape(self, results: list[Any], single: bool, params: dict[str, Any]) -> Any:
        results = super().shape(results, single, params)
        if "top_k" not in params:  # transformers' convention: one dict per input, a single input wrapped in a list
            results = [results] if single else results
            return [r[0] for r in results]
        return results


LABEL_SCORE = pa.struct([("label", pa.string()), ("score", pa.float64())])


def to_row(result: Any, params: Mapping[str, Any], offset: int | None = None) -> dict[str, Any]:
    """Best label, every label's score, and the labels over the multi-label threshold, as batch columns."""
    threshold = params.get("multi_label_threshold", MULTI_LABEL_THRESHOLD)
    return {"label": result[0]["label"], "score": result[0]["score"], "scores": result,
            "labels": [r["label"] for r in result if r["score"] >= threshold]}


SPEC = TaskSpec(
    name="text-classification", summary="classify whole (long) documents",
    model_class=BigBirdForSequenceClassification, pipeline_class=TextClassificationPipeline,
    params=TextClassificationParams, aliases=("sentiment-analysis", "sequence-classification"),
    columns=(("label", pa.string()), ("score", pa.float64()), ("labels", pa.list_(pa.string())),
             ("scores", pa.list_(LABEL_SCORE))),
    to_row=to_row, batch_params={"top_k": None, "multi_label_threshold": MULTI_LABEL_THRESHOLD}, examples="""\
examples:
  bigbird text-classification --model ./bigbird-imdb < review.txt
  bigbird text-classification --model ./bigbird-imdb --lines --file reviews.txt --top-k 2 > labels.jsonl""")
