"""Block-sparse attention layout: which key blocks each query block attends to.

The layout is data, built once per (layer, sequence length) and cached, never drawn inside ``forward``.
It is the ITC pattern of the original BigBird (google-research/bigbird, ``bigbird/core/attention.py``):

* query blocks 0 and ``n-1`` are global: they attend to every key;
* every other query block ``i`` attends to the global key blocks 0 and ``n-1``, the sliding window
  ``i-1, i, i+1`` and ``num_random_blocks`` random blocks.

Random blocks are drawn once per layer with a private ``numpy.random.RandomState(layer index)``; numpy's
and torch's global random state are never touched. Two draws (``plan``):

* ``"original"`` (the default, what the released checkpoints were trained with): at the paper's lengths
  1024, 2048, 3072 and 4096 the original draws its "paper plan" over 4,096 positions with random blocks
  among the first 1,024 tokens and keeps the first ``n-2`` rows, whatever ``max_position_embeddings`` is;
  at every other length it draws the per-head plan. Checked against the original's own draws
  (``shared/reference/original_random_blocks.json``) in ``tests/bigbird/test_layout.py``.
* ``"transformers"``: transformers' training-mode draw. transformers' port lists only 1024, 3072 and 4096 as
  paper lengths and draws over ``max_position_embeddings`` positions, so it deviates from the original at
  2,048 tokens (it draws the per-head plan there) and, at the paper lengths, whenever
  ``max_position_embeddings`` is not 4096. Everywhere else both draws are identical. The model always uses
  the original draw; ``random_attention_eval="transformers"`` only reproduces transformers' eval mode, which
  points every random slot at block 0 (``zero_random``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

# Slot order for a middle query block: global first, window, global last, then random blocks.
NUM_FIXED_SLOTS = 5


@dataclass(frozen=True)
class SparseLayout:
    """Key blocks per query block for the middle query blocks ``1 .. n-2``.

    Attributes:
        block_size: Tokens per block.
        num_blocks: Blocks in the (padded) sequence, ``n``.
        blocks: ``(num_heads, n-2, 5 + r)`` long tensor of key block indices.
        slot_valid: ``(n-2, 5 + r)`` bool tensor; False marks a structural duplicate (the window of
            block 1 contains global block 0, the window of block ``n-2`` contains block ``n-1``).
    """

    block_size: int
    num_blocks: int
    blocks: torch.Tensor
    slot_valid: torch.Tensor

    def to(self, device: torch.device | str) -> SparseLayout:
        return SparseLayout(self.block_size, self.num_blocks, self.blocks.to(device), self.slot_valid.to(device))

    def dense_mask(self) -> torch.Tensor:
        """``(num_heads, L, L)`` bool mask equal to this layout (True = attended). For tests only."""
        num_heads = self.blocks.shape[0]
        n, bs = self.num_blocks, self.block_size
        block_mask = torch.zeros(num_heads, n, n, dtype=torch.bool)
        block_mask[:, 0, :] = True
        block_mask[:, -1, :] = True
        for h in range(num_heads):
            for i in range(n - 2):
                for s in range(self.blocks.shape[2]):
                    if self.slot_valid[i, s]:
                        block_mask[h, i + 1, self.blocks[h, i, s]] = True
        return block_mask.repeat_interleave(bs, dim=1).repeat_interleave(bs, dim=2)


# ---------------------------------------------------------------------------------------------------
# The original's random-block algorithms (as ported by transformers), drawing from a private RandomState.
# ---------------------------------------------------------------------------------------------------


def _rand_attn_plan(seq_len: int, block_size: int, num_rand: int) -> tuple[list[int], list[int]]:
    num_blocks = seq_len // block_size
    if (2 * num_rand + 5) < num_blocks:
        return [(2 * num_rand + 5) * block_size, seq_len], [num_rand, 0]
    if (num_rand + 5) < num_blocks:
        return [(num_rand + 5) * block_size, seq_len], [num_rand // 2, num_rand - num_rand // 2]
    return [seq_len], [num_rand]


def _block_rand_mask(rng: np.random.RandomState, seq_len: int, block_size: int, num_rand: int,
                     last_idx: int) -> np.ndarray:
    """Random blocks of the paper plan (the original's ``bigbird_block_rand_mask``), including its
    off-by-one quirks: rows ``n-3`` and ``n-2`` draw from every middle block up to ``last``."""
    num_blocks = seq_len // block_size
    rand_attn = np.zeros((num_blocks - 2, num_rand), dtype=np.int64)
    middle_seq = np.arange(1, num_blocks - 1, dtype=np.int32)
    last = num_blocks - 1
    if last_idx > 2 * block_size:
        last = last_idx // block_size - 1
    for i in range(1, num_blocks - 1):
        start, end = i - 2, i
        if i == 1:
            choices = middle_seq[2:last]
        elif i == 2:
            choices = middle_seq[3:last]
        elif i in (num_blocks - 3, num_blocks - 2):
            choices = middle_seq[:last]
        elif start > last:
            choices = middle_seq[:last]
        elif end + 1 == last:
            choices = middle_seq[:start]
        else:
            choices = np.concatenate((middle_seq[:start], middle_seq[end + 1 : last]))
        rand_attn[i - 1, :] = rng.permutation(choices)[:num_rand]
    return rand_attn


def _single_block_row(rng: np.random.RandomState, block_id: int, to_start: int, to_end: int,
                      num_rand: int) -> np.ndarray:
    perm = rng.permutation(np.arange(to_start, to_end, dtype=np.int32))
    illegal = set(range(block_id - 1, block_id + 2))
    illegal.add(0)
    illegal.add(to_end - 1)
    if block_id == 1:
        illegal.add(to_end - 2)
    if block_id == to_end - 2:
        illegal.add(1)
    selected = [b for b in perm if b not in illegal][:num_rand]
    return np.array(selected, dtype=np.int64)


def _block_rand_mask_with_head(rng: np.random.RandomState, seq_len: int, block_size: int, num_heads: int,
                               plan_from_length: list[int], plan_num_rand: list[int]) -> np.ndarray:
    """The per-head plan (the original's ``bigbird_block_rand_mask_with_head``, one global block on each
    side)."""
    num_blocks = seq_len // block_size
    plan_block_length = [p // block_size for p in plan_from_length]
    max_plan_idx = plan_from_length.index(seq_len)
    total = int(np.sum(plan_num_rand[: max_plan_idx + 1]))
    rand_attn = np.zeros((num_heads, num_blocks, total), dtype=np.int64)
    for plan_idx in range(max_plan_idx + 1):
        rnd_r_cnt = 0
        if plan_idx > 0:
            if plan_num_rand[plan_idx] > 0:
                rnd_r_cnt = int(np.sum(plan_num_rand[:plan_idx]))
                curr_r_cnt = int(np.sum(plan_num_rand[: plan_idx + 1]))
                for row in range(1, plan_block_length[plan_idx - 1]):
                    for h in range(num_heads):
                        rand_attn[h, row, rnd_r_cnt:curr_r_cnt] = _single_block_row(
                            rng, row, plan_block_length[plan_idx - 1], plan_block_length[plan_idx],
                            plan_num_rand[plan_idx])
            for pl_id in range(plan_idx):
                if plan_num_rand[pl_id] == 0:
                    continue
                for row in range(plan_block_length[plan_idx - 1], plan_block_length[plan_idx]):
                    rnd_r_cnt = 0
                    to_start = 0
                    if pl_id > 0:
                        rnd_r_cnt = int(np.sum(plan_num_rand[:pl_id]))
                        to_start = plan_block_length[pl_id - 1]
                    curr_r_cnt = int(np.sum(plan_num_rand[: pl_id + 1]))
                    for h in range(num_heads):
                        rand_attn[h, row, rnd_r_cnt:curr_r_cnt] = _single_block_row(
                            rng, row, to_start, plan_block_length[pl_id], plan_num_rand[pl_id])
        if plan_num_rand[plan_idx] == 0:
            continue
        curr_r_cnt = int(np.sum(plan_num_rand[: plan_idx + 1]))
        from_start, to_start = 1, 0
        if plan_idx > 0:
            rnd_r_cnt = int(np.sum(plan_num_rand[:plan_idx]))
            from_start = to_start = plan_block_length[plan_idx - 1]
        for row in range(from_start, plan_block_length[plan_idx]):
            for h in range(num_heads):
                rand_attn[h, row, rnd_r_cnt:curr_r_cnt] = _single_block_row(
                    rng, row, to_start, plan_block_length[plan_idx], plan_num_rand[plan_idx])
    return rand_attn[:, 1 : num_blocks - 1, :]


PLANS = ("original", "transformers")
# The original draws its paper plans over this many positions (its MAX_SEQ_LEN), at these lengths.
ORIGINAL_PLAN_POSITIONS = 4096
PAPER_LENGTHS = {"original": (1024, 2048, 3072, 4096), "transformers": (1024, 3072, 4096)}


@functools.lru_cache(maxsize=256)
def random_blocks(*, seed: int, seq_len: int, block_size: int, num_random_blocks: int, num_heads: int,
                  max_seq_len: int | None = None, plan: str = "original") -> np.ndarray:
    """Random key blocks of one layer, ``(num_heads, n-2, num_random_blocks)``. Cached: read-only.

    Args:
        seed: The layer index.
        seq_len: Padded sequence length, a multiple of ``block_size``.
        block_size: Tokens per block.
        num_random_blocks: Random blocks per middle query block.
        num_heads: Attention heads (each has its own draw).
        max_seq_len: ``max_position_embeddings``; only the ``"transformers"`` plan reads it (the original
            always draws its paper plans over 4,096 positions).
        plan: ``"original"`` (google-research/bigbird) or ``"transformers"`` (its training-mode draw); see the
            module docstring for where they differ.

    Raises:
        ValueError: On an unknown ``plan``, a length that is not a multiple of ``block_size``, or a
            ``"transformers"`` paper-plan length without a ``max_seq_len`` that covers it.
    """
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
    if seq_len % block_size:
        raise ValueError(f"sequence length {seq_len} is not a multiple of block_size {block_size}")
    rng = np.random.RandomState(seed)
    num_blocks = seq_len // block_size
    if seq_len in PAPER_LENGTHS[plan]:
        positions = ORIGINAL_PLAN_POSITIONS if plan == "original" else max_seq_len
        if positions is None or positions < seq_len:
            raise ValueError(f"the transformers plan at length {seq_len} needs max_seq_len >= {seq_len}, "
                             f"got {max_seq_len!r}")
        out = np.stack([
            _block_rand_mask(rng, positions, block_size, num_random_blocks, last_idx=1024)[: num_blocks - 2]
            for _ in range(num_heads)
        ])
    else:
        plan_len, plan_num = _rand_attn_plan(seq_len, block_size, num_random_blocks)
        out = _block_rand_mask_with_head(rng, seq_len, block_size, num_heads, plan_len, plan_num)
    out = out.astype(np.int64)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=512)
def _layout_cpu(seed: int, seq_len: int, block_size: int, num_random_blocks: int, num_heads: int,
                max_seq_len: int | None, zero_random: bool, plan: str) -> SparseLayout:
    n = seq_len // block_size
    if zero_random:
        # transformers in eval mode points every random slot at block 0.
        rand = np.zeros((num_heads, n - 2, num_random_blocks), dtype=np.int64)
    else:
        rand = random_blocks(seed=seed, seq_len=seq_len, block_size=block_size,
                             num_random_blocks=num_random_blocks, num_heads=num_heads, max_seq_len=max_seq_len,
                             plan=plan)
    i = np.arange(1, n - 1)
    fixed = np.stack([np.zeros_like(i), i - 1, i, i + 1, np.full_like(i, n - 1)], axis=-1)  # (n-2, 5)
    blocks = np.concatenate([np.broadcast_to(fixed, (num_heads, n - 2, NUM_FIXED_SLOTS)), rand], axis=-1)
    valid = np.ones((n - 2, NUM_FIXED_SLOTS + num_random_blocks), dtype=bool)
    valid[0, 1] = False  # block 1's left neighbour is global block 0
    valid[-1, 3] = False  # block n-2's right neighbour is global block n-1
    return SparseLayout(block_size, n, torch.from_numpy(np.ascontiguousarray(blocks)), torch.from_numpy(valid))


@functools.lru_cache(maxsize=512)
def _layout_on(device: torch.device, key: tuple) -> SparseLayout:
    return _layout_cpu(*key).to(device)


@torch.compiler.assume_constant_result
def _layout_constant(device: torch.device, key: tuple) -> SparseLayout:
    # Under torch.compile the layout is a constant of the graph (it depends only on Python ints), so the
    # numpy draw never runs inside a traced region and causes no graph break.
    return _layout_on(device, key)


def sparse_layout(*, seed: int, seq_len: int, block_size: int, num_random_blocks: int, num_heads: int,
                  max_seq_len: int | None = None, zero_random: bool = False, plan: str = "original",
                  device: torch.device | str = "cpu") -> SparseLayout:
    """The layout of one layer for one (padded) sequence length, cached per device.

    Args:
        seed: The layer index (the reference seeds each layer's draw with it).
        seq_len: Padded sequence length, a multiple of ``block_size`` with at least 5 blocks.
        block_size: Tokens per block.
        num_random_blocks: Random key blocks per middle query block (0 allowed).
        num_heads: Attention heads; each head has its own random blocks.
        max_seq_len: ``max_position_embeddings``; read only by ``plan="transformers"``.
        zero_random: Point random slots at block 0, as transformers does in eval mode.
        plan: Whose random draw: ``"original"`` (google-research/bigbird, the default) or ``"transformers"``
            (its training-mode draw); see :func:`random_blocks`.
        device: Where the index tensors live.

    Returns:
        The cached :class:`SparseLayout`.

    Raises:
        ValueError: If ``seq_len`` is not a multiple of ``block_size`` or has fewer than 5 blocks, or on an
            unknown ``plan``.
    """
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
    if seq_len % block_size:
        raise ValueError(f"sequence length {seq_len} is not a multiple of block_size {block_size}")
    if seq_len // block_size < 5:
        raise ValueError(f"block-sparse attention needs at least 5 blocks, got {seq_len // block_size}")
    if zero_random:
        plan = "original"  # no draw: one cache entry
    if zero_random or plan == "original":
        max_seq_len = None  # not read: one cache entry whatever the model's max_position_embeddings
    key = (seed, seq_len, block_size, num_random_blocks, num_heads, max_seq_len, zero_random, plan)
    return _layout_constant(torch.device(device), key)
