"""Splits by a hash of the id (bigbird.splits), shared by the training job and the batch report."""

from __future__ import annotations

import numpy as np

from bigbird.splits import in_holdout, stable_hash


def test_holdout_is_stable_and_near_the_fraction():
    ids = [f"rec{i}" for i in range(5000)]
    held = in_holdout(ids, 0.1, seed=0)
    assert 0.08 < held.mean() < 0.12
    assert np.array_equal(held, in_holdout(list(reversed(ids)), 0.1, seed=0)[::-1])  # per id, not per position
    assert not np.array_equal(held, in_holdout(ids, 0.1, seed=1))
    assert stable_hash(["a"])[0] == stable_hash(["a"])[0] != stable_hash(["b"])[0]
