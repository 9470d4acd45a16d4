"""One-line task pipelines with transformers' conventions, for inputs of any length."""

from __future__ import annotations

import os
from typing import Any

import torch

from bigbird.tasks import fill_mask, question_answering, text_classification, token_classification
from bigbird.tasks.base import Prepared, TaskPipeline
from bigbird.tasks.spec import DEFAULT_STRIDE, TaskSpec, result_columns

# The registry: every task, once. Everything else (service, command line, batch schema, training) reads it.
SPECS: dict[str, TaskSpec] = {s.name: s for s in (fill_mask.SPEC, question_answering.SPEC, text_classification.SPEC,
                                                  token_classification.SPEC)}
ALIASES: dict[str, str] = {alias: s.name for s in SPECS.values() for alias in s.names if alias != s.name}
TASKS: dict[str, type[TaskPipeline]] = {name: s.pipeline_class for name, s in SPECS.items()}  # derived
RESULT_COLUMNS = result_columns(SPECS)  # every column name a batch result can have
for _spec in SPECS.values():
    _spec.pipeline_class.spec = _spec

__all__ = ["ALIASES", "DEFAULT_STRIDE", "RESULT_COLUMNS", "SPECS", "TASKS", "Prepared", "TaskPipeline", "TaskSpec",
           "get_spec", "pipeline", "task_class"]


def get_spec(task: str) -> TaskSpec:
    """The spec of a task name, its training name or an alias.

    Raises:
        ValueError: For an unknown task, listing the known names.
    """
    name = ALIASES.get(task, task)
    if name not in SPECS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(SPECS) + sorted(ALIASES)}")
    return SPECS[name]


def task_class(task: str) -> type[TaskPipeline]:
    """The pipeline class of a task name (aliases accepted); ``get_spec(task).pipeline_class``.

    Raises:
        ValueError: For an unknown task, listing the known ones.
    """
    return get_spec(task).pipeline_class


def pipeline(task: str, model: str | os.PathLike | torch.nn.Module, tokenizer: Any = None, *,
             device: int | str | torch.device | None = None, batch_size: int = 8, max_length: int | None = None,
             stride: int = DEFAULT_STRIDE, max_tokens: int | None = None, dtype: torch.dtype | str | None = None,
             **load_kwargs: Any) -> TaskPipeline:
    """Build a task pipeline, like ``transformers.pipeline``.

    Args:
        task: ``fill-mask``, ``question-answering``, ``text-classification`` or ``token-classification``.
        model: A folder or hub id (loaded with the task's model class), or a loaded model.
        tokenizer: A tokenizer, a folder or hub id; default: the model's folder.
        device: ``None``/``-1``/``"cpu"``, a CUDA index or a ``torch.device``.
        batch_size: Windows per forward pass.
        max_length: Tokens per window (default: ``max_position_embeddings``).
        stride: Overlap between the windows of a long input.
        max_tokens: Optional cap on tokens per forward pass (windows x padded length).
        dtype: Weight dtype when loading (e.g. ``torch.bfloat16``).
        **load_kwargs: Passed to ``from_pretrained`` (``revision``, ``local_files_only``, ...).

    Raises:
        ValueError: For an unknown task or a model without a tokenizer.
    """
    from bigbird.tokenization import BigBirdTokenizer

    cls = task_class(task)
    if isinstance(model, (str, os.PathLike)):
        source = model
        model = cls.model_class.from_pretrained(model, dtype=dtype, **load_kwargs)
        if tokenizer is None:
            tokenizer = source
    if tokenizer is None:
        raise ValueError("pass tokenizer= when model is an already loaded model")
    if isinstance(tokenizer, (str, os.PathLike)):
        hub = {k: v for k, v in load_kwargs.items() if k in ("revision", "cache_dir", "local_files_only")}
        tokenizer = BigBirdTokenizer.from_pretrained(tokenizer, **hub)
    return cls(model, tokenizer, device=device, batch_size=batch_size, max_length=max_length, stride=stride,
               max_tokens=max_tokens)
