"""Parquet -> training windows through Ray Data, and the workers' side: a window store and a batch plan.

Driver side (:func:`prepare`): ``ray.data.read_parquet`` -> optional hold-out split by a hash of the id ->
``map_batches`` tokenizing and windowing (:func:`jobs.examples.encode_records`) -> materialized once.

Worker side, two batch sources. :class:`PlannedBatches` (default): each worker reads the materialized windows
from ``ray.train.get_dataset_shard("train")`` into a compact :class:`WindowStore`, and every optimizer step
takes its slice of the step's global batch from :func:`plan_epoch`. The plan depends only on the seed, the
epoch and the global batch size, and every micro-batch of a step is padded to the same length, so a run gives
the same updates on 1 or N workers and resumes mid-epoch without repeating or skipping a window.
:class:`StreamedBatches` (``data.streaming``): each worker streams its split of the windows with
``iter_torch_batches`` and a padding collate; it scales past worker memory but is not repeatable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from bigbird.splits import in_holdout
from jobs.examples import WINDOW_TYPES, EncodeSpec, encode_records, record_labels, tag_names
from jobs.settings import JobSettings, required_columns

OPTIONAL_COLUMNS = {"question-answering": ("answer_start",)}


# ------------------------------------------------------------------------------------------------ driver
@dataclass
class Prepared:
    """What the driver hands to the trainer."""

    train: Any  # ray.data.Dataset of windows (materialized)
    eval: Any | None  # raw records (windows for masked-lm), materialized
    labels: list[str] | None  # id -> label name (classification / tagging)
    counts: dict[str, int]


def read_records(path: str, settings: JobSettings) -> Any:
    """The task's columns of a parquet file / folder / URI as a Ray dataset."""
    import ray.data

    from jobs.settings import parquet_columns
    from jobs.storage import filesystem

    cols = settings.data.columns
    wanted = required_columns(settings)
    wanted += [getattr(cols, role) for role in OPTIONAL_COLUMNS.get(settings.task, ())
               if getattr(cols, role) in parquet_columns(path, settings.storage)]
    fs, inner = filesystem(path, settings.storage)
    return ray.data.read_parquet(inner, filesystem=fs).select_columns(wanted)


def _split(batch: pa.Table, *, id_column: str, fraction: float, seed: int, holdout: bool) -> pa.Table:
    mask = in_holdout(batch.column(id_column).to_pylist(), fraction, seed)
    return batch.filter(pa.array(mask if holdout else ~mask))


def split_by_id(ds: Any, settings: JobSettings) -> tuple[Any, Any]:
    """(train, held-out) by a hash of the id: the same records are held out on every run and machine."""
    kw = dict(id_column=settings.data.columns.id, fraction=settings.data.eval_fraction,
              seed=settings.data.split_seed)
    return (ds.map_batches(_split, batch_format="pyarrow", fn_kwargs={**kw, "holdout": False}),
            ds.map_batches(_split, batch_format="pyarrow", fn_kwargs={**kw, "holdout": True}))


def label_names(train: Any, settings: JobSettings) -> list[str] | None:
    """Label vocabulary from the training split: sorted class names, or the tag names of the span labels."""
    d = settings.data
    if settings.task == "text-classification":
        found: set[str] = set()
        for batch in train.select_columns([d.columns.label]).iter_batches(batch_format="pyarrow"):
            for value in batch.column(0).to_pylist():
                found.update(record_labels(value, multi_label=d.multi_label, separator=d.label_separator))
        if len(found) < 2 and not d.multi_label:
            raise ValueError(f"text-classification needs at least 2 labels in the training split, found "
                             f"{sorted(found)}")
        return sorted(found)
    if settings.task == "token-classification":
        if d.span_labels is not None:
            return tag_names(d.span_labels, d.tagging_scheme)
        found = set()
        for batch in train.select_columns([d.columns.spans]).iter_batches(batch_format="pyarrow"):
            found.update(s["label"] for spans in batch.column(0).to_pylist() for s in spans or [])
        if not found:
            raise ValueError("token-classification: the training split has no spans")
        return tag_names(sorted(found), d.tagging_scheme)
    return None


