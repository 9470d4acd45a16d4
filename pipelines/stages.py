"""The batch job's stages as plain functions over column batches (no Ray imports: testable alone).

preprocess -> one row per record: its windows, or the reason it cannot be scored (CPU tasks);
Scorer     -> one result row per record, fixed schema per task (the model loads once per actor; the windows
              of a batch of records are scored together, grouped by padded length).
"""

from __future__ import annotations

import functools
import os
import pickle
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from bigbird.config import BigBirdConfig
from bigbird.tasks import task_class
from bigbird.tasks.base import Encoded, TaskPipeline
from bigbird.windows import RecordError, Window, padded_length

ENTITY = pa.struct([("label", pa.string()), ("score", pa.float64()), ("start", pa.int64()), ("end", pa.int64()),
                    ("word", pa.string())])
LABEL_SCORE = pa.struct([("label", pa.string()), ("score", pa.float64())])
COMMON = [("id", pa.string()), ("error", pa.string()), ("num_windows", pa.int64()), ("num_tokens", pa.int64()),
          ("padding_tokens", pa.int64())]
TASK_FIELDS = {
    "text-classification": [("label", pa.string()), ("score", pa.float64()), ("labels", pa.list_(pa.string())),
                            ("scores", pa.list_(LABEL_SCORE))],
    "question-answering": [("answer", pa.string()), ("score", pa.float64()), ("start", pa.int64()),
                           ("end", pa.int64())],
    "token-classification": [("entities", pa.list_(ENTITY)), ("offset", pa.int64())],
}


def output_schema(task: str, keep_columns: tuple[tuple[str, str], ...] = ()) -> pa.Schema:
    """The result table's schema: fixed per task, plus the kept input columns (as strings, renamed)."""
    return pa.schema(COMMON + TASK_FIELDS[task] + [(dst, pa.string()) for _, dst in keep_columns])


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str):
    from bigbird.tokenizer import BigBirdTokenizer

    return BigBirdTokenizer.from_pretrained(model)


@functools.lru_cache(maxsize=4)
def preprocessor(model: str, task: str, max_length: int | None, stride: int) -> TaskPipeline:
    """A model-less task pipeline, cached per worker process: the tokenizer loads once per process."""
    from bigbird.hub import resolve_file

    config = BigBirdConfig.from_json_file(resolve_file(model, "config.json"))
    return task_class(task)(None, _tokenizer(model), config=config, max_length=max_length, stride=stride)


def preprocess(batch: dict[str, np.ndarray], *, model: str, task: str, max_length: int | None, stride: int,
               id_column: str, text_column: str, question_column: str | None = None,
               question: str | None = None, offset_column: str | None = None, skip_ids=None,
               keep_columns: tuple[tuple[str, str], ...] = ()) -> dict[str, list]:
    """Tokenize and window a batch of records: one row per record, its windows packed in ``payload``.

    Keeping a record's windows in one row means no shuffle is needed to stitch them back. Bad records get
    ``error`` and no payload. ``skip_ids`` (a sorted array, or a Ray object ref to one) lists records an earlier
    run already wrote; filtering here keeps every block's schema intact.
    """
    pipe = preprocessor(model, task, max_length, stride)
    if skip_ids is not None:
        if not isinstance(skip_ids, np.ndarray):
            import ray

            skip_ids = ray.get(skip_ids)
        keep = ~np.isin(np.asarray(batch[id_column]).astype(str), skip_ids)
        batch = {k: np.asarray(v)[keep] for k, v in batch.items()}
    ids = [str(x) for x in batch[id_column]]
    texts: list[Any] = list(batch[text_column])
    questions = None
    if question_column is not None:
        questions = list(batch[question_column])
    elif question is not None:
        questions = [question] * len(ids)
    offsets = [None] * len(ids)
    if offset_column:
        offsets = [_int_or_none(x) for x in batch[offset_column]]
    validate = getattr(pipe.tokenizer, "validate", None)
    if validate is not None:  # DNA vocabularies reject characters they cannot encode
        for i, t in enumerate(texts):
            if isinstance(t, str) and t.strip():
                try:
                    validate(t)
                except ValueError as e:
                    texts[i] = RecordError(str(e))
    encoded = pipe.encode([t if isinstance(t, str) else None for t in texts], questions)
    encoded = [t if isinstance(t, RecordError) else e for t, e in zip(texts, encoded)]
    windows, errors = pipe.windows(encoded)
    per_record: dict[int, list[Window]] = {}
    for w in windows:
        per_record.setdefault(w.record, []).append(w)
    rows: dict[str, list] = {"rid": ids, "text": [], "offset": offsets, "error": [], "payload": []}
    for src, dst in keep_columns:
        rows[f"keep:{dst}"] = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                               for v in batch[src]]
    for i in range(len(ids)):
        if i in errors:
            rows["text"].append(None)
            rows["error"].append(str(errors[i]))
            rows["payload"].append(None)
        else:
            rows["text"].append(texts[i])
            rows["error"].append(None)
            rows["payload"].append(pickle.dumps((encoded[i], per_record[i]), protocol=pickle.HIGHEST_PROTOCOL))
    return rows


