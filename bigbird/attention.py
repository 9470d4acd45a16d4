"""Attention kernels: pure functions of tensors, no modules, no state.

Shapes: ``B`` batch, ``H`` heads, ``L`` sequence, ``D`` head size, ``bs`` block size,
``M = n - 2`` middle query blocks, ``S = 5 + r`` key blocks per middle query block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bigbird.layout import SparseLayout

# The reference adds this to the scores of masked keys in block-sparse attention.
MASK_PENALTY = -10000.0


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, *,
            need_weights: bool, dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(q k^T / sqrt(D) + bias) v over any leading batch dims."""
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p), None
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if bias is not None:
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v), probs


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, bias: torch.Tensor | None,
                   dropout_p: float = 0.0, need_weights: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dense attention (``original_full``) through ``scaled_dot_product_attention``.

    Args:
        q: ``(B, H, Lq, D)``.
        k, v: ``(B, H, Lk, D)``.
        bias: Additive mask broadcastable to ``(B, H, Lq, Lk)`` or None.
        dropout_p: Attention-probability dropout (training only).
        need_weights: Also return the ``(B, H, Lq, Lk)`` probabilities.

    Returns:
        ``(B, H, Lq, D)`` context and the probabilities or None.
    """
    return _attend(q, k, v, bias, need_weights=need_weights, dropout_p=dropout_p)


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layout: SparseLayout,
                           key_mask: torch.Tensor | None, need_weights: bool = False
                           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """BigBird ITC block-sparse attention; memory linear in ``L`` unless ``need_weights``.

    Args:
        q, k, v: ``(B, H, L, D)`` with ``L = layout.num_blocks * layout.block_size``.
        layout: Key blocks per middle query block (see :mod:`bigbird.layout`).
        key_mask: ``(B, L)`` with 1 for real tokens and 0 for padding, or None. Padded query rows
            come out as zeros, as in the reference.
        need_weights: Also return the dense ``(B, H, L, L)`` probabilities (allocates ``L^2``).

    Returns:
        ``(B, H, L, D)`` context and the probabilities or None.
    """
    B, H, L, D = q.shape
    bs, n = layout.block_size, layout.num_blocks
    if L != n * bs:
        raise ValueError(f"sequence length {L} does not match the layout ({n} blocks of {bs})")
    M, S = n - 2, layout.blocks.shape[-1]
    dtype = q.dtype

    # Global query blocks 0 and n-1 see every key.
    q_glob = torch.cat([q[:, :, :bs], q[:, :, -bs:]], dim=2)  # (B, H, 2bs, D)
    glob_bias = None
    if key_mask is not None:
        glob_bias = ((1.0 - key_mask.to(dtype)) * MASK_PENALTY)[:, None, None, :]  # (B, 1, 1, L)
    out_glob, p_glob = _attend(q_glob, k, v, glob_bias, need_weights=need_weights)

    # Middle query blocks see S gathered key blocks each.
    heads = torch.arange(H, device=q.device)[:, None, None]
    kb = k.view(B, H, n, bs, D)
    vb = v.view(B, H, n, bs, D)
    k_mid = kb[:, heads, layout.blocks].reshape(B, H, M, S * bs, D)  # (B, H, M, S*bs, D)
    v_mid = vb[:, heads, layout.blocks].reshape(B, H, M, S * bs, D)
    allowed = layout.slot_valid[None, None, :, :, None].to(dtype)  # (1, 1, M, S, 1)
    if key_mask is not None:
        allowed = allowed * key_mask.to(dtype).view(B, n, bs)[:, layout.blocks]  # (B, H, M, S, bs)
    mid_bias = ((1.0 - allowed) * MASK_PENALTY).expand(-1, -1, -1, -1, bs).reshape(
        allowed.shape[0], allowed.shape[1], M, 1, S * bs)  # (B|1, H|1, M, 1, S*bs)
    q_mid = q[:, :, bs:-bs].reshape(B, H, M, bs, D)
    out_mid, p_mid = _attend(q_mid, k_mid, v_mid, mid_bias, need_weights=need_weights)

    out = torch.cat([out_glob[:, :, :bs], out_mid.reshape(B, H, M * bs, D), out_glob[:, :, bs:]], dim=2)
    if key_mask is not None:
        out = out * key_mask.to(dtype)[:, None, :, None]

    probs = None
    if need_weights:
        probs = _dense_probs(p_glob, p_mid, layout, B, H, L)
    return out, probs


def _dense_probs(p_glob: torch.Tensor, p_mid: torch.Tensor, layout: SparseLayout, B: int, H: int,
                 L: int) -> torch.Tensor:
    """Scatter block probabilities into a dense ``(B, H, L, L)`` matrix (only when asked for)."""
    bs, M = layout.block_size, layout.num_blocks - 2
    cols = (layout.blocks[..., None] * bs + torch.arange(bs, device=p_mid.device)).reshape(H, M, -1)
    mid = p_mid.new_zeros(B, H, M, bs, L)
    mid.scatter_add_(-1, cols[None, :, :, None, :].expand(B, H, M, bs, cols.shape[-1]), p_mid)
    return torch.cat([p_glob[:, :, :bs], mid.reshape(B, H, M * bs, L), p_glob[:, :, bs:]], dim=2)
