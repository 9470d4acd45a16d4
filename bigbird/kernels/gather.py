"""Device-generic block-sparse kernels: gather each middle query block's keys, then attend densely.

``sdpa_gather`` runs on any device through ``scaled_dot_product_attention`` (CUDA's fused kernels, the
CPU flash kernel) with plain autograd. ``explicit`` spells out the softmax to return the probabilities
and is used only when attention weights are requested.

Shapes: ``B`` batch, ``H`` heads, ``L`` sequence, ``D`` head size, ``bs`` block size, ``n`` blocks,
``M = n - 2`` middle query blocks, ``S = 5 + r`` key blocks per middle query block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bigbird.kernels.common import flat_block_index, gather_blocks, global_bias, global_rows, middle_bias
from bigbird.layout import SparseLayout


def _gathered(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: SparseLayout,
              key_mask: torch.Tensor | None, dtype: torch.dtype):
    B, H, L, D = q.shape
    bs, n = layout.block_size, layout.num_blocks
    index = flat_block_index(layout.blocks, B)  # (B*H, M, S)
    k_mid = gather_blocks(k.reshape(B * H * n, bs, D), index, bs)  # (B*H, M, S*bs, D)
    v_mid = gather_blocks(v.reshape(B * H * n, bs, D), index, bs)
    q_mid = q.reshape(B * H, n, bs, D)[:, 1:-1]  # (B*H, M, bs, D)
    bias = middle_bias(layout.blocks, layout.slot_valid, key_mask, B, bs, dtype)  # (B*H|1, M, 1, S*bs)
    return q_mid, k_mid, v_mid, bias


def _assemble(out_glob: torch.Tensor, out_mid: torch.Tensor, key_mask: torch.Tensor | None,
              block_size: int) -> torch.Tensor:
    B, H = out_glob.shape[:2]
    out = torch.cat([out_glob[:, :, :block_size], out_mid.reshape(B, H, -1, out_mid.shape[-1]),
                     out_glob[:, :, block_size:]], dim=2)  # (B, H, L, D)
    if key_mask is not None:
        out = out * key_mask.to(out.dtype)[:, None, :, None]  # padded query rows are zeros, as in the reference
    return out


def sdpa_gather(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layout: SparseLayout,
                key_mask: torch.Tensor | None) -> torch.Tensor:
    """Block-sparse attention as two ``scaled_dot_product_attention`` calls; any device, any dtype.

    Memory: the gathered keys and values, ``2 * B * H * M * S * bs * D`` elements (kept for backward).

    Returns:
        ``(B, H, L, D)``.
    """
    bs = layout.block_size
    out_glob = F.scaled_dot_product_attention(global_rows(q, bs), k, v,
                                              attn_mask=global_bias(key_mask, q.dtype))  # (B, H, 2bs, D)
    q_mid, k_mid, v_mid, bias = _gathered(q, k, v, layout, key_mask, q.dtype)
    out_mid = F.scaled_dot_product_attention(q_mid, k_mid, v_mid, attn_mask=bias)  # (B*H, M, bs, D)
    return _assemble(out_glob, out_mid, key_mask, bs)


def _softmax_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if bias is not None:
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v), probs


def explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layout: SparseLayout,
             key_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-sparse attention with the probabilities scattered into a dense matrix (allocates ``L^2``).

    Returns:
        ``(B, H, L, D)`` context and ``(B, H, L, L)`` probabilities.
    """
    B, H, L, D = q.shape
    bs = layout.block_size
    out_glob, p_glob = _softmax_attend(global_rows(q, bs), k, v, global_bias(key_mask, q.dtype))
    q_mid, k_mid, v_mid, bias = _gathered(q, k, v, layout, key_mask, q.dtype)
    out_mid, p_mid = _softmax_attend(q_mid, k_mid, v_mid, bias)  # p_mid: (B*H, M, bs, S*bs)
    out = _assemble(out_glob, out_mid, key_mask, bs)
    return out, _dense_probs(p_glob, p_mid.view(B, H, *p_mid.shape[1:]), layout, L)


def _dense_probs(p_glob: torch.Tensor, p_mid: torch.Tensor, layout: SparseLayout, L: int) -> torch.Tensor:
    """Scatter block probabilities into a dense ``(B, H, L, L)`` matrix (only when asked for)."""
    B, H = p_glob.shape[:2]
    bs, M = layout.block_size, layout.num_blocks - 2
    cols = (layout.blocks[..., None] * bs + torch.arange(bs, device=p_mid.device)).reshape(H, M, -1)
    mid = p_mid.new_zeros(B, H, M, bs, L)
    # scatter_add: a block listed twice (eval-mode random blocks of the reference) adds up.
    mid.scatter_add_(-1, cols[None, :, :, None, :].expand(B, H, M, bs, cols.shape[-1]), p_mid)
    return torch.cat([p_glob[:, :, :bs], mid.reshape(B, H, M * bs, L), p_glob[:, :, bs:]], dim=2)
