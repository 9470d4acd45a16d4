"""Settings of a batch scoring job: a pydantic model, from the command line or YAML."""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bigbird import settings_io
from bigbird.tasks import RESULT_COLUMNS, SPECS
from bigbird.tasks.loading import resolve_precision
from bigbird.tasks.spec import DEFAULT_STRIDE
from bigbird.tasks.token_classification import Strategy
from jobs.settings import StorageSettings

# The tasks the batch job runs: those whose TaskSpec has batch result columns.
BATCH_TASKS = tuple(sorted(name for name, spec in SPECS.items() if spec.columns is not None))
# Settings passed to the task as parameters (pipelines.stages.batch_params); None means the task's default.
TASK_PARAMS = ("top_k", "multi_label_threshold", "max_answer_len", "aggregation_strategy")


class BatchSettings(BaseModel):
    """Everything a ``bigbird batch`` job needs; validated before any work starts."""

    model_config = ConfigDict(extra="forbid")

    task: Literal[BATCH_TASKS]  # type: ignore[valid-type]
    model: str = Field(description="model folder or hub id")
    input: str = Field(description="parquet file or folder (any filesystem pyarrow reads)")
    output: str = Field(description="output folder for parquet")
    id_column: str = "id"
    text_column: str = "text"
    question_column: str | None = None
    question: str | None = None
    offset_column: str | None = Field(None, description="genome coordinate of each record's first base")
    keep_columns: list[str] = Field(default_factory=list,
                                    description="input columns copied to the output: NAME or NAME=NEW_NAME")
    max_length: int | None = Field(None, ge=8)
    stride: int = Field(DEFAULT_STRIDE, ge=0)
    batch_size: int = Field(8, ge=1, description="windows per forward pass")
    max_tokens: int | None = Field(None, ge=1, description="cap on windows x padded length per forward pass")
    block_records: int = Field(256, ge=1, description="records per block at most (one result file per block)")
    block_bytes: int = Field(2_000_000, ge=1, description="text bytes per block at most (estimated from the "
                             "parquet footers): a block's windows are scored together and written as they finish")
    progress_seconds: float = Field(5.0, gt=0, description="seconds between progress lines")
    actors: int | None = Field(None, ge=1, description="model actors (default: one per GPU, else 1)")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per actor (default: 1 if GPUs exist)")
    threads: int | None = Field(None, ge=1, description="torch threads per CPU actor")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$",
                        description="where the model actors score: auto (CUDA if the actor sees one), cpu, cuda[:N]")
    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="weight dtype (default: the checkpoint's; float16 on CUDA only)")
    quantize: Literal["int8"] | None = Field(None, description="int8: dynamic int8 linear layers (CPU actors)")
    revision: str | None = Field(None, description="hub revision of the model")
    address: str | None = None
    storage: StorageSettings = Field(default_factory=StorageSettings,
                                     description="object-storage options for s3:// and gs:// input and output")
    resume: bool = True
    # Task parameters (TASK_PARAMS): None (unset) is the task's own batch default, read from its TaskSpec.
    top_k: int | None = Field(None, ge=1, description="answers per question (question-answering)")
    multi_label_threshold: float | None = Field(None, ge=0.0, le=1.0,
                                                description="score a label needs (text-classification)")
    aggregation_strategy: Strategy | None = Field(None, description="token-classification")
    max_answer_len: int | None = Field(None, ge=1, description="tokens per answer (question-answering)")
    limit: int | None = Field(None, ge=1, description="score only the first N records (smoke runs)")
    verbose: bool = Field(False, description="Ray Data's progress bars and Ray's log lines too")

    @model_validator(mode="after")
    def _check(self) -> BatchSettings:
        if self.max_length is not None and self.stride >= self.max_length:
            raise ValueError(f"stride {self.stride} must be smaller than max_length {self.max_length}")
        if self.device != "auto":  # the loader's rule, checked before any work (auto is settled on the actor)
            resolve_precision(self.dtype, self.quantize, torch.device(self.device))
        elif self.quantize is not None:
            resolve_precision(self.dtype, self.quantize, torch.device("cpu"))
        clash = sorted({dst for _, dst in self.kept} & RESULT_COLUMNS)
        if clash:
            raise ValueError(f"keep_columns {clash} clash with result columns; rename them, e.g. label=label_true")
        if self.task == "question-answering":
            if (self.question is None) == (self.question_column is None):
                raise ValueError("question-answering needs exactly one of question_column and question")
        elif self.question is not None or self.question_column is not None:
            raise ValueError(f"{self.task} takes no question")
        return self

    @property
    def kept(self) -> list[tuple[str, str]]:
        """``(input column, output column)`` of each kept column."""
        pairs = []
        for spec in self.keep_columns:
            src, _, dst = spec.partition("=")
            pairs.append((src, dst or src))
        return pairs

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> BatchSettings:
        """Settings from a YAML mapping (:func:`bigbird.settings_io.read_yaml`), with command-line overrides
        (those not None) on top.

        Raises:
            FileNotFoundError: If the file does not exist.
            ValueError: For a file that is not a YAML mapping; ``ValidationError`` for invalid settings.
        """
        data = settings_io.read_yaml(path, what="batch settings file")
        merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
        if isinstance(data.get("storage"), dict) and isinstance(overrides.get("storage"), dict):
            merged["storage"] = {**data["storage"], **overrides["storage"]}  # flags override single fields
        return cls(**merged)
