"""Attention entry points: pure functions of tensors, no modules, no state.

The kernel choice for block-sparse attention lives in :func:`select_kernel`; the kernels themselves are in
:mod:`bigbird.kernels`. Shapes: ``B`` batch, ``H`` heads, ``L`` sequence, ``D`` head size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from bigbird.kernels import gather
from bigbird.kernels.common import MASK_PENALTY
from bigbird.layout import SparseLayout

__all__ = ["MASK_PENALTY", "KERNELS", "block_sparse_attention", "full_attention", "select_kernel"]


def _cpu_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layout: SparseLayout,
               key_mask: torch.Tensor | None) -> torch.Tensor:
    from bigbird.kernels.cpu_flash import block_sparse_cpu  # registers the custom ops on first use

    # Contiguous here, in the autograd graph, so that the op's saved inputs need no second copy in backward.
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return block_sparse_cpu(q, k, v, layout.blocks, layout.slot_valid, key_mask)[0]


# name -> kernel(q, k, v, *, layout, key_mask) -> (B, H, L, D) context.
KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "cpu_flash": _cpu_flash,
    "sdpa_gather": gather.sdpa_gather,
}


def select_kernel(device: torch.device, dtype: torch.dtype) -> str:
    """The block-sparse kernel for a call: a name in :data:`KERNELS`.

    Measured (benchmarks/README.md): on CPU the flash kernel (three key sets merged by log-sum-exp, the
    window read in place) beats a single gather + SDPA forward (which page-faults ~100 MB per layer) and
    backward (it saves the gathers), in float32 and bfloat16; float16 has no fast CPU path in PyTorch (both kernels are ~5x
    slower than in float32), where the tiled kernel still has the faster forward and the smaller memory. Elsewhere (CUDA) ``scaled_dot_product_attention`` on the gathered
    blocks dispatches to the fused GPU kernels and has their backward. Both kernels have a backward, so the
    choice does not depend on whether the call needs one.

    Args:
        device: Where ``q``, ``k``, ``v`` live.
        dtype: Their dtype.
    """
    if device.type == "cpu" and dtype in (torch.float32, torch.bfloat16, torch.float16):
        return "cpu_flash"
    return "sdpa_gather"


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
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p), None
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if bias is not None:
        scores = scores + bias
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v), probs


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

    Raises:
        ValueError: If the shapes do not match the layout or each other.
    """
    B, H, L, D = q.shape
    bs, n = layout.block_size, layout.num_blocks
    if L != n * bs:
        raise ValueError(f"sequence length {L} does not match the layout ({n} blocks of {bs})")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must have the same shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if layout.blocks.shape[0] != H:
        raise ValueError(f"the layout has {layout.blocks.shape[0]} heads, q has {H}")
    if key_mask is not None and tuple(key_mask.shape) != (B, L):
        raise ValueError(f"key_mask must have shape {(B, L)}, got {tuple(key_mask.shape)}")
    if need_weights:
        return gather.explicit(q, k, v, layout=layout, key_mask=key_mask)
    kernel = KERNELS[select_kernel(q.device, q.dtype)]
    return kernel(q, k, v, layout=layout, key_mask=key_mask), None
