"""Block-sparse attention layout: which key blocks each query block attends to.

The layout is data, built once per (layer, sequence length) and cached, never drawn inside ``forward``.
It reproduces the ITC pattern of the reference (Google's BigBird, as ported by transformers):

* query blocks 0 and ``n-1`` are global: they attend to every key;
* every other query block ``i`` attends to the global key blocks 0 and ``n-1``, the sliding window
  ``i-1, i, i+1`` and ``num_random_blocks`` random blocks.

Random blocks are drawn with a private ``numpy.random.RandomState(seed)`` (seed = layer index) using the
reference's exact algorithm, so the indices equal transformers' training-mode draw without touching
numpy's or torch's global random state.
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
# The reference's random-block algorithms, with the global RNG replaced by a private RandomState.
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
    """Random blocks for the paper's fixed lengths (1024, 3072, 4096); the reference's
    ``_bigbird_block_rand_mask``, including its off-by-one quirks."""
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
    """The reference's ``_bigbird_block_rand_mask_with_head`` (global blocks 1 top/bottom/left/right)."""
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


@functools.lru_cache(maxsize=256)
def random_blocks(*, seed: int, seq_len: int, block_size: int, num_random_blocks: int, num_heads: int,
                  max_seq_len: int) -> np.ndarray:
    """Random key blocks, ``(num_heads, n-2, num_random_blocks)``, identical to transformers'
    training-mode draw for layer ``seed``. Cached: the result is read-only."""
    if seq_len % block_size:
        raise ValueError(f"sequence length {seq_len} is not a multiple of block_size {block_size}")
    rng = np.random.RandomState(seed)
    num_blocks = seq_len // block_size
    if seq_len in (1024, 3072, 4096):  # the paper's fixed plans
        out = np.stack([
            _block_rand_mask(rng, max_seq_len, block_size, num_random_blocks, last_idx=1024)[: num_blocks - 2]
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
                max_seq_len: int, zero_random: bool) -> SparseLayout:
    n = seq_len // block_size
    if zero_random:
        # transformers in eval mode points every random slot at block 0.
        rand = np.zeros((num_heads, n - 2, num_random_blocks), dtype=np.int64)
    else:
        rand = random_blocks(seed=seed, seq_len=seq_len, block_size=block_size,
                             num_random_blocks=num_random_blocks, num_heads=num_heads, max_seq_len=max_seq_len)
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
                  max_seq_len: int, zero_random: bool = False,
                  device: torch.device | str = "cpu") -> SparseLayout:
    """The layout of one layer for one (padded) sequence length, cached per device.

    Args:
        seed: The layer index (the reference seeds each layer's draw with it).
        seq_len: Padded sequence length, a multiple of ``block_size`` with at least 5 blocks.
        block_size: Tokens per block.
        num_random_blocks: Random key blocks per middle query block (0 allowed).
        num_heads: Attention heads; each head has its own random blocks.
        max_seq_len: ``max_position_embeddings`` (the paper plans draw over it).
        zero_random: Point random slots at block 0, as transformers does in eval mode.
        device: Where the index tensors live.

    Returns:
        The cached :class:`SparseLayout`.

    Raises:
        ValueError: If ``seq_len`` is not a multiple of ``block_size`` or has fewer than 5 blocks.
    """
    if seq_len % block_size:
        raise ValueError(f"sequence length {seq_len} is not a multiple of block_size {block_size}")
    if seq_len // block_size < 5:
        raise ValueError(f"block-sparse attention needs at least 5 blocks, got {seq_len // block_size}")
    key = (seed, seq_len, block_size, num_random_blocks, num_heads, max_seq_len, zero_random)
    return _layout_constant(torch.device(device), key)
