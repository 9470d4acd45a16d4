"""Job settings: YAML (plus ``key=value`` overrides) -> validated pydantic models.

A job file has seven sections; every field has a default except ``task``, ``model`` and ``data.train``::

    task: text-classification          # question-answering | text-classification | token-classification | masked-lm
    model: {from_scratch: {...}, tokenizer: dna}   # or {from_pretrained: FOLDER_OR_HUB_ID}
    data: {train: data/rrna16s, eval_fraction: 0.1, max_length: 1600, stride: 128}
    train: {batch_size: 8, lr: 1e-3, epochs: 3}
    scaling: {num_workers: 2, use_gpu: auto}
    run: {name: rrna16s-phylum, storage_path: outputs/runs}
    storage: {endpoint: http://minio.internal:9000, region: us-east-1, anonymous: false}   # object storage

Paths may be local, absolute or URIs (``s3://``, ``gs://``, ``file://``); :func:`bigbird.paths.resolve_path` is
the rule for relative ones (``ray job submit`` refuses those it cannot honour).

Pure validation lives in the models; :func:`check_sources` does the I/O checks (files exist, columns are there).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bigbird import settings_io
from bigbird.hub import is_local
from bigbird.paths import is_uri
from bigbird.tasks import SPECS
from bigbird.tokenization.kmer import MAX_K

# Training task names (``masked-lm`` for fill-mask), their aliases and inference pipeline (bigbird.tasks) names:
# all from the task registry.
TASKS = tuple(spec.train_name for spec in SPECS.values())
TASK_ALIASES = {name: spec.train_name for spec in SPECS.values() for name in spec.names if name != spec.train_name}
PIPELINE_TASK = {spec.train_name: spec.name for spec in SPECS.values()}
# Default model-selection metric and its direction, per task.
DEFAULT_METRIC = {"question-answering": ("eval_f1", "max"), "text-classification": ("eval_accuracy", "max"),
                  "token-classification": ("eval_f1", "max"), "masked-lm": ("eval_loss", "min")}
# model.tokenizer: dna-k3 -> KmerDNATokenizer(k=3), for the k the tokenizer supports.
KMER_TOKENIZER = re.compile(rf"dna-k([2-{MAX_K}])")
# BigBirdConfig fields the job fills in itself (from the tokenizer and the training labels).
DERIVED_CONFIG_FIELDS = ("vocab_size", "pad_token_id", "sep_token_id", "id2label", "label2id", "num_labels")
# Columns each task reads (by their role; data.columns maps roles to parquet column names).
REQUIRED_COLUMNS = {"question-answering": ("id", "text", "question", "answers"),
                    "text-classification": ("id", "text", "label"),
                    "token-classification": ("id", "text", "spans"),
                    "masked-lm": ("id", "text")}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class UnigramSettings(_Section):
    """A SentencePiece-style Unigram vocabulary learnt from the training split (``model.tokenizer: unigram``)."""

    vocab_size: int = Field(8000, ge=16, description="pieces, the 7 special tokens included")
    max_piece_length: int = Field(16, ge=1, description="longest piece, in characters")
    add_prefix_space: bool = Field(True, description="false for DNA: sequences have no words")
    sample: int = Field(2000, ge=1, description="learn from this many training records, spread over the split")


class ModelSettings(_Section):
    """Where the weights start: a saved model (folder or hub id) or a new BigBird from a config dict."""

    from_pretrained: str | None = Field(None, description="folder or hub id of a saved BigBird")
    from_scratch: dict[str, Any] | None = Field(None, description="BigBirdConfig fields of a new model")
    tokenizer: str | None = Field(None, description="'dna' (one token per base), 'dna-kK' (one token per base: "
                                                    "the K-mer starting there, K 2-6), 'unigram' (learnt from the "
                                                    "train split, see model.unigram), or a folder / hub id; "
                                                    "default: from_pretrained")
    unigram: UnigramSettings = Field(default_factory=lambda: UnigramSettings())
    config_overrides: dict[str, Any] = Field(default_factory=dict,
                                             description="BigBirdConfig fields to change on a pretrained model")
    gradient_checkpointing: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        if (self.from_pretrained is None) == (self.from_scratch is None):
            raise ValueError("set exactly one of model.from_pretrained (a folder or hub id) and "
                             "model.from_scratch (a BigBirdConfig dict)")
        if self.from_scratch is not None:
            if self.tokenizer is None:
                raise ValueError("model.from_scratch needs model.tokenizer ('dna', 'dna-k3', 'unigram' or a folder)")
            _check_config_fields(self.from_scratch, "model.from_scratch")
        if self.config_overrides:
            if self.from_scratch is not None:
                raise ValueError("model.config_overrides applies to from_pretrained; put the fields in "
                                 "model.from_scratch instead")
            _check_config_fields(self.config_overrides, "model.config_overrides")
        return self


def _check_config_fields(fields: dict[str, Any], where: str) -> None:
    from bigbird import BigBirdConfig

    known = set(BigBirdConfig().to_dict())
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{where}: unknown BigBirdConfig fields {unknown}")
    derived = sorted(set(fields) & set(DERIVED_CONFIG_FIELDS))
    if derived:
        raise ValueError(f"{where}: {derived} are set by the job from the tokenizer and the training labels; "
                         "remove them")
    BigBirdConfig(**fields).validate()  # raises ValueError naming the bad value (also between fields)


class ColumnSettings(_Section):
    """Parquet column name of each role (the corpus contract of ``corpora`` by default)."""

    id: str = "id"
    text: str = "text"
    question: str = "question"
    answers: str = "answers"
    answer_start: str = "answer_start"
    label: str = "label"
    spans: str = "spans"


class DataSettings(_Section):
    """Inputs, splits and windowing."""

    train: str = Field(description="parquet file, folder or URI of the training records")
    eval: str | None = Field(None, description="parquet of the held-out records")
    eval_fraction: float | None = Field(None, gt=0.0, lt=1.0,
                                        description="hold out this fraction of train (by a hash of the id)")
    split_seed: int = 0
    columns: ColumnSettings = Field(default_factory=ColumnSettings)
    limit: int | None = Field(None, ge=1, description="use at most this many train records (and eval records)")
    max_length: int = Field(512, ge=16, description="tokens per window, special tokens included")
    stride: int = Field(128, ge=0, description="tokens shared by consecutive windows of a long record")
    max_chars: int | None = Field(None, ge=1, description="cut every text to its first N characters (bases), "
                                                      "in training and evaluation: a truncation baseline")
    first_window_only: bool = Field(False, description="keep only the first window of each record "
                                                       "(training and evaluation): a truncation baseline")
    streaming: bool = Field(False, description="stream each worker's split of the windows (iter_torch_batches) "
                                               "instead of the in-memory deterministic plan")
    shuffle_buffer: int = Field(256, ge=0, description="streaming: local shuffle buffer in windows (0: off)")
    multi_label: bool = False
    label_separator: str | None = Field(None, description="split string labels on this (multi-label)")
    span_labels: list[str] | None = Field(None, description="span labels to tag (default: all in train)")
    tagging_scheme: Literal["BIO", "IO"] = "BIO"
    tag_period: int | None = Field(None, ge=2, description="BIO: a B tag also every N tokens inside a span "
                                                           "(3: one B per codon of a coding sequence)")
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0)
    qa_max_answer_tokens: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _check(self) -> DataSettings:
        if self.stride >= self.max_length:
            raise ValueError(f"data.stride {self.stride} must be smaller than data.max_length {self.max_length}")
        if self.eval is not None and self.eval_fraction is not None:
            raise ValueError("set data.eval (a held-out parquet) or data.eval_fraction (a split of train), "
                             "not both")
        if self.label_separator is not None and not self.multi_label:
            raise ValueError("data.label_separator needs data.multi_label: true")
        if self.tag_period is not None and self.tagging_scheme != "BIO":
            raise ValueError(f"data.tag_period {self.tag_period} needs data.tagging_scheme: BIO, "
                             f"got {self.tagging_scheme!r}")
        if self.span_labels is not None and not self.span_labels:
            raise ValueError("data.span_labels must name at least one label (or be left out)")
        return self


class TrainSettings(_Section):
    """Optimisation, evaluation and checkpoint cadence."""

    batch_size: int = Field(8, ge=1, description="windows per worker per micro-step")
    grad_accumulation: int = Field(1, ge=1, description="micro-steps per optimizer step")
    lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    warmup_steps: int | None = Field(None, ge=0, description="overrides warmup_ratio")
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="clip gradients to this norm (null: off)")
    bf16: bool | Literal["auto"] = Field("auto", description="bf16 autocast; auto: on GPUs that support it")
    seed: int = 0
    log_every: int = Field(10, ge=1, description="print progress every N steps")
    eval_every_epochs: int = Field(1, ge=1)
    checkpoint_every_steps: int | None = Field(None, ge=1, description="extra checkpoints within an epoch")
    metric: str | None = Field(None, description="model-selection metric (default per task)")
    metric_mode: Literal["max", "min"] | None = None
    fail_at_step: int | None = Field(None, ge=1, description="testing only: worker fail_rank fails once "
                                                             "before this step")
    fail_rank: int = Field(1, ge=0)
    fail_mode: Literal["raise", "kill"] = Field("raise", description="testing only: raise an exception, or kill "
                                                                     "the worker process (SIGKILL)")


class ScalingSettings(_Section):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool | Literal["auto"] = Field("auto", description="auto: when the cluster has a GPU per worker")
    cpus_per_worker: float = Field(1.0, gt=0.0)


class RunSettings(_Section):
    name: str = Field("bigbird-job", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    storage_path: str = Field("outputs/runs", description="run folders and checkpoints (folder or URI)")
    export_dir: str | None = Field(None, description="final model folder (default: outputs/models/NAME)")
    export: Literal["best", "last"] = Field("best", description="export the best or the last checkpoint")
    max_failures: int = Field(2, ge=-1, description="worker-group restarts from the last checkpoint")
    num_to_keep: int | None = Field(2, ge=1)


class StorageSettings(_Section):
    """Object-storage options for ``s3://`` and ``gs://`` paths; the workers get them through the filesystem
    object and the job's runtime env (``AWS_ENDPOINT_URL``, ``AWS_REGION``)."""

    endpoint: str | None = Field(None, description="S3-compatible or GCS endpoint, e.g. http://minio:9000 "
                                                   "(default: the provider's)")
    region: str | None = Field(None, description="bucket region, e.g. eu-west-3 (S3)")
    anonymous: bool = Field(False, description="no credentials: public buckets")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?://)?[A-Za-z0-9.\[\]:_-]+(:[0-9]+)?/?$", value):
            raise ValueError(f"storage.endpoint {value!r} must look like http://host:port or host:port")
        return value


