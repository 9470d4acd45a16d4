"""Every block-sparse kernel equals dense masked attention and transformers' BigBirdBlockSparseAttention."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention, BigBirdModel

from bigbird.attention import KERNELS, MASK_PENALTY, block_sparse_attention, select_kernel
from bigbird.kernels.cpu_flash import block_sparse_cpu
from bigbird.layout import SparseLayout, sparse_layout

# (block size, random blocks, sequence length): the paper's fixed plan (1024), odd lengths, r = 0.
SETTINGS = [(8, 2, 96), (4, 0, 40), (8, 1, 200), (16, 3, 1024)]


def _layout(bs: int, r: int, L: int, heads: int, *, zero_random: bool = False, seed: int = 1) -> SparseLayout:
    return sparse_layout(seed=seed, seq_len=L, block_size=bs, num_random_blocks=r, num_heads=heads,
                         max_seq_len=max(L, 1024), zero_random=zero_random)


def _inputs(B: int, H: int, L: int, D: int, *, pad: int = 0, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, D, generator=g).to(dtype) for _ in range(3))
    key_mask = torch.ones(B, L)
    if pad:
        key_mask[-1, L - pad:] = 0
    return q, k, v, key_mask


def _multiplicity(layout: SparseLayout) -> torch.Tensor:
    """``(H, L, L)`` how often each key is listed for each query (2 where the reference repeats a block)."""
    H, M, S = layout.blocks.shape
    n, bs = layout.num_blocks, layout.block_size
    count = torch.zeros(H, n, n)
    count[:, 0] = count[:, -1] = 1.0
    rows = torch.arange(1, n - 1)[None, :, None].expand(H, M, S)
    heads = torch.arange(H)[:, None, None].expand(H, M, S)
    count.index_put_((heads, rows, layout.blocks), layout.slot_valid.float().expand(H, M, S), accumulate=True)
    return count.repeat_interleave(bs, 1).repeat_interleave(bs, 2)


def _dense_reference(q, k, v, layout: SparseLayout, key_mask) -> torch.Tensor:
    """Masked softmax attention over the dense pattern, in float64; padded query rows zeroed."""
    q, k, v = (t.double() for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, L)
    scores = scores + _multiplicity(layout).double().log()  # -inf off the pattern, log 2 on repeated blocks
    scores = scores + ((1.0 - key_mask.double()) * MASK_PENALTY)[:, None, None, :]
    out = torch.softmax(scores, dim=-1) @ v
    return out * key_mask.double()[:, None, :, None]


def _transformers(q, k, v, key_mask, bs: int, r: int, seed: int, max_len: int, train: bool) -> torch.Tensor:
    B, H, L, D = q.shape
    config = transformers.BigBirdConfig(hidden_size=H * D, num_attention_heads=H, block_size=bs,
                                        num_random_blocks=r, max_position_embeddings=max_len)
    module = BigBirdBlockSparseAttention(config, seed=seed).train(train)
    blocked, band, from_mask, to_mask = BigBirdModel.create_masks_for_block_sparse_attn(key_mask, bs)
    out, _ = module.bigbird_block_sparse_attention(q, k, v, band, from_mask, to_mask, blocked, blocked, H, r, D,
                                                   bs, bs, B, L, L, seed=seed, plan_from_length=None,
                                                   plan_num_rand_blocks=None)
    return out.transpose(1, 2)  # (B, L, H, D) -> (B, H, L, D)


def test_seeded_layout_multiplicity_is_the_dense_mask():
    layout = _layout(8, 2, 96, 3)
    assert torch.equal(_multiplicity(layout) > 0, layout.dense_mask())
    assert _multiplicity(layout).max() == 1


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("bs,r,L", SETTINGS)
def test_kernels_match_dense_reference(kernel, bs, r, L):
    layout = _layout(bs, r, L, heads=3)
    q, k, v, key_mask = _inputs(2, 3, L, 8, pad=L // 3 + 1)
    out = KERNELS[kernel](q, k, v, layout=layout, key_mask=key_mask)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert (out.double() - _dense_reference(q, k, v, layout, key_mask)).abs().max() <= 1e-5
    unmasked = KERNELS[kernel](q, k, v, layout=layout, key_mask=None)
    assert (unmasked.double() - _dense_reference(q, k, v, layout, torch.ones(2, L))).abs().max() <= 1e-5


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernels_count_repeated_blocks_like_transformers_eval_mode(kernel):
    layout = _layout(8, 2, 96, 2, zero_random=True)  # every random slot points at block 0 again
    assert _multiplicity(layout).max() == 3
    q, k, v, key_mask = _inputs(2, 2, 96, 8, pad=20)
    out = KERNELS[kernel](q, k, v, layout=layout, key_mask=key_mask)
    assert (out.double() - _dense_reference(q, k, v, layout, key_mask)).abs().max() <= 1e-5
    ref = _transformers(q, k, v, key_mask, 8, 2, seed=1, max_len=1024, train=False)
    assert (out - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("bs,r,L", [s for s in SETTINGS if s[1] > 0] + [(16, 2, 288)])
def test_kernels_match_transformers_block_sparse_attention(kernel, bs, r, L):
    seed, max_len = 3, 1024
    layout = sparse_layout(seed=seed, seq_len=L, block_size=bs, num_random_blocks=r, num_heads=2,
                           max_seq_len=max_len, plan="transformers")
    q, k, v, key_mask = _inputs(2, 2, L, 16, pad=L // 4)
    ref = _transformers(q, k, v, key_mask, bs, r, seed=seed, max_len=max_len, train=True)
    out = KERNELS[kernel](q, k, v, layout=layout, key_mask=key_mask)
    assert (out - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("bs,r,L,zero_random", [(8, 2, 96, False), (4, 0, 40, False), (16, 3, 1024, False),
                                                (8, 3, 128, True)])
def test_kernel_gradients_match_dense_reference(kernel, bs, r, L, zero_random):
    layout = _layout(bs, r, L, heads=2, zero_random=zero_random)  # zero_random: repeated blocks
    q, k, v, key_mask = _inputs(2, 2, L, 8, pad=L // 5)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(9))
    out = KERNELS[kernel](*leaves, layout=layout, key_mask=key_mask)
    grads = torch.autograd.grad(out, leaves, grad_out)
    ref = _dense_reference(*ref_leaves, layout, key_mask)
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out.double())
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert (g.double() - rg).abs().max() <= 2e-5, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernels_in_half_precision(kernel, dtype):
    layout = _layout(16, 3, 1024, heads=2)
    q, k, v, key_mask = _inputs(1, 2, 1024, 32, pad=100)
    ref = _dense_reference(q, k, v, layout, key_mask)
    leaves = [t.to(dtype).requires_grad_() for t in (q, k, v)]
    out = KERNELS[kernel](*leaves, layout=layout, key_mask=key_mask)
    assert out.dtype == dtype
    assert (out.double() - ref).abs().max() <= 3e-2
    out.float().square().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == dtype and torch.isfinite(t.grad).all() for t in leaves)


def test_block_sparse_attention_probabilities_are_the_dense_softmax():
    layout = _layout(8, 2, 96, 2, zero_random=True)
    q, k, v, key_mask = _inputs(2, 2, 96, 8, pad=20)
    out, probs = block_sparse_attention(q, k, v, layout=layout, key_mask=key_mask, need_weights=True)
    assert (out.double() - _dense_reference(q, k, v, layout, key_mask)).abs().max() <= 1e-5
    scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(8) + _multiplicity(layout).double().log()
    scores = scores + ((1.0 - key_mask.double()) * MASK_PENALTY)[:, None, None, :]
    ref = torch.softmax(scores, -1) * _multiplicity(layout).clamp(max=1)  # repeated blocks summed into one
    real = key_mask.bool()  # transformers' probabilities of padded query rows differ; nobody reads them
    assert (probs.double() - ref)[real[:, None, :, None].expand_as(ref)].abs().max() <= 1e-5


def test_select_kernel_picks_a_kernel_that_exists():
    for device in ("cpu", "cuda", "meta"):
        for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            assert select_kernel(torch.device(device), dtype) in KERNELS
    assert select_kernel(torch.device("cpu"), torch.float32) == "cpu_flash"
    assert select_kernel(torch.device("cuda"), torch.float16) == "sdpa_gather"
    # float64 has no fused CPU kernel: the generic one still computes it exactly.
    layout = _layout(8, 2, 96, 2)
    q, k, v, key_mask = _inputs(1, 2, 96, 8, pad=10, dtype=torch.float64)
    out, _ = block_sparse_attention(q, k, v, layout=layout, key_mask=key_mask)
    assert (out - _dense_reference(q, k, v, layout, key_mask)).abs().max() <= 1e-10


def test_bad_shapes_raise_value_error():
    layout = _layout(8, 2, 96, 2)
    q, k, v, key_mask = _inputs(1, 2, 96, 8)
    with pytest.raises(ValueError, match="does not match the layout"):
        block_sparse_attention(q[:, :, :88], k[:, :, :88], v[:, :, :88], layout=layout, key_mask=None)
    with pytest.raises(ValueError, match="2 heads, q has 3"):
        block_sparse_attention(*(t.repeat(1, 2, 1, 1)[:, :3] for t in (q, k, v)), layout=layout, key_mask=None)
    with pytest.raises(ValueError, match="key_mask must have shape"):
        block_sparse_attention(q, k, v, layout=layout, key_mask=key_mask[:, :50])
    with pytest.raises(ValueError, match="same shape"):
        block_sparse_attention(q, k[..., :4], v, layout=layout, key_mask=None)


def _largest_allocation(fn) -> int:
    """Bytes of the largest tensor any single op allocates while ``fn`` runs, the ops inside our custom ops
    included (the profiler records every dispatched op; ``self_cpu_memory_usage`` is what the op itself keeps
    allocated, its output)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(max(e.self_cpu_memory_usage, e.cpu_memory_usage if e.name == "[memory]" else 0)
               for e in prof.events())


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_sparse_path_never_allocates_a_square_matrix(kernel):
    L = 16384
    layout = sparse_layout(seed=0, seq_len=L, block_size=64, num_random_blocks=2, num_heads=1, max_seq_len=L)
    q, k, v = (torch.randn(1, 1, L, 8, requires_grad=True) for _ in range(3))
    key_mask = torch.ones(1, L)

    def run():
        out = KERNELS[kernel](q, k, v, layout=layout, key_mask=key_mask)
        out.sum().backward()

    assert _largest_allocation(run) < L * L // 4 * 4  # bytes: a quarter of an L x L float32 matrix


