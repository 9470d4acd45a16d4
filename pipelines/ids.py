"""Null and repeated ids, counted without holding every id on the driver.

The id column is streamed in batches. Up to ``PARTITION_ROWS`` ids are counted in memory; a larger corpus is
hash-partitioned into ``ceil(rows / PARTITION_ROWS)`` spill files (Arrow IPC, a temporary folder), each then
counted alone, so the driver's memory is one partition's ids whatever the corpus's size, at the price of
writing and reading the id column once more on local disk.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PARTITION_ROWS = 250_000
_MULT = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing's odd multiplier


@dataclass
class IdCounts:
    """What the check found: null ids, ids seen more than once, the records those repeats hold."""

    nulls: int = 0
    repeated: int = 0
    repeated_records: int = 0
    examples: list = field(default_factory=list)

    def add(self, ids: pa.Array) -> None:
        counts = pc.value_counts(ids)
        many = counts.filter(pc.greater(counts.field("counts"), 1))
        self.repeated += len(many)
        self.repeated_records += pc.sum(many.field("counts")).as_py() or 0
        self.examples += many.field("values")[:max(0, 3 - len(self.examples))].to_pylist()


def partition_of(ids: pa.Array, parts: int) -> np.ndarray:
    """A partition number in ``[0, parts)`` per (non-null) id: equal ids always share one. Integers are mixed
    by Fibonacci hashing, strings and bytes by a polynomial hash of their bytes (vectorized, numpy)."""
    kind = ids.type
    if pa.types.is_integer(kind):
        values = ids.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.uint64)
        return ((values * _MULT) >> np.uint64(32)) % np.uint64(parts)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        ids = ids.view(pa.large_binary() if pa.types.is_large_string(kind) else pa.binary())
        kind = ids.type
    if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        raise TypeError(f"no partitioning for ids of type {kind}")
    ids = pc.cast(ids, pa.large_binary()) if pa.types.is_binary(kind) else ids
    ids = pa.concat_arrays([ids]) if ids.offset else ids  # offsets from 0
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64)[: len(ids) + 1]
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]] if len(ids) else \
        np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    weights = np.power(np.uint64(1099511628211), (position % 64).astype(np.uint64))  # FNV prime^(pos mod 64)
    with np.errstate(over="ignore"):
        # one zero term past the end, so that every start (an empty last string's too) is a valid index
        terms = np.append((data.astype(np.uint64) + np.uint64(1)) * weights, np.uint64(0))
        sums = np.add.reduceat(terms, starts) if len(ids) else np.zeros(0, np.uint64)
        sums = np.where(lengths > 0, sums, np.uint64(0)) + lengths.astype(np.uint64)
        return ((sums * _MULT) >> np.uint64(32)) % np.uint64(parts)


def count_ids(batches: Iterable[pa.Array], rows: int, id_type: pa.DataType) -> IdCounts:
    """Count null and repeated ids over ``batches`` (``rows`` ids in all), partitioned when they are many.

    Raises:
        TypeError: For an id type that cannot be counted (lists, structs...).
    """
    try:
        pc.value_counts(pa.array([], id_type))
    except pa.ArrowNotImplementedError as e:
        raise TypeError(f"ids of type {id_type} cannot be counted") from e
    found = IdCounts()
    parts = max(1, -(-rows // PARTITION_ROWS))
    if parts == 1:
        kept = []
        for batch in batches:
            found.nulls += batch.null_count
            kept.append(batch.drop_null())
        found.add(pa.concat_arrays(kept) if kept else pa.array([], id_type))
        return found
    with tempfile.TemporaryDirectory(prefix="bigbird-ids-") as tmp:
        schema = pa.schema([("id", id_type)])
        sinks = [pa.OSFile(str(Path(tmp) / f"{k}.arrow"), "wb") for k in range(parts)]
        writers = [pa.ipc.new_stream(sink, schema) for sink in sinks]
        for batch in batches:
            found.nulls += batch.null_count
            batch = batch.drop_null()
            keys = pa.array(partition_of(batch, parts))
            for k in np.unique(keys.to_numpy()):
                writers[k].write_batch(pa.record_batch([batch.filter(pc.equal(keys, k))], schema=schema))
        for writer, sink in zip(writers, sinks):
            writer.close()
            sink.close()
        for k in range(parts):
            with pa.OSFile(str(Path(tmp) / f"{k}.arrow"), "rb") as source:
                table = pa.ipc.open_stream(source).read_all()
            found.add(table.column(0).combine_chunks() if table.num_rows else pa.array([], id_type))
    return found