class JobSettings(_Section):
    """A whole job; see the module docstring for the YAML layout."""

    task: str
    model: ModelSettings
    data: DataSettings
    train: TrainSettings = Field(default_factory=TrainSettings)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, value: Any) -> str:
        name = TASK_ALIASES.get(value, value) if isinstance(value, str) else value
        if name not in TASKS:
            raise ValueError(f"unknown task {value!r}; choose one of {list(TASKS)} (aliases: {sorted(TASK_ALIASES)})")
        return name

    @model_validator(mode="after")
    def _check(self) -> JobSettings:
        d, m = self.data, self.model
        if d.multi_label and self.task != "text-classification":
            raise ValueError("data.multi_label applies to text-classification only")
        if m.from_scratch is not None:
            limit = m.from_scratch.get("max_position_embeddings", 4096)
            if d.max_length > limit:
                raise ValueError(f"data.max_length {d.max_length} exceeds model.from_scratch."
                                 f"max_position_embeddings {limit}")
        if self.train.fail_at_step is not None and self.train.fail_rank >= self.scaling.num_workers:
            raise ValueError(f"train.fail_rank {self.train.fail_rank} must be below scaling.num_workers "
                             f"{self.scaling.num_workers}")
        metric = self.train.metric
        if metric is not None and not metric.startswith(("eval_", "train_")):
            raise ValueError(f"train.metric {metric!r} must be a reported metric such as "
                             f"{DEFAULT_METRIC[self.task][0]!r}")
        return self

    @property
    def metric(self) -> tuple[str, str]:
        """(name, 'max' | 'min') of the model-selection metric."""
        name, mode = DEFAULT_METRIC[self.task]
        if self.train.metric is not None:
            name = self.train.metric
            mode = "min" if "loss" in name or "perplexity" in name else "max"
        return name, self.train.metric_mode or mode

    @property
    def has_eval(self) -> bool:
        return self.data.eval is not None or self.data.eval_fraction is not None

    def export_path(self) -> str:
        return self.run.export_dir or str(Path("outputs") / "models" / self.run.name)