def test_allocation_probe_sees_a_dense_matrix():
    L = 1024
    layout = _layout(64, 2, L, 1)
    q, k, v, _ = _inputs(1, 1, L, 8)
    run = lambda: block_sparse_attention(q, k, v, layout=layout, key_mask=None, need_weights=True)  # noqa: E731
    assert _largest_allocation(run) >= L * L * 4


def test_cpu_kernel_is_one_opaque_op_for_torch_compile():
    layout = _layout(8, 2, 96, 2)
    q, k, v, key_mask = _inputs(2, 2, 96, 8, pad=11)
    torch.library.opcheck(block_sparse_cpu, (q.requires_grad_(), k, v, layout.blocks, layout.slot_valid, key_mask))

    calls = []

    def backend(gm, example_inputs):
        calls.append(gm)
        return gm.forward

    def f(q, k, v, key_mask):
        return block_sparse_attention(q, k, v, layout=layout, key_mask=key_mask)[0]

    compiled = torch.compile(f, backend=backend, fullgraph=True)
    for seed in range(3):  # new values, same shapes: no recompilation
        q, k, v, key_mask = _inputs(2, 2, 96, 8, pad=11, seed=seed)
        assert torch.equal(compiled(q, k, v, key_mask), f(q, k, v, key_mask))
    assert len(calls) == 1
    assert any("bigbird.block_sparse_cpu" in str(node.target) for node in calls[0].graph.nodes)
