"""Long inputs as overlapping windows: plan, build, batch by length, and decide which window owns a token.

Pure functions over token ids; the task pipelines, the Ray batch jobs, the HTTP service and the training
jobs all chunk the same way. A window is ``[CLS] context [SEP]`` or ``[CLS] question [SEP] context [SEP]``.
Consecutive windows overlap by ``stride`` tokens; each context token is *owned* by exactly one window
(the overlap is split in the middle), so per-token predictions stitch back by concatenation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch


class RecordError(ValueError):
    """A record that cannot be scored (empty, question too long, ...); the message says why."""


@dataclass
class Window:
    """One model input cut from a record.

    Attributes:
        record: Position of the source record in the caller's list.
        index: Window number within the record.
        input_ids: ``(n,)`` ids with special tokens.
        token_type_ids: ``(n,)`` 0 for ``[CLS]`` + question + ``[SEP]``, 1 for the context (pairs only): what
            transformers' ``BigBirdForQuestionAnswering`` derives itself from the first ``[SEP]`` when, as
            from transformers' BigBird tokenizer, it gets no token type ids. Single texts: 0 everywhere.
        context_start: Position in ``input_ids`` of the first context token.
        token_start: Index of that token among the record's context tokens.
        own_start, own_end: Record token range ``[own_start, own_end)`` this window is responsible for.
    """

    record: int
    index: int
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    context_start: int
    token_start: int
    own_start: int
    own_end: int

    @property
    def n_context(self) -> int:
        return len(self.input_ids) - self.context_start - 1

    def to_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> Window:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def plan_windows(n_tokens: int, capacity: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` covering ``n_tokens`` with windows of ``capacity`` overlapping by
    ``stride``; the last window is aligned to the end so every window but a lone short one is full.

    Raises:
        ValueError: If ``capacity`` < 1 or ``stride`` is not in ``[0, capacity)``.
    """
    if capacity < 1:
        raise ValueError(f"window capacity must be positive, got {capacity}")
    if not 0 <= stride < capacity:
        raise ValueError(f"stride {stride} must be >= 0 and smaller than the window ({capacity} tokens)")
    if n_tokens <= capacity:
        return [(0, n_tokens)]
    step = capacity - stride
    starts = list(range(0, n_tokens - capacity, step)) + [n_tokens - capacity]
    return [(s, s + capacity) for s in starts]


def ownership(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split each overlap in the middle: window ``k`` owns ``[own_start, own_end)``."""
    bounds = [spans[0][0]]
    for (_, prev_end), (start, _) in zip(spans, spans[1:]):
        bounds.append((start + prev_end) // 2 if start < prev_end else start)
    bounds.append(spans[-1][1])
    return list(zip(bounds[:-1], bounds[1:]))


def windows_for_record(record: int, context_ids: Sequence[int], *, max_length: int, stride: int, cls_id: int,
                       sep_id: int, question_ids: Sequence[int] | None = None) -> list[Window]:
    """Cut one record's context tokens into windows.

    Args:
        record: The record's position (carried into each window).
        context_ids: The record's tokens without special tokens.
        max_length: Most tokens per window, special tokens included.
        stride: Overlap between consecutive windows, in tokens.
        cls_id, sep_id: Special token ids.
        question_ids: Tokens of a question to put before every window (question answering).

    Returns:
        The windows, in order.

    Raises:
        RecordError: If the context is empty or the question leaves no room for context.
    """
    if len(context_ids) == 0:
        raise RecordError("empty text: nothing to score")
    head = [cls_id]
    if question_ids is not None:
        if len(question_ids) == 0:
            raise RecordError("empty question")
        head = [cls_id, *question_ids, sep_id]
    capacity = max_length - len(head) - 1
    if capacity < 1:
        n_question = 0 if question_ids is None else len(question_ids)
        raise RecordError(f"question of {n_question} tokens leaves no room for context in "
                          f"{max_length}-token windows")
    stride = min(stride, capacity // 2)
    spans = plan_windows(len(context_ids), capacity, stride)
    ctx = np.asarray(context_ids, dtype=np.int64)
    head_arr = np.asarray(head, dtype=np.int64)
    windows = []
    for i, ((start, end), (own_start, own_end)) in enumerate(zip(spans, ownership(spans))):
        ids = np.concatenate([head_arr, ctx[start:end], [sep_id]])
        types = np.zeros(len(ids), dtype=np.int64)
        if question_ids is not None:
            types[len(head):] = 1
        windows.append(Window(record, i, ids, types, len(head), start, own_start, own_end))
    return windows


def padded_length(n: int, block_size: int) -> int:
    return -(-n // block_size) * block_size


def group_by_length(lengths: Sequence[int], *, batch_size: int, block_size: int,
                    max_tokens: int | None = None) -> list[list[int]]:
    """Batches of indices whose lengths pad to the same multiple of ``block_size``.

    Equal padded lengths mean no padding beyond the block and, for block-sparse attention, the same random
    layout a window gets alone: results do not depend on what else is in the batch.

    Args:
        lengths: Token count of each item.
        batch_size: Most items per batch.
        block_size: The model's block size.
        max_tokens: Optional cap on ``items x padded length`` per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    buckets: dict[int, list[int]] = defaultdict(list)
    for i, n in enumerate(lengths):
        buckets[padded_length(n, block_size)].append(i)
    batches = []
    for padded in sorted(buckets):
        items = buckets[padded]
        per_batch = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // padded))
        batches.extend(items[i : i + per_batch] for i in range(0, len(items), per_batch))
    return batches


def collate(windows: Sequence[Window], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Stack windows right-padded to the longest: input_ids, attention_mask, token_type_ids.

    The model pads to a whole number of blocks itself; with batches from :func:`group_by_length` every window
    then gets the block count (and sparse layout) it would get alone.
    """
    length = max(len(w.input_ids) for w in windows)
    ids = np.full((len(windows), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), length), dtype=np.int64)
    types = np.zeros((len(windows), length), dtype=np.int64)
    for row, w in enumerate(windows):
        n = len(w.input_ids)
        ids[row, :n] = w.input_ids
        mask[row, :n] = 1
        types[row, :n] = w.token_type_ids
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.from_numpy(types)}