def _int_or_none(value: Any) -> int | None:
    """Nullable integers arrive in numpy batches as None or NaN."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else int(value)


class Scorer:
    """Model actor: loads the model once; scores the windows of a batch of records together (grouped by
    padded length) and merges each record's windows into its result row."""

    def __init__(self, *, model: str, task: str, max_length: int | None, stride: int, batch_size: int,
                 max_tokens: int | None, threads: int | None, params: dict[str, Any],
                 keep_columns: tuple[tuple[str, str], ...] = ()) -> None:
        self.keep_columns = tuple(keep_columns)
        if threads:
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        cls = task_class(task)
        loaded = cls.model_class.from_pretrained(model)
        self.task = task
        self.pipe = cls(loaded, _tokenizer(model), device=device, batch_size=batch_size, max_length=max_length,
                        stride=stride, max_tokens=max_tokens)
        self.params = {**cls.default_params, **params}
        self.block = self.pipe.config.block_size

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["rid"])
        unpacked: dict[int, tuple[Encoded, list[Window]]] = {
            # An all-null error column arrives as NaNs: a record failed only if its error is a string.
            i: pickle.loads(batch["payload"][i]) for i in range(n) if not isinstance(batch["error"][i], str)}
        flat: list[Window] = []
        owner: list[int] = []
        for i, (_, windows) in unpacked.items():
            flat.extend(windows)
            owner.extend([i] * len(windows))
        outputs = self.pipe.score(flat, **self.params) if flat else []
        per_record: dict[int, list] = {}
        for i, out in zip(owner, outputs):
            per_record.setdefault(i, []).append(out)
        rows = []
        for i in range(n):
            rows.append(self._row(batch, i, unpacked.get(i), per_record.get(i, [])))
        return pa.Table.from_pylist(rows, schema=output_schema(self.task, self.keep_columns))

    def _row(self, batch: dict[str, np.ndarray], i: int, item, outputs: list) -> dict[str, Any]:
        row: dict[str, Any] = {name: None for name, _ in COMMON + TASK_FIELDS[self.task]}
        row.update(id=str(batch["rid"][i]), num_windows=0, num_tokens=0, padding_tokens=0)
        for _, dst in self.keep_columns:
            value = batch[f"keep:{dst}"][i]
            row[dst] = value if isinstance(value, str) else None
        if item is None:
            row["error"] = str(batch["error"][i])
            return row
        encoded, windows = item
        try:
            result = self.pipe.merge({"text": batch["text"][i]}, encoded, windows, outputs, **self.params)
        except Exception as e:  # one record's failure must not fail the batch
            row["error"] = f"internal: {type(e).__name__}: {e}"
            return row
        # Padding actually spent: the model pads each window to whole blocks (its batch shares that length).
        padding = sum(padded_length(len(w.input_ids), self.block) - len(w.input_ids) for w in windows)
        row.update(num_windows=len(windows), num_tokens=len(encoded.ids), padding_tokens=padding)
        row.update(_task_columns(self.task, result, _int_or_none(batch["offset"][i]), self.params))
        return row


def _task_columns(task: str, result: Any, offset: int | None, params: dict[str, Any]) -> dict[str, Any]:
    if task == "text-classification":
        threshold = params.get("multi_label_threshold", 0.5)
        return {"label": result[0]["label"], "score": result[0]["score"], "scores": result,
                "labels": [r["label"] for r in result if r["score"] >= threshold]}
    if task == "question-answering":
        best = result[0] if isinstance(result, list) else result
        return {k: best[k] for k in ("answer", "score", "start", "end")}
    shift = offset or 0
    entities = [{"label": e.get("entity_group", e.get("entity")), "score": e["score"], "start": e["start"] + shift,
                 "end": e["end"] + shift, "word": e["word"]} for e in result]
    return {"entities": entities, "offset": offset}


def batch_params(task: str, settings: Any) -> dict[str, Any]:
    """The task parameters a batch job passes to the pipeline stages."""
    if task == "text-classification":
        return {"top_k": None, "multi_label_threshold": settings.multi_label_threshold}
    if task == "question-answering":
        return {"top_k": settings.top_k, "max_answer_len": settings.max_answer_len}
    return {"aggregation_strategy": settings.aggregation_strategy}


def default_threads(actors: int) -> int:
    return max(1, (os.cpu_count() or 1) // actors)
