"""The CPU block-sparse kernel: PyTorch's fused CPU flash-attention, fed tile by tile.

Why this shape (measured on 2 Zen 4 cores, 12 heads x 64, block 64, 4,096 tokens; see benchmarks/):

* The fused CPU flash kernel (``aten::_scaled_dot_product_flash_attention_for_cpu``) runs the
  64 x (8 * 64) problems of the middle query blocks at ~110 GFLOP/s; spelled-out matmul + softmax reaches
  half of that, and a compiled FlexAttention ~80 GFLOP/s forward with no CPU backward at all.
* Gathering the ``S`` key blocks of every query block is cheap *if* the destination is warm: a fresh
  ~100 MB gather pays more in page faults than the attention itself. So the middle query blocks are
  processed in tiles of a few MB (:data:`TILE_BYTES_PER_THREAD`), which also keeps them in cache.
* The backward recomputes the gathers instead of saving them (only ``q, k, v``, the output and the
  log-sum-exp are kept: memory linear in ``L``) and calls the fused CPU flash backward per tile; the
  gradients of the gathered blocks are summed back (see :func:`_accumulate`).

Both passes are ``torch.library`` custom ops, so ``torch.compile`` sees one opaque call per layer (no
graph breaks, no recompiles as the tiling changes). Registering them is this module's only effect.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bigbird.kernels.common import flat_block_index, gather_blocks, global_bias, global_rows, middle_bias
from bigbird.layout import NUM_FIXED_SLOTS

# Gathered keys + values per tile and per thread: small enough to stay in cache and in glibc's heap.
TILE_BYTES_PER_THREAD = 2 << 20
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _tiles(groups: int, rows: int, row_bytes: int) -> Iterator[tuple[slice, slice]]:
    """Tiles of the ``(B*H, M)`` grid of middle query blocks with about the byte budget each."""
    budget = TILE_BYTES_PER_THREAD * max(1, torch.get_num_threads())
    if rows * row_bytes <= budget:
        g_step, r_step = max(1, budget // (rows * row_bytes)), rows
    else:
        g_step, r_step = 1, max(1, budget // row_bytes)
    for g in range(0, groups, g_step):
        for r in range(0, rows, r_step):
            yield slice(g, g + g_step), slice(r, r + r_step)


def _tile_bias(bias: torch.Tensor, g: slice, r: slice, groups: int) -> torch.Tensor:
    # bias is (B*H, M, 1, S*bs), or (1, M, 1, S*bs) when it is the same for every head.
    if bias.shape[0] == 1:
        return bias[:, r].expand(len(range(*g.indices(groups))), -1, -1, -1)
    return bias[g, r]


@torch.library.custom_op("bigbird::block_sparse_cpu", mutates_args=())
def block_sparse_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: torch.Tensor,
                     slot_valid: torch.Tensor, key_mask: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: ``(B, H, L, D)`` context (padded query rows zeroed) and ``(B, H, L)`` float32 log-sum-exp."""
    B, H, L, D = q.shape
    M, S = blocks.shape[1:]
    n, bs = M + 2, L // (M + 2)
    scale = D**-0.5
    out = q.new_empty(B, H, L, D)
    lse = q.new_empty(B, H, L, dtype=torch.float32)

    # Query blocks 0 and n-1 see every key.
    out_glob, lse_glob = _flash(global_rows(q, bs), k, v, attn_mask=global_bias(key_mask, torch.float32),
                                scale=scale)  # (B, H, 2bs, D), (B, H, 2bs)
    out[:, :, :bs], out[:, :, -bs:] = out_glob[:, :, :bs], out_glob[:, :, bs:]
    lse[:, :, :bs], lse[:, :, -bs:] = lse_glob[:, :, :bs], lse_glob[:, :, bs:]

    # Middle query blocks, tile by tile: gather their S key blocks, attend.
    index = flat_block_index(blocks, B)  # (B*H, M, S)
    bias = middle_bias(blocks, slot_valid, key_mask, B, bs, torch.float32)  # (B*H|1, M, 1, S*bs)
    k_flat, v_flat = k.reshape(B * H * n, bs, D), v.reshape(B * H * n, bs, D)
    q_mid = q.reshape(B * H, n, bs, D)[:, 1:-1]  # a view unless B > 1 and q is head-interleaved
    out_mid = out.view(B * H, n, bs, D)[:, 1:-1]  # (B*H, M, bs, D) views
    lse_mid = lse.view(B * H, n, bs)[:, 1:-1]
    for g, r in _tiles(B * H, M, 2 * S * bs * D * q.element_size()):
        k_tile = gather_blocks(k_flat, index[g, r], bs)  # (g, r, S*bs, D)
        v_tile = gather_blocks(v_flat, index[g, r], bs)
        out_mid[g, r], lse_mid[g, r] = _flash(q_mid[g, r], k_tile, v_tile,
                                              attn_mask=_tile_bias(bias, g, r, B * H), scale=scale)

    if key_mask is not None:
        out.mul_(key_mask.to(out.dtype)[:, None, :, None])  # padded query rows are zeros, as in the reference
    return out, lse


@block_sparse_cpu.register_fake
def _(q, k, v, blocks, slot_valid, key_mask):
    return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("bigbird::block_sparse_cpu_backward", mutates_args=())
