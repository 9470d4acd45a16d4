"""A prepared block of records as one Arrow row: records, tokens and windows in list columns (no pickles).

One row per block means Ray Data can never split a block between the preparing task and the model actor
(it slices blocks by rows), so an actor always scores, and writes, whole blocks. Per-record columns hold one
entry per record; ``win_*`` columns one entry per window, ``win_record`` naming its record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from bigbird.tasks.base import Encoded, Prepared
from bigbird.windows import RecordError, Window

WINDOW_INTS = ("record", "index", "context_start", "token_start", "own_start", "own_end")


def _one(values: pa.Array) -> pa.Array:
    """A list array with a single element holding ``values``."""
    return pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)


def _ragged(arrays: Sequence[np.ndarray | None], dtype: pa.DataType) -> pa.Array:
    """``list<dtype>`` from numpy arrays (None -> null)."""
    lengths = [0 if a is None else np.asarray(a).size for a in arrays]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    parts = [np.asarray(a).reshape(-1) for a in arrays if a is not None and len(a)]
    flat = np.concatenate(parts) if parts else np.zeros(0)
    mask = pa.array([a is None for a in arrays], pa.bool_()) if any(a is None for a in arrays) else None
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(flat, dtype), mask=mask)


def _split(array: pa.Array) -> list[np.ndarray | None]:
    """Inverse of :func:`_ragged`."""
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return [values[offsets[k]:offsets[k + 1]] if valid[k] else None for k in range(len(array))]


def pack(name: str, ids: pa.Array, texts: list[str | None], errors: list[str | None], offsets: list[int | None],
         kept: dict[str, pa.Array], encoded: list[Encoded | None], windows: list[Window]) -> pa.Table:
    """One row describing a prepared block (``encoded[i]`` is None for a record that failed)."""
    cols: dict[str, pa.Array] = {
        "name": pa.array([name], pa.string()),
        "id": _one(ids),
        "text": _one(pa.array(texts, pa.large_string())),
        "error": _one(pa.array(errors, pa.string())),
        "offset": _one(pa.array(offsets, pa.int64())),
        "enc_ids": _one(_ragged([None if e is None else e.ids for e in encoded], pa.int32())),
        "enc_offsets": _one(_ragged([None if e is None else e.offsets for e in encoded], pa.int64())),
        "enc_question": _one(_ragged([None if e is None else e.question_ids for e in encoded], pa.int32())),
        "win_input_ids": _one(_ragged([w.input_ids for w in windows], pa.int32())),
        "win_token_type_ids": _one(_ragged([w.token_type_ids for w in windows], pa.int8())),
    }
    for f in WINDOW_INTS:
        cols[f"win_{f}"] = _one(pa.array([getattr(w, f) for w in windows], pa.int64()))
    for dst, values in kept.items():
        cols[f"keep:{dst}"] = _one(values)
    return pa.table(cols)


@dataclass
class Block:
    """A prepared block unpacked for scoring."""

    name: str
    ids: pa.Array
    texts: list[str | None]
    errors: list[str | None]
    offsets: list[int | None]
    kept: dict[str, pa.Array]
    encoded: list[Encoded | None]
    windows: list[Window]

    def __len__(self) -> int:
        return len(self.ids)

    def prepared(self, params: Mapping[str, Any]) -> Prepared:
        """The block as the task pipeline's :class:`Prepared` records (for :meth:`TaskPipeline.finish`)."""
        errors = {i: RecordError(e) for i, e in enumerate(self.errors) if self.encoded[i] is None}
        encoded = [errors[i] if e is None else e for i, e in enumerate(self.encoded)]
        tokens = [0 if e is None else len(e.ids) for e in self.encoded]
        return Prepared([{"text": t} for t in self.texts], encoded, self.windows, errors, tokens, dict(params))


def unpack(table: pa.Table, row: int) -> Block:
    """Row ``row`` of a table of packed blocks."""
    cell: dict[str, Any] = {c: table.column(c)[row] for c in table.column_names}
    ids = cell["id"].values
    enc_ids, enc_offsets = _split(cell["enc_ids"].values), _split(cell["enc_offsets"].values)
    questions = _split(cell["enc_question"].values)
    encoded = [None if enc_ids[i] is None else
               Encoded(enc_ids[i].astype(np.int64), enc_offsets[i].reshape(-1, 2), None if questions[i] is None
                       else questions[i].astype(np.int64)) for i in range(len(ids))]
    ints = {f: cell[f"win_{f}"].values.to_numpy(zero_copy_only=False) for f in WINDOW_INTS}
    input_ids, types = _split(cell["win_input_ids"].values), _split(cell["win_token_type_ids"].values)
    windows = [Window(**{f: int(ints[f][k]) for f in WINDOW_INTS}, input_ids=input_ids[k].astype(np.int64),
                      token_type_ids=types[k].astype(np.int64)) for k in range(len(input_ids))]
    kept = {c[len("keep:"):]: cell[c].values for c in table.column_names if c.startswith("keep:")}
    return Block(name=cell["name"].as_py(), ids=ids, texts=cell["text"].values.to_pylist(),
                 errors=cell["error"].values.to_pylist(), offsets=cell["offset"].values.to_pylist(),
                 kept=kept, encoded=encoded, windows=windows)
