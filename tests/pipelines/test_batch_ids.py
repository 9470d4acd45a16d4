"""Null and repeated ids counted in bounded memory: hash partitions agree with the in-memory count."""

from __future__ import annotations

import collections

import pyarrow as pa
import pytest

from pipelines import ids


@pytest.mark.parametrize("values", [
    [f"doc-{i % 900}" for i in range(4000)] + ["", "", "é", None, None],
    [(i * 7919) % 1500 - 700 for i in range(4000)] + [None],
])
def test_partitions_count_what_memory_counts_and_hold_a_share_each(values, monkeypatch):
    array = pa.array(values)
    batches = [array.slice(k, 500) for k in range(0, len(array), 500)]
    whole = ids.count_ids(batches, len(array), array.type)
    seen: list[int] = []
    add = ids.IdCounts.add
    monkeypatch.setattr(ids.IdCounts, "add", lambda self, part: (seen.append(len(part)), add(self, part))[1])
    monkeypatch.setattr(ids, "PARTITION_ROWS", 400)  # 11 partitions
    split = ids.count_ids(batches, len(array), array.type)
    assert (split.nulls, split.repeated, split.repeated_records) == (whole.nulls, whole.repeated,
                                                                     whole.repeated_records)
    assert whole.repeated and len(seen) == 11 and max(seen) <= 2 * 400 and sum(seen) == len(array) - whole.nulls
    counts = collections.Counter(v for v in values if v is not None)
    assert whole.repeated == sum(c > 1 for c in counts.values())
    assert whole.repeated_records == sum(c for c in counts.values() if c > 1)
    assert set(split.examples) <= {v for v, c in counts.items() if c > 1} and len(split.examples) == 3


def test_equal_ids_share_a_partition_wherever_they_are():
    array = pa.array([f"id-{i % 37}" for i in range(1000)] + [""])
    keys = ids.partition_of(array, 13)
    owner: dict[str, set] = collections.defaultdict(set)
    for value, key in zip(array.to_pylist(), keys):
        owner[value].add(int(key))
    assert all(len(k) == 1 for k in owner.values()) and len({min(k) for k in owner.values()}) > 5
    assert list(ids.partition_of(array.slice(100, 50), 13)) == list(keys[100:150])  # a slice, as batches come
    with pytest.raises(TypeError, match="cannot be counted"):
        ids.count_ids([], 0, pa.list_(pa.string()))
