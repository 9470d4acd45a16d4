"""Index and mask helpers shared by the block-sparse kernels.

Shapes: ``B`` batch, ``H`` heads, ``L`` sequence, ``D`` head size, ``bs`` block size, ``n`` blocks,
``M = n - 2`` middle query blocks, ``S = 5 + r`` key blocks per middle query block.
"""

from __future__ import annotations

import torch

# The reference adds this to the scores of masked keys in block-sparse attention.
MASK_PENALTY = -10000.0


def flat_block_index(blocks: torch.Tensor, batch: int) -> torch.Tensor:
    """Key blocks of every middle query block as rows of ``k.reshape(B * H * n, bs, D)``.

    Args:
        blocks: ``(H, M, S)`` key block indices of one layer's layout.
        batch: ``B``.

    Returns:
        ``(B * H, M, S)`` long tensor.
    """
    H, M, _ = blocks.shape
    n = M + 2
    base = torch.arange(batch * H, device=blocks.device).view(batch, H, 1, 1) * n  # (B, H, 1, 1)
    return (blocks.unsqueeze(0) + base).view(batch * H, M, -1)


def middle_bias(blocks: torch.Tensor, slot_valid: torch.Tensor, key_mask: torch.Tensor | None, batch: int,
                block_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive bias of the gathered keys of each middle query block (one row per query block).

    Masks the structural duplicate slots and, with ``key_mask``, padded keys; like the reference it
    adds :data:`MASK_PENALTY`, not ``-inf``, so a fully padded row stays finite.

    Returns:
        ``(B * H, M, 1, S * bs)``, or ``(1, M, 1, S * bs)`` without ``key_mask``.
    """
    H, M, S = blocks.shape
    allowed = slot_valid.to(dtype)[:, :, None]  # (M, S, 1)
    if key_mask is None:
        allowed = allowed.expand(M, S, block_size).reshape(1, M, 1, S * block_size)
    else:
        keep = key_mask.to(dtype).view(batch, M + 2, block_size)  # (B, n, bs)
        allowed = (allowed * keep[:, blocks]).view(batch * H, M, 1, S * block_size)  # (B*H, M, 1, S*bs)
    return (1.0 - allowed) * MASK_PENALTY


def global_bias(key_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``(B, 1, 1, L)`` additive bias of the padded keys for the two global query blocks, or None."""
    if key_mask is None:
        return None
    return ((1.0 - key_mask.to(dtype)) * MASK_PENALTY)[:, None, None, :]


def gather_blocks(x: torch.Tensor, index: torch.Tensor, block_size: int) -> torch.Tensor:
    """Copy the key (or value) blocks named by ``index`` next to each other.

    Args:
        x: ``(B * H * n, bs, D)`` contiguous blocks.
        index: ``(G, m, S)`` rows of ``x``.

    Returns:
        ``(G, m, S * bs, D)``.
    """
    G, m, S = index.shape
    return x.index_select(0, index.reshape(-1)).view(G, m, S * block_size, x.shape[-1])


def global_rows(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """The first and last query blocks side by side: ``(B, H, L, D) -> (B, H, 2 bs, D)``."""
    return torch.cat([x[:, :, :block_size], x[:, :, -block_size:]], dim=2)