# --------------------------------------------------------------------------------------------- loading
def load_settings(path: str | Path | None = None, overrides: list[str] | None = None,
                  data: dict[str, Any] | None = None) -> JobSettings:
    """Read a YAML job file (or take ``data``), apply ``section.key=value`` overrides and validate
    (:func:`bigbird.settings_io.load_settings`, the loader every shell uses).

    Raises:
        FileNotFoundError: If the YAML file does not exist.
        ValueError: If the YAML is malformed or a setting is invalid (one line naming each bad field).
    """
    return settings_io.load_settings(JobSettings, path, overrides or [], data=data, what="job file",
                                     holds="sections")


# ------------------------------------------------------------------------------------------ I/O checks
def parquet_columns(path: str, storage: StorageSettings | None = None) -> list[str]:
    """Column names of a parquet file / folder / URI (opened with the ``storage`` options).

    Raises:
        FileNotFoundError: If a local path does not exist.
        ValueError: If it holds no readable parquet.
    """
    import pyarrow.dataset as pads

    from jobs.storage import filesystem

    if not is_uri(path) and not Path(path).exists():
        raise FileNotFoundError(f"no such parquet file or folder: {path!r}")
    try:
        fs, inner = filesystem(path, storage or StorageSettings())
        dataset = pads.dataset(inner, filesystem=fs, format="parquet")
        if not is_uri(path) and not dataset.files:
            raise ValueError("no parquet files")
        return dataset.schema.names
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read parquet at {path!r}: {e}") from None


