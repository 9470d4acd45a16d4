"""The CPU block-sparse kernel: PyTorch's fused CPU flash attention over three key sets per layer.

A middle query block ``i`` attends to the two global key blocks, its window ``i-1, i, i+1`` and ``r`` random
blocks. Instead of gathering those ``5 + r`` blocks next to each other for every query block (eight copies
of the keys and values per layer), the kernel attends to each key set where it already lies and merges the
three partial results with their log-sum-exps (the merge of a split softmax, exact up to rounding):

* **global keys**: every middle query against the first and last key blocks, one dense call;
* **window**: an overlapping strided *view* of the keys (query block ``i`` sees rows ``(i-1) bs .. (i+2) bs``),
  no copy at all;
* **random**: the only gather, ``r`` blocks per query block, in tiles of at most :data:`TILE_BYTES`.

Why this shape (measured on 2 cores, 12 heads x 64, block 64, 4,096 tokens; benchmarks/README.md): every op
is a parallel region whose threads must all be scheduled to finish it. Tiled over the gathered blocks (the
previous kernel) a layer's forward and backward issued ~1,000 small ops, fast on a quiet machine and up to
13x slower beside two busy processes, where a thread waiting at a barrier for a descheduled peer wastes its
time slice. Here a layer is ~15 ops forward and ~35 backward, each over the whole layer (or a large tile),
and the keys are read where they lie (they fit in the last-level cache) instead of being copied eight times.

The backward calls the fused flash backward once per key set with the *merged* output and log-sum-exp
(its softmax and ``rowsum(dO * O)`` are then those of the whole row, so each call returns that key set's
exact share of the gradients) and adds the key/value gradients back: shifted adds for the window, one
``index_add_`` per tile for the random blocks. Only ``q, k, v``, the output and the log-sum-exp are kept for
it: memory linear in ``L``.

Beside busy processes what costs is the number of parallel regions, not their size (each waits for its
slowest thread; see :mod:`bigbird.kernels.threads`): everything but the fused flash calls (gathers, merges,
gradient sums) runs on the calling thread alone, the flash calls with the caller's whole thread team. A
``key_mask`` without padding is dropped (the same result: its bias is zero), which removes the bias passes.

Both passes are ``torch.library`` custom ops, so ``torch.compile`` sees one opaque call per layer (no graph
breaks, no recompiles as the tiling changes). Registering them is this module's only effect.

The layout's first :data:`bigbird.layout.NUM_FIXED_SLOTS` slots must be its fixed structure (global first,
window, global last: :func:`bigbird.layout.sparse_layout` builds them so); only the random slots are read.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from bigbird.kernels.common import (
    MASK_PENALTY,
    flat_block_index,
    gather_blocks,
    global_bias,
    global_rows,
    middle_bias,
)
from bigbird.kernels.threads import team
from bigbird.layout import NUM_FIXED_SLOTS

# Bytes of gathered random keys (or values, or the window's key gradients) per tile: large tiles (few ops,
# see above), yet under glibc's dynamic mmap threshold (at most 32 MB), so that these buffers are reused from
# the heap instead of being mmapped and page-faulted anew at every call (measured: 15x slower gathers).
TILE_BYTES = 16 << 20
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
WINDOW = slice(1, 4)  # the window's slots in a layout row
RANDOM = slice(NUM_FIXED_SLOTS, None)

_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_FLASH_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _flash(threads: int, *args, **kwargs) -> tuple[torch.Tensor, ...]:
    """The fused flash forward with ``threads`` threads (the glue around it runs on one)."""
    with team(threads):
        return _FLASH(*args, **kwargs)


def _flash_backward(threads: int, *args, **kwargs) -> tuple[torch.Tensor, ...]:
    """The fused flash backward with ``threads`` threads."""
    with team(threads):
        return _FLASH_BACKWARD(*args, **kwargs)


def _padding(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """``key_mask`` if it masks any key, else None (a mask of ones adds a zero bias: same result, less
    work)."""
    return None if key_mask is None or bool(key_mask.all()) else key_mask


def _tiles(groups: int, rows: int, row_bytes: int) -> Iterator[tuple[slice, slice]]:
    """Tiles of the ``(B*H, M)`` grid of middle query blocks, balanced, each at most :data:`TILE_BYTES`.

    Whole heads per tile while a head fits (rows split only for a head larger than the budget); balanced so
    that no tile is larger than the others (an allocation the size of the last one freed would be mmapped).
    """
    head = rows * row_bytes
    if head <= TILE_BYTES:
        step = -(-groups // -(-groups * head // TILE_BYTES))  # heads per tile: ceil(groups / tiles)
        for g in range(0, groups, step):
            yield slice(g, g + step), slice(0, rows)
    else:
        step = -(-rows // -(-head // TILE_BYTES))
        for g in range(groups):
            for r in range(0, rows, step):
                yield slice(g, g + 1), slice(r, r + step)


def _tile_bias(bias: torch.Tensor, g: slice, r: slice, groups: int) -> torch.Tensor:
    # bias is (B*H, M, 1, S*bs), or (1, M, 1, S*bs) when it is the same for every head.
    if bias.shape[0] == 1:
        return bias[:, r].expand(len(range(*g.indices(groups))), -1, -1, -1)
    return bias[g, r]


def _window(x: torch.Tensor, n: int, bs: int) -> torch.Tensor:
    """``(B*H, M, 3 bs, D)`` overlapping view of contiguous ``(B, H, L, D)`` keys: the window of each middle
    query block, without a copy."""
    G, D = x.shape[0] * x.shape[1], x.shape[-1]
    return x.as_strided((G, n - 2, 3 * bs, D), (n * bs * D, bs * D, D, 1), x.storage_offset())


def _global_key_bias(key_mask: torch.Tensor | None, bs: int) -> torch.Tensor | None:
    """``(B, 1, 1, 2 bs)`` additive bias of the padded keys among the two global key blocks, or None."""
    if key_mask is None:
        return None
    keep = torch.cat([key_mask[:, :bs], key_mask[:, -bs:]], dim=1).to(torch.float32)
    return ((1.0 - keep) * MASK_PENALTY)[:, None, None, :]


class _Middle:
    """Views and biases of one call's middle query blocks, shared by the forward and the backward."""

    def __init__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: torch.Tensor,
                 slot_valid: torch.Tensor, key_mask: torch.Tensor | None) -> None:
        B, H, L, D = q.shape
        self.M, self.S = blocks.shape[1:]
        self.n, self.bs, self.G, self.D = self.M + 2, L // (self.M + 2), B * H, D
        n, bs = self.n, self.bs
        self.k_glob, self.v_glob = global_rows(k, bs), global_rows(v, bs)  # (B, H, 2bs, D)
        self.bias_glob = _global_key_bias(key_mask, bs)
        self.k_win, self.v_win = _window(k, n, bs), _window(v, n, bs)  # (B*H, M, 3bs, D) views
        self.bias_win = middle_bias(blocks[:, :, WINDOW], slot_valid[:, WINDOW], key_mask, B, bs,
                                    torch.float32).expand(self.G, -1, -1, -1)
        self.random = self.S > NUM_FIXED_SLOTS
        if self.random:
            self.index = flat_block_index(blocks[:, :, RANDOM], B)  # (B*H, M, r)
            self.bias_rand = middle_bias(blocks[:, :, RANDOM], slot_valid[:, RANDOM], key_mask, B, bs,
                                         torch.float32)  # (B*H|1, M, 1, r*bs)
            self.k_flat, self.v_flat = k.view(B * H * n, bs, D), v.view(B * H * n, bs, D)

    def blocks_of(self, x: torch.Tensor) -> torch.Tensor:
        """``(B*H, M, bs, ...)`` view of the middle query rows of a contiguous ``(B, H, L, ...)`` tensor."""
        return x.view(self.G, self.n, self.bs, *x.shape[3:])[:, 1:-1]

    def random_tiles(self, element_size: int) -> Iterator[tuple[slice, slice, torch.Tensor, torch.Tensor,
                                                                torch.Tensor]]:
        """``(g, r, keys, values, bias)`` of each tile of the random key blocks, gathered."""
        r_slots = self.S - NUM_FIXED_SLOTS
        for g, r in _tiles(self.G, self.M, r_slots * self.bs * self.D * element_size):
            idx = self.index[g, r]
            yield (g, r, gather_blocks(self.k_flat, idx, self.bs), gather_blocks(self.v_flat, idx, self.bs),
                   _tile_bias(self.bias_rand, g, r, self.G))