def encode_spec(settings: JobSettings, tokenizer: Any, labels: list[str] | None) -> EncodeSpec:
    d = settings.data
    span_labels = d.span_labels
    if settings.task == "token-classification" and span_labels is None and labels:
        span_labels = sorted({name.split("-", 1)[-1] for name in labels[1:]})
    return EncodeSpec(task=settings.task, tokenizer=tokenizer, max_length=d.max_length, stride=d.stride,
                      columns=d.columns.model_dump(), first_window_only=d.first_window_only, max_chars=d.max_chars,
                      label2id={n: i for i, n in enumerate(labels or [])}, multi_label=d.multi_label,
                      label_separator=d.label_separator, span_labels=span_labels, scheme=d.tagging_scheme,
                      period=d.tag_period)


def prepare(settings: JobSettings, tokenizer: Any) -> Prepared:
    """Read, split, label and window the data (in Ray Data tasks); materialize the results.

    Raises:
        ValueError: Too few labels, unknown labels in the held-out split, or no training windows.
    """
    import ray.data

    d = settings.data
    context = ray.data.DataContext.get_current()
    preserve = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # limit/hold-out/materialize give the same rows every run
    try:
        train = read_records(d.train, settings)
        evalset = read_records(d.eval, settings) if d.eval is not None else None
        if d.eval_fraction is not None:
            train, evalset = split_by_id(train, settings)
        if d.limit is not None:
            train = train.limit(d.limit)
            evalset = evalset.limit(d.limit) if evalset is not None else None
        train = train.materialize()
        labels = label_names(train, settings)
        spec = encode_spec(settings, tokenizer, labels)
        windows = train.map_batches(encode_records, batch_format="pyarrow", batch_size=64,
                                    fn_kwargs={"spec": spec}).materialize()
        counts = {"train_records": train.count(), "train_windows": windows.count()}
        if counts["train_windows"] == 0:
            raise ValueError(f"no training windows: {d.train!r} has no usable records")
        if evalset is not None:
            if settings.task == "masked-lm":
                evalset = evalset.map_batches(encode_records, batch_format="pyarrow", batch_size=64,
                                              fn_kwargs={"spec": spec})
            evalset = evalset.materialize()
            counts["eval_records" if settings.task != "masked-lm" else "eval_windows"] = evalset.count()
    finally:
        context.execution_options.preserve_order = preserve
    return Prepared(windows, evalset, labels, counts)


