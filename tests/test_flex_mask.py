"""The FlexAttention BlockMask the benchmarks build from our layout (benchmarks/flex_mask.py), on CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from benchmarks.flex_mask import block_mask, block_matrix, flex_call
from bigbird.attention import block_sparse_attention
from bigbird.layout import sparse_layout


def _layout(L: int, bs: int, r: int, heads: int, **kw):
    return sparse_layout(seed=1, seq_len=L, block_size=bs, num_random_blocks=r, num_heads=heads, max_seq_len=1024,
                         **kw)


@pytest.mark.parametrize("L,bs,r", [(256, 16, 2), (96, 8, 1), (40, 4, 0)])
def test_block_mask_is_the_layout(L, bs, r):
    layout = _layout(L, bs, r, heads=3)
    dense = layout.dense_mask()  # (H, L, L) token mask, built independently
    assert torch.equal(block_matrix(layout), dense[:, ::bs, ::bs])
    mask = block_mask(layout)
    assert mask.shape == (1, 3, L, L) and mask.BLOCK_SIZE == (bs, bs)
    assert torch.equal(mask.to_dense()[0].bool(), dense[:, ::bs, ::bs])  # the block lists
    q, kv = torch.arange(L)[:, None], torch.arange(L)[None, :]
    for h in range(3):  # the token-level mask_mod says the same
        assert torch.equal(mask.mask_mod(0, h, q, kv), dense[h])


def test_flex_attention_with_the_block_mask_equals_our_kernel():
    layout = _layout(256, 16, 2, heads=2)
    q, k, v = (torch.randn(1, 2, 256, 8, generator=torch.Generator().manual_seed(i)) for i in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile"
        out = flex_call(layout, compile=False)(q, k, v)
    ref, _ = block_sparse_attention(q, k, v, layout=layout, key_mask=None)
    assert (out - ref).abs().max() <= 1e-5


def test_block_mask_refuses_a_block_listed_twice():
    layout = _layout(96, 8, 2, heads=2, zero_random=True)  # every random slot points at block 0 again
    with pytest.raises(ValueError, match="lists key block 0 3 times"):
        block_matrix(layout)


@pytest.mark.slow
def test_compiled_flex_attention_uses_the_block_lists():
    layout = _layout(256, 16, 2, heads=2)
    q, k, v = (torch.randn(1, 2, 256, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    out = flex_call(layout)(q, k, v)  # compiled kernels skip mask_mod inside full blocks
    ref, _ = block_sparse_attention(q, k, v, layout=layout, key_mask=None)
    assert (out - ref).abs().max() <= 1e-5