def required_columns(settings: JobSettings) -> list[str]:
    """Parquet column names the task needs (by role, mapped through ``data.columns``)."""
    cols = settings.data.columns
    return [getattr(cols, role) for role in REQUIRED_COLUMNS[settings.task]]


def check_sources(settings: JobSettings) -> None:
    """Check that the parquet inputs and the model / tokenizer folders exist and have what the task needs.

    A model or tokenizer name is a local folder or a hub id by :func:`bigbird.hub.is_local`, the rule
    ``from_pretrained`` follows; hub ids are not looked up here.

    Raises:
        FileNotFoundError: A missing file or folder (named).
        ValueError: A missing column (named, with the columns that are there).
    """
    d = settings.data
    for split, path in (("data.train", d.train), ("data.eval", d.eval)):
        if path is None:
            continue
        names = parquet_columns(path, settings.storage)
        missing = [c for c in required_columns(settings) if c not in names]
        if missing:
            raise ValueError(f"{split} {path!r} lacks columns {missing} needed for {settings.task} "
                             f"(it has {names}; map other names with data.columns)")
    m = settings.model
    for field, value in (("model.from_pretrained", m.from_pretrained), ("model.tokenizer", m.tokenizer)):
        if value is None or builtin_tokenizer(value) or is_uri(value):
            continue
        if is_local(value) and not Path(value).expanduser().exists():  # else a hub id, as for from_pretrained
            raise FileNotFoundError(f"{field}: no such folder {value!r}")


def builtin_tokenizer(value: str) -> bool:
    """``value`` names a tokenizer the job builds (``dna``, ``dna-kK``, ``unigram``), not a folder or hub id."""
    return value in ("dna", "unigram") or KMER_TOKENIZER.fullmatch(value) is not None
