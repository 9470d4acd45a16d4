"""One-line task pipelines with transformers' conventions, for inputs of any length."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import torch

from bigbird.tasks import fill_mask, question_answering, text_classification, token_classification
from bigbird.tasks.base import Prepared, TaskPipeline
from bigbird.tasks.loading import load
from bigbird.tasks.spec import DEFAULT_STRIDE, TaskSpec, result_columns

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from bigbird.model_store import StorageOptions

# The registry: every task, once. Everything else (service, command line, batch schema, training) reads it.
SPECS: dict[str, TaskSpec] = {s.name: s for s in (fill_mask.SPEC, question_answering.SPEC, text_classification.SPEC,
                                                  token_classification.SPEC)}
ALIASES: dict[str, str] = {alias: s.name for s in SPECS.values() for alias in s.names if alias != s.name}
TASKS: dict[str, type[TaskPipeline]] = {name: s.pipeline_class for name, s in SPECS.items()}  # derived
RESULT_COLUMNS = result_columns(SPECS)  # every column name a batch result can have
for _spec in SPECS.values():
    _spec.pipeline_class.spec = _spec

__all__ = ["ALIASES", "DEFAULT_STRIDE", "RESULT_COLUMNS", "SPECS", "TASKS", "Prepared", "TaskPipeline", "TaskSpec",
           "get_spec", "load", "pipeline", "task_class"]


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
             quantize: Literal["int8"] | None = None, revision: str | None = None,
             storage: StorageOptions | pafs.FileSystem | None = None, **load_kwargs: Any) -> TaskPipeline:
    """Build a task pipeline, like ``transformers.pipeline``: :func:`bigbird.tasks.loading.load` with
    transformers' default device (the CPU unless ``device`` says otherwise).

    Args:
        task: ``fill-mask``, ``question-answering``, ``text-classification`` or ``token-classification``.
        model: A folder, a hub id, an ``s3://`` / ``gs://`` folder (cached locally once per node), or a loaded
            model.
        tokenizer: A tokenizer, a folder or hub id; default: the model's folder.
        device: ``None``/``-1``/``"cpu"``, ``"auto"``, ``"cuda[:N]"``, a CUDA index or a ``torch.device``.
        batch_size: Windows per forward pass.
        max_length: Tokens per window (default: ``max_position_embeddings``).
        stride: Overlap between the windows of a long input.
        max_tokens: Optional cap on tokens per forward pass (windows x padded length).
        dtype: Weight dtype (``"bfloat16"``, ``torch.bfloat16``; ``float16`` on CUDA only).
        quantize: ``"int8"``: dynamic int8 linear layers (CPU).
        revision: Hub revision of the model and tokenizer.
        storage: Object-storage options (:class:`bigbird.model_store.StorageOptions`) or a pyarrow filesystem.
        **load_kwargs: Passed to :func:`~bigbird.tasks.loading.load` and ``from_pretrained``
            (``local_files_only``, ``cache_dir``, ``threads``, ...).

    Raises:
        ValueError: For an unknown task, device or precision, or a model without a tokenizer.
    """
    return load(task, model, tokenizer=tokenizer, device=device, dtype=dtype, quantize=quantize, revision=revision,
                storage=storage, batch_size=batch_size, max_length=max_length, stride=stride, max_tokens=max_tokens,
                **load_kwargs)