def block_sparse_cpu_backward(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              out: torch.Tensor, lse: torch.Tensor, blocks: torch.Tensor,
                              slot_valid: torch.Tensor, key_mask: torch.Tensor | None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward of :func:`block_sparse_cpu`: ``dq, dk, dv``, each ``(B, H, L, D)``.

    The flash backward needs each row's output and log-sum-exp; ``out`` has its padded rows zeroed, which is
    harmless because their incoming gradient is zeroed too.
    """
    B, H, L, D = q.shape
    M, S = blocks.shape[1:]
    n, bs = M + 2, L // (M + 2)
    scale = D**-0.5
    if key_mask is not None:
        grad_out = grad_out * key_mask.to(grad_out.dtype)[:, None, :, None]
    grad_out, q = grad_out.contiguous(), q.contiguous()

    # Global query blocks: every key, so their key/value gradients initialise dk and dv.
    dq_glob, dk, dv = _flash_backward(global_rows(grad_out, bs), global_rows(q, bs), k, v, global_rows(out, bs),
                                      global_rows(lse, bs), 0.0, False,
                                      attn_mask=global_bias(key_mask, torch.float32), scale=scale)
    dq = torch.empty_like(q)
    dq[:, :, :bs], dq[:, :, -bs:] = dq_glob[:, :, :bs], dq_glob[:, :, bs:]
    dk, dv = dk.contiguous(), dv.contiguous()

    index = flat_block_index(blocks, B)  # (B*H, M, S)
    bias = middle_bias(blocks, slot_valid, key_mask, B, bs, torch.float32)
    k_flat, v_flat = k.reshape(B * H * n, bs, D), v.reshape(B * H * n, bs, D)
    dk_blocks, dv_blocks = dk.view(B * H, n, bs, D), dv.view(B * H, n, bs, D)

    q_mid = q.view(B * H, n, bs, D)[:, 1:-1]
    go_mid, out_mid, dq_mid = (x.view(B * H, n, bs, D)[:, 1:-1] for x in (grad_out, out.contiguous(), dq))
    lse_mid = lse.view(B * H, n, bs)[:, 1:-1]
    for g, r in _tiles(B * H, M, 2 * S * bs * D * q.element_size()):
        idx = index[g, r]
        k_tile, v_tile = gather_blocks(k_flat, idx, bs), gather_blocks(v_flat, idx, bs)  # (g, r, S*bs, D)
        dq_t, dk_t, dv_t = _flash_backward(go_mid[g, r], q_mid[g, r], k_tile, v_tile, out_mid[g, r],
                                           lse_mid[g, r], 0.0, False,
                                           attn_mask=_tile_bias(bias, g, r, B * H), scale=scale)
        dq_mid[g, r] = dq_t
        shape = (*idx.shape, bs, D)  # (g, r, S, bs, D), a view of the flash output
        _accumulate(dk_blocks, dk_t.view(shape), idx, g, r)
        _accumulate(dv_blocks, dv_t.view(shape), idx, g, r)
    return dq, dk, dv


def _accumulate(dst: torch.Tensor, grad: torch.Tensor, index: torch.Tensor, g: slice, r: slice) -> None:
    """Add the gradients of one tile's gathered key blocks back where the blocks came from.

    Args:
        dst: ``(B*H, n, bs, D)`` key (or value) gradient.
        grad: ``(g, r, S, bs, D)`` gradients of the gathered blocks of query blocks ``r`` of heads ``g``.
        index: ``(g, r, S)`` rows of ``dst.view(-1, bs, D)`` they were gathered from.

    The fixed slots (:data:`bigbird.layout.NUM_FIXED_SLOTS`: global first, window ``i-1, i, i+1``, global
    last) land on the same or consecutive blocks, so they are sums and shifted adds; only the random slots
    need a scatter: ``index_add_`` over rows of ``bs * D`` elements (repeated blocks add up; about 10x faster
    on CPU than ``index_put_(accumulate=True)`` for these shapes, measured).
    """
    m0, m1 = r.start, r.start + grad.shape[1]
    d = dst[g]  # (g, n, bs, D) view
    d[:, 0] += grad[:, :, 0].sum(1)  # every query block sees the first and the last block
    d[:, -1] += grad[:, :, 4].sum(1)
    d[:, m0:m1] += grad[:, :, 1]  # query block i = m + 1 sees blocks m, m + 1, m + 2
    d[:, m0 + 1:m1 + 1] += grad[:, :, 2]
    d[:, m0 + 2:m1 + 2] += grad[:, :, 3]
    if grad.shape[2] > NUM_FIXED_SLOTS:
        rows = dst.view(-1, dst.shape[2] * dst.shape[3])  # (B*H*n, bs*D), a view
        rows.index_add_(0, index[:, :, NUM_FIXED_SLOTS:].reshape(-1),
                        grad[:, :, NUM_FIXED_SLOTS:].reshape(-1, rows.shape[1]))


@block_sparse_cpu_backward.register_fake
def _(grad_out, q, k, v, out, lse, blocks, slot_valid, key_mask):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, blocks, slot_valid, key_mask = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, blocks, slot_valid, key_mask)


def _backward(ctx, grad_out, grad_lse):
    # The log-sum-exp is an internal by-product (never returned to users): its gradient is ignored.
    q, k, v, out, lse, blocks, slot_valid, key_mask = ctx.saved_tensors
    dq, dk, dv = block_sparse_cpu_backward(grad_out, q, k, v, out, lse, blocks, slot_valid, key_mask)
    return dq, dk, dv, None, None, None


block_sparse_cpu.register_autograd(_backward, setup_context=_setup_context)
