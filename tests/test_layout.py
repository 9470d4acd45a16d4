"""The random blocks and the sparse layout are data, equal to the reference's."""

from __future__ import annotations

import numpy as np
import pytest
import transformers
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

from bigbird.layout import random_blocks, sparse_layout


def _reference_draw(seed: int, seq_len: int, block_size: int, r: int, heads: int, max_len: int) -> np.ndarray:
    config = transformers.BigBirdConfig(hidden_size=heads * 4, num_attention_heads=heads, block_size=block_size,
                                        num_random_blocks=r, max_position_embeddings=max_len)
    attn = BigBirdBlockSparseAttention(config, seed=seed).train()
    np.random.seed(seed)
    if seq_len in (1024, 3072, 4096):
        draw = [attn._bigbird_block_rand_mask(max_len, max_len, block_size, block_size, r, last_idx=1024)
                [: seq_len // block_size - 2] for _ in range(heads)]
    else:
        plan_len, plan_num = attn._get_rand_attn_plan(seq_len, block_size, r)
        draw = attn._bigbird_block_rand_mask_with_head(seq_len, seq_len, block_size, block_size, heads,
                                                       plan_len, plan_num)
    return np.stack(draw)


@pytest.mark.parametrize("block_size,r", [(64, 3), (16, 2), (8, 1)])
def test_random_blocks_equal_transformers_training_draw_for_every_length(block_size, r):
    max_len = 4096
    lengths = sorted({block_size * n for n in range(5 + 2 * r + 1, max_len // block_size + 1, 3)}
                     | {1024, 3072, 4096})
    for seq_len in lengths:
        for seed in (0, 5):
            ours = random_blocks(seed=seed, seq_len=seq_len, block_size=block_size, num_random_blocks=r,
                                 num_heads=3, max_seq_len=max_len)
            ref = _reference_draw(seed, seq_len, block_size, r, 3, max_len)
            assert np.array_equal(ours, ref), (seq_len, seed)


def test_random_blocks_leave_global_numpy_state_alone():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    random_blocks.cache_clear()
    random_blocks(seed=3, seq_len=768, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096)
    assert np.random.rand() == expected


def test_layout_is_cached_read_only_and_excludes_structural_duplicates():
    a = sparse_layout(seed=1, seq_len=768, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096)
    b = sparse_layout(seed=1, seq_len=768, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096)
    assert a is b
    assert a.blocks.shape == (2, 10, 8)
    dense = a.dense_mask()
    assert dense.shape == (2, 768, 768)
    assert dense[:, :64].all() and dense[:, -64:].all() and dense[:, :, :64].all() and dense[:, :, -64:].all()
    # A middle query block sees 2 global + 3 window + 3 random blocks, all different.
    for h in range(2):
        for i in range(1, 11):
            seen = set(a.blocks[h, i - 1][a.slot_valid[i - 1]].tolist())
            assert len(seen) == a.slot_valid[i - 1].sum().item() == (7 if i in (1, 10) else 8)
            assert {0, i - 1, i, i + 1, 11} <= seen
    with pytest.raises(ValueError, match="not a multiple"):
        sparse_layout(seed=0, seq_len=650, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096)


def test_zero_random_points_at_block_zero_like_transformers_eval():
    z = sparse_layout(seed=0, seq_len=768, block_size=64, num_random_blocks=3, num_heads=2, max_seq_len=4096,
                      zero_random=True)
    assert (z.blocks[:, :, 5:] == 0).all()