# ------------------------------------------------------------------------------------------------ worker
def _ragged(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (flat values, offsets) numpy arrays."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return arr.flatten().to_numpy(zero_copy_only=False), offsets


class WindowStore:
    """Windows held as flat arrays plus offsets (a few bytes per token), collated into padded batches.

    Args:
        table: The window columns of :func:`jobs.examples.encode_records`.
    """

    RAGGED = ("input_ids", "token_type_ids", "tags", "label_ids")

    def __init__(self, table: pa.Table) -> None:
        self.columns: dict[str, Any] = {}
        for name in table.column_names:
            col = table.column(name)
            self.columns[name] = _ragged(col) if name in self.RAGGED else col.to_numpy()
        self.lengths = np.asarray(self.columns["length"], dtype=np.int64)

    @classmethod
    def from_batches(cls, batches: Iterable[pa.Table], *, keep: slice | None = None) -> WindowStore:
        """Concatenate pyarrow batches (e.g. ``shard.iter_batches(batch_format="pyarrow")``); ``keep``
        selects rows of the whole (e.g. ``slice(rank, None, world)``)."""
        tables = [b for b in batches if b.num_rows]
        if not tables:
            raise ValueError("no windows to load")
        table = pa.concat_tables(tables)
        if keep is not None:
            table = table.take(pa.array(np.arange(table.num_rows)[keep]))
        return cls(table)

    def __len__(self) -> int:
        return len(self.lengths)

    def _rows(self, name: str, idx: np.ndarray, length: int, fill: int) -> torch.Tensor:
        flat, offsets = self.columns[name]
        out = np.full((len(idx), length), fill, dtype=np.int64)
        for row, i in enumerate(idx):
            values = flat[offsets[i] : offsets[i + 1]]
            out[row, : len(values)] = values
        return torch.from_numpy(out)

    def collate(self, idx: np.ndarray, *, pad_id: int, length: int | None = None,
                num_labels: int | None = None) -> dict[str, torch.Tensor]:
        """Padded tensors of windows ``idx``: ``input_ids``, ``attention_mask``, ``token_type_ids`` and the
        task's labels (``labels`` / ``start_positions`` + ``end_positions``); also ``uid`` and ``length``.

        Args:
            idx: Window indices.
            pad_id: Padding token id.
            length: Pad to this many tokens (default: the longest window in ``idx``).
            num_labels: Multi-label classification: width of the multi-hot ``labels``.
        """
        idx = np.asarray(idx, dtype=np.int64)
        lengths = self.lengths[idx]
        length = int(lengths.max()) if length is None else length
        batch = {"input_ids": self._rows("input_ids", idx, length, pad_id),
                 "attention_mask": torch.from_numpy((np.arange(length)[None, :] < lengths[:, None]).astype(np.int64))}
        if "token_type_ids" in self.columns:
            batch["token_type_ids"] = self._rows("token_type_ids", idx, length, 0)
        else:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        if "tags" in self.columns:
            batch["labels"] = self._rows("tags", idx, length, -100)
        if "label" in self.columns:
            batch["labels"] = torch.from_numpy(self.columns["label"][idx].astype(np.int64))
        if "label_ids" in self.columns:
            flat, offsets = self.columns["label_ids"]
            hot = torch.zeros(len(idx), num_labels or 1)
            for row, i in enumerate(idx):
                hot[row, flat[offsets[i] : offsets[i + 1]]] = 1.0
            batch["labels"] = hot
        if "start" in self.columns:
            batch["start_positions"] = torch.from_numpy(self.columns["start"][idx].astype(np.int64))
            batch["end_positions"] = torch.from_numpy(self.columns["end"][idx].astype(np.int64))
        batch["uid"] = torch.from_numpy(self.columns["uid"][idx].astype(np.int64))  # bit pattern kept
        batch["length"] = torch.from_numpy(lengths)
        return batch


def plan_epoch(lengths: np.ndarray, *, global_batch: int, seed: int, epoch: int, block_size: int,
               group: int = 32) -> np.ndarray:
    """The windows of every optimizer step of an epoch: ``(steps, global_batch)`` indices.

    A seeded permutation (wrapped around so the last step is full), cut into chunks of ``group`` global
    batches; within a chunk windows are sorted by length rounded up to ``block_size`` (little padding), and
    the batches of the whole epoch are then shuffled. Depends only on the arguments: not on worker count.
    """
    n = len(lengths)
    if n == 0:
        raise ValueError("no windows to plan")
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    steps = -(-n // global_batch)
    perm = np.resize(perm, steps * global_batch)  # repeats from the start to fill the last step
    padded = -(-lengths[perm] // block_size)
    chunk = group * global_batch
    for start in range(0, len(perm), chunk):
        order = np.argsort(padded[start : start + chunk], kind="stable")
        perm[start : start + chunk] = perm[start : start + chunk][order]
    batches = perm.reshape(steps, global_batch)
    return batches[rng.permutation(steps)]


def worker_slice(batch: np.ndarray, *, micro: int, rank: int, world: int, per_worker: int) -> np.ndarray:
    """The windows of micro-step ``micro`` on worker ``rank`` within one step's global batch."""
    start = (micro * world + rank) * per_worker
    return batch[start : start + per_worker]


# ---------------------------------------------------------------------------------------- batch sources
class PlannedBatches:
    """Deterministic batches (the default): every worker holds the windows and takes its slice of each step's
    global batch from :func:`plan_epoch`; micro-batches of a step share one padded length."""

    def __init__(self, shard: Any, *, rank: int, world: int, per_worker: int, accum: int, seed: int,
                 block_size: int, pad_id: int, num_labels: int | None) -> None:
        self.store = WindowStore.from_batches(shard.iter_batches(batch_format="pyarrow"))
        self.rank, self.world, self.per_worker, self.accum = rank, world, per_worker, accum
        self.seed, self.block_size, self.pad_id, self.num_labels = seed, block_size, pad_id, num_labels
        self.windows = len(self.store)
        self.steps_per_epoch = -(-self.windows // (per_worker * world * accum))

    def epoch(self, epoch: int, start: int) -> Iterable[list[dict[str, torch.Tensor]]]:
        """The micro-batches of steps ``start ..`` of ``epoch`` on this worker (one list per step)."""
        plan = plan_epoch(self.store.lengths, global_batch=self.per_worker * self.world * self.accum,
                          seed=self.seed, epoch=epoch, block_size=self.block_size)
        for rows in plan[start:]:
            pad_to = int(self.store.lengths[rows].max())  # the whole step: results independent of the split
            yield [self.store.collate(worker_slice(rows, micro=m, rank=self.rank, world=self.world,
                                                   per_worker=self.per_worker),
                                      pad_id=self.pad_id, length=pad_to, num_labels=self.num_labels)
                   for m in range(self.accum)]


def pad_collate(batch: dict[str, np.ndarray], *, pad_id: int, num_labels: int | None) -> dict[str, torch.Tensor]:
    """``iter_torch_batches`` collate: a numpy batch of windows (ragged lists as object arrays) -> padded tensors."""
    columns = {k: list(v) if v.dtype == object else v for k, v in batch.items()}
    table = pa.table({k: pa.array(v, type=WINDOW_TYPES.get(k)) for k, v in columns.items()})
    store = WindowStore(table)
    return store.collate(np.arange(len(store)), pad_id=pad_id, num_labels=num_labels)


class StreamedBatches:
    """Batches streamed from this worker's split of the windows (``data.streaming``): ``iter_torch_batches``
    with a local shuffle and :func:`pad_collate`. Scales past worker memory; the batches then depend on the
    worker count and on Ray Data's scheduling, so runs are not bit-for-bit repeatable."""

    def __init__(self, shard: Any, *, windows: int, world: int, per_worker: int, accum: int, seed: int,
                 shuffle_buffer: int, pad_id: int, num_labels: int | None) -> None:
        self.shard, self.per_worker, self.accum, self.seed = shard, per_worker, accum, seed
        self.shuffle_buffer, self.pad_id, self.num_labels = shuffle_buffer, pad_id, num_labels
        self.windows = windows
        # every worker's split has at least windows // world rows: all workers run the same number of steps
        self.steps_per_epoch = max(1, windows // world // (per_worker * accum))

    def epoch(self, epoch: int, start: int) -> Iterable[list[dict[str, torch.Tensor]]]:
        from functools import partial

        batches = iter(self.shard.iter_torch_batches(
            batch_size=self.per_worker, drop_last=True, local_shuffle_buffer_size=self.shuffle_buffer or None,
            local_shuffle_seed=self.seed * 7919 + epoch if self.shuffle_buffer else None,
            collate_fn=partial(pad_collate, pad_id=self.pad_id, num_labels=self.num_labels)))
        for step in range(self.steps_per_epoch):
            micro = [next(batches) for _ in range(self.accum)]
            if step >= start:  # a resumed epoch skips the steps its checkpoint already holds
                yield micro
