"""Text classification of long documents: per-window logits pooled (token-weighted mean) per record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bigbird.heads import BigBirdForSequenceClassification
from bigbird.tasks.base import Encoded, TaskPipeline, sigmoid, softmax
from bigbird.windows import Window

FUNCTIONS = ("softmax", "sigmoid", "none")


class TextClassificationPipeline(TaskPipeline):
    """``pipe(text)`` -> ``[{"label", "score"}]`` as in transformers; ``top_k=None`` gives every label.

    Multi-label models (``problem_type="multi_label_classification"``) and one-label models use a sigmoid.
    """

    task = "text-classification"
    model_class = BigBirdForSequenceClassification
    default_params = {"top_k": 1, "function_to_apply": None}

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
