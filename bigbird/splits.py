"""Train / held-out splits by a hash of each record's id: the same in every process, run and Python version.

The training job (``jobs``) holds records out with :func:`in_holdout`, and the report on a batch job's
output (``corpora.report``) scores the same held-out records with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def stable_hash(keys: Sequence[str], seed: int = 0) -> np.ndarray:
    """``(n,)`` uint64: a hash of each key that is the same in every process and Python version."""
    out = np.empty(len(keys), dtype=np.uint64)
    for i, key in enumerate(keys):
        digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "little")
    return out


def in_holdout(ids: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """``(n,)`` bool: records held out for evaluation, chosen by a hash of their id (stable across runs)."""
    return stable_hash([str(i) for i in ids], seed).astype(np.float64) / 2.0**64 < fraction
