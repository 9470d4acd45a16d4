"""Our block-sparse layout as a FlexAttention ``BlockMask`` (``torch.nn.attention.flex_attention``).

The benchmarks compare our kernel with FlexAttention on the same pattern: query blocks 0 and ``n-1`` attend
to every key block, every middle query block to the key blocks its layout row lists. Every listed block is
attended whole, so all of them are "full" blocks: compiled kernels skip the ``mask_mod`` inside them (it
states the same pattern token by token, for uncompiled ``flex_attention``, which applies it densely and ignores
the block lists). Not expressible: a key
block listed twice in a row (transformers' eval-mode draw counts it twice; :func:`block_mask` refuses it) and
key padding (the benchmarks use none).
"""

from __future__ import annotations

import torch

from bigbird.layout import SparseLayout


def block_matrix(layout: SparseLayout) -> torch.Tensor:
    """``(H, n, n)`` bool: True where query block ``i`` attends to key block ``j``.

    Raises:
        ValueError: If a row lists a key block more than once (outside the structural duplicates that
            ``layout.slot_valid`` marks): a BlockMask cannot count a block twice.
    """
    H, M, S = layout.blocks.shape
    n = layout.num_blocks
    blocks = layout.blocks.cpu()
    valid = layout.slot_valid.cpu()[None].expand(H, M, S)
    count = torch.zeros(H, n, n, dtype=torch.int32)
    rows = torch.arange(1, n - 1)[None, :, None].expand(H, M, S)
    heads = torch.arange(H)[:, None, None].expand(H, M, S)
    count.index_put_((heads[valid], rows[valid], blocks[valid]), torch.ones((), dtype=torch.int32),
                     accumulate=True)
    if count.max() > 1:
        h, i, j = (int(x) for x in (count > 1).nonzero()[0])
        raise ValueError(f"head {h}, query block {i} lists key block {j} {int(count[h, i, j])} times; a "
                         f"FlexAttention BlockMask attends to each block once (use a layout drawn without "
                         f"zero_random)")
    dense = count > 0
    dense[:, 0] = dense[:, -1] = True
    return dense


def block_mask(layout: SparseLayout, device: torch.device | str = "cpu"):
    """The layout as a ``BlockMask`` of shape ``(1, H, L, L)`` with blocks of ``layout.block_size``."""
    from torch.nn.attention.flex_attention import BlockMask

    dense = block_matrix(layout).to(device)
    bs = layout.block_size
    num = dense.sum(-1, dtype=torch.int32)[None]  # (1, H, n)
    # The attended key blocks of each row first, in increasing order (a stable sort of "not attended").
    indices = torch.argsort((~dense).to(torch.int8), dim=-1, stable=True).to(torch.int32)[None]

    def mask_mod(b, h, q_idx, kv_idx):  # the same pattern token by token: compiled kernels never call it
        return dense[h, q_idx // bs, kv_idx // bs]  # inside full blocks; uncompiled flex_attention does

    return BlockMask.from_kv_blocks(torch.zeros_like(num), torch.zeros_like(indices), num, indices,
                                    BLOCK_SIZE=bs, mask_mod=mask_mod)


def flex_call(layout: SparseLayout, device: torch.device | str = "cpu", compile: bool = True):
    """``call(q, k, v) -> (B, H, L, D)``: FlexAttention over ``layout`` (compiled unless ``compile`` is False;
    uncompiled it materializes the scores, only for tests). PyTorch has no CPU backward for it."""
    from torch.nn.attention.flex_attention import flex_attention

    mask = block_mask(layout, device)
    fn = torch.compile(flex_attention, dynamic=False) if compile else flex_attention

    def call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return fn(q, k, v, block_mask=mask)

    return call
