"""Windowing of long inputs: coverage, ownership, batching by length."""

from __future__ import annotations

import numpy as np
import pytest

from bigbird.windows import (
    RecordError,
    collate,
    group_by_length,
    ownership,
    plan_windows,
    windows_for_record,
)


@pytest.mark.parametrize("n,capacity,stride", [(1, 10, 0), (10, 10, 3), (11, 10, 3), (1000, 100, 25),
                                               (1001, 100, 0), (5000, 253, 128)])
def test_every_token_is_covered_and_owned_once(n, capacity, stride):
    spans = plan_windows(n, capacity, stride)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(e - s == min(capacity, n) for s, e in spans)
    owned = ownership(spans)
    covered = np.zeros(n, dtype=int)
    for (s, e), (os_, oe) in zip(spans, owned):
        assert s <= os_ <= oe <= e
        covered[os_:oe] += 1
    assert (covered == 1).all()
    for (_, e0), (s1, _) in zip(spans, spans[1:]):
        assert e0 - s1 >= min(stride, capacity)  # consecutive windows overlap by at least the stride


def test_plan_rejects_bad_stride():
    with pytest.raises(ValueError, match="stride 10"):
        plan_windows(100, 10, 10)
    with pytest.raises(ValueError, match="capacity"):
        plan_windows(100, 0, 0)


def test_windows_with_question_and_token_types():
    ws = windows_for_record(3, list(range(10, 410)), max_length=100, stride=20, cls_id=1, sep_id=2,
                            question_ids=[7, 8, 9])
    assert all(len(w.input_ids) <= 100 and w.record == 3 for w in ws)
    w = ws[1]
    assert list(w.input_ids[:5]) == [1, 7, 8, 9, 2] and w.input_ids[-1] == 2
    assert w.context_start == 5 and (w.token_type_ids[:5] == 0).all() and (w.token_type_ids[5:] == 1).all()
    assert w.input_ids[w.context_start] == 10 + w.token_start
    with pytest.raises(RecordError, match="no room"):
        windows_for_record(0, [5, 6], max_length=10, stride=0, cls_id=1, sep_id=2, question_ids=list(range(20)))
    with pytest.raises(RecordError, match="empty"):
        windows_for_record(0, [], max_length=10, stride=0, cls_id=1, sep_id=2)


def test_group_by_length_keeps_padded_lengths_equal():
    lengths = [100, 30, 250, 256, 17, 101, 129, 250]
    batches = group_by_length(lengths, batch_size=2, block_size=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 2
        assert len({-(-lengths[i] // 64) for i in b}) == 1
    capped = group_by_length([256] * 8, batch_size=8, block_size=64, max_tokens=600)
    assert all(len(b) == 2 for b in capped)


def test_collate_pads_right():
    ws = [windows_for_record(i, list(range(10, 10 + n)), max_length=64, stride=0, cls_id=1, sep_id=2)[0]
          for i, n in enumerate([5, 9])]
    batch = collate(ws, pad_id=0)
    assert batch["input_ids"].shape == (2, 11)
    assert batch["attention_mask"][0].tolist() == [1] * 7 + [0] * 4
    assert batch["input_ids"][0, 7:].tolist() == [0] * 4