def _merge(parts: list[tuple[torch.Tensor, torch.Tensor]], out: torch.Tensor, lse: torch.Tensor) -> None:
    """Write the softmax over the union of the key sets into ``out`` ``(..., bs, D)`` and ``lse`` ``(..., bs)``.

    ``parts`` are ``(output, log-sum-exp)`` of each key set, all of ``out``'s shape (outputs) and ``lse``'s
    (float32 log-sum-exps); the merged row is ``sum_i o_i exp(lse_i - lse)``, summed in float32.
    """
    total = torch.stack([p[1] for p in parts]).logsumexp(0)  # (..., bs)
    acc = None
    for o, part_lse in parts:
        w = torch.exp(part_lse - total).unsqueeze(-1)
        acc = o.float() * w if acc is None else acc.addcmul_(o.float(), w)
    out.copy_(acc)
    lse.copy_(total)


@torch.library.custom_op("bigbird::block_sparse_cpu", mutates_args=())
def block_sparse_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: torch.Tensor,
                     slot_valid: torch.Tensor, key_mask: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: ``(B, H, L, D)`` context (padded query rows zeroed) and ``(B, H, L)`` float32 log-sum-exp."""
    threads = torch.get_num_threads()
    with team(1):
        return _forward_pass(threads, q, k, v, blocks, slot_valid, _padding(key_mask))


def _forward_pass(threads: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocks: torch.Tensor,
                  slot_valid: torch.Tensor, key_mask: torch.Tensor | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    B, H, L, D = q.shape
    bs = L // (blocks.shape[1] + 2)
    scale = D**-0.5
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    out = q.new_empty(B, H, L, D)
    lse = q.new_empty(B, H, L, dtype=torch.float32)

    # Query blocks 0 and n-1 see every key.
    mask = global_bias(key_mask, torch.float32)
    out_glob, lse_glob = _flash(threads, global_rows(q, bs), k, v, attn_mask=mask,
                                scale=scale)  # (B, H, 2bs, D)
    out[:, :, :bs], out[:, :, -bs:] = out_glob[:, :, :bs], out_glob[:, :, bs:]
    lse[:, :, :bs], lse[:, :, -bs:] = lse_glob[:, :, :bs], lse_glob[:, :, bs:]

    if blocks.shape[1] > 0:
        mid = _Middle(q, k, v, blocks, slot_valid, key_mask)
        G, M = mid.G, mid.M
        q_blk = mid.blocks_of(q)  # (B*H, M, bs, D)
        # Every part as (B, H, M, bs, D) and (B, H, M, bs): the flash outputs' memory layouts differ.
        o_g, l_g = _flash(threads, q[:, :, bs:-bs], mid.k_glob, mid.v_glob, attn_mask=mid.bias_glob,
                          scale=scale)
        o_w, l_w = _flash(threads, q_blk, mid.k_win, mid.v_win, attn_mask=mid.bias_win, scale=scale)
        parts = [(o_g.unflatten(2, (M, bs)), l_g.unflatten(2, (M, bs))),
                 (o_w.unflatten(0, (B, H)), l_w.unflatten(0, (B, H)))]
        if mid.random:
            o_r, l_r = q.new_empty(G, M, bs, D), lse.new_empty(G, M, bs)
            for g, r, k_t, v_t, bias in mid.random_tiles(q.element_size()):
                o_r[g, r], l_r[g, r] = _flash(threads, q_blk[g, r], k_t, v_t, attn_mask=bias, scale=scale)
            parts.append((o_r.unflatten(0, (B, H)), l_r.unflatten(0, (B, H))))
        _merge(parts, out[:, :, bs:-bs].unflatten(2, (M, bs)), lse[:, :, bs:-bs].unflatten(2, (M, bs)))

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
    threads = torch.get_num_threads()
    with team(1):
        return _backward_pass(threads, grad_out, q, k, v, out, lse, blocks, slot_valid, _padding(key_mask))


def _backward_pass(threads: int, grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   out: torch.Tensor, lse: torch.Tensor, blocks: torch.Tensor, slot_valid: torch.Tensor,
                   key_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, H, L, D = q.shape
    bs = L // (blocks.shape[1] + 2)
    scale = D**-0.5
    if key_mask is not None:
        grad_out = grad_out * key_mask.to(grad_out.dtype)[:, None, :, None]
    grad_out, q, k, v, out = (x.contiguous() for x in (grad_out, q, k, v, out))

    # Global query blocks: every key, so their key/value gradients initialise dk and dv.
    mask = global_bias(key_mask, torch.float32)
    dq_glob, dk, dv = _flash_backward(threads, global_rows(grad_out, bs), global_rows(q, bs), k, v,
                                      global_rows(out, bs), global_rows(lse, bs), 0.0, False, attn_mask=mask,
                                      scale=scale)
    dq = torch.empty_like(q)
    dq[:, :, :bs], dq[:, :, -bs:] = dq_glob[:, :, :bs], dq_glob[:, :, bs:]
    dk, dv = dk.contiguous(), dv.contiguous()
    if blocks.shape[1] == 0:
        return dq, dk, dv

    mid = _Middle(q, k, v, blocks, slot_valid, key_mask)
    G, M, n = mid.G, mid.M, mid.n
    rows = (slice(None), slice(None), slice(bs, -bs))

    # Global keys: one dense call; its dq initialises the middle rows of dq.
    dq_g, dk_g, dv_g = _flash_backward(threads, grad_out[rows], q[rows], mid.k_glob, mid.v_glob, out[rows],
                                       lse[rows], 0.0, False, attn_mask=mid.bias_glob, scale=scale)
    dq[rows] = dq_g
    for d, d_g in ((dk, dk_g), (dv, dv_g)):
        d[:, :, :bs] += d_g[:, :, :bs]
        d[:, :, -bs:] += d_g[:, :, bs:]

    go_blk, q_blk, out_blk, lse_blk, dq_blk = (mid.blocks_of(x) for x in (grad_out, q, out, lse, dq))
    # Window: query block i = m + 1 saw key blocks m, m + 1, m + 2. Tiled by heads: the flash backward
    # returns fresh (g, M, 3bs, D) key/value gradients, which must stay small enough to come from the heap.
    for g, _ in _tiles(G, 1, M * 3 * bs * D * q.element_size()):  # whole heads (a head is one "row" here)
        dq_w, dk_w, dv_w = _flash_backward(threads, go_blk[g], q_blk[g], mid.k_win[g], mid.v_win[g],
                                           out_blk[g], lse_blk[g], 0.0, False, attn_mask=mid.bias_win[g],
                                           scale=scale)
        dq_blk[g] += dq_w
        for d, d_w in ((dk, dk_w), (dv, dv_w)):
            d_blocks, d_w = d.view(G, n, bs, D)[g], d_w.unflatten(2, (3, bs))  # (g, n, bs, D), (g, M, 3, bs, D)
            for j in range(3):
                d_blocks[:, j:j + M] += d_w[:, :, j]

    if mid.random:
        dk_rows, dv_rows = dk.view(G * n, bs * D), dv.view(G * n, bs * D)
        for g, r, k_t, v_t, bias in mid.random_tiles(q.element_size()):
            dq_r, dk_r, dv_r = _flash_backward(threads, go_blk[g, r], q_blk[g, r], k_t, v_t, out_blk[g, r],
                                               lse_blk[g, r], 0.0, False, attn_mask=bias, scale=scale)
            dq_blk[g, r] += dq_r
            # One index_add_ per tile: repeated blocks add up (on one thread: PyTorch's parallel version
            # sorts the index with a barrier per pass, up to 80 ms a call beside busy processes).
            idx = mid.index[g, r].reshape(-1)
            dk_rows.index_add_(0, idx, dk_r.reshape(-1, bs * D))
            dv_rows.index_add_(0, idx, dv_r.reshape(-1, bs * D))
    return dq, dk, dv


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
