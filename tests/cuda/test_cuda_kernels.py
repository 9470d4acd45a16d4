"""Every block-sparse kernel against the float64 dense reference on CUDA, in float32, bfloat16 and float16,
forward and gradients; the model on CUDA against transformers' on CUDA; FlexAttention with our layout's
BlockMask against our kernel.

The CUDA cases are skipped without a CUDA device (``scripts/gpu_check.sh`` runs them on a GPU machine); the
same cases on CPU run everywhere, so the checks themselves stay exercised. The reference is the one of
tests/bigbird/test_attention_kernels.py (dense masked softmax in float64, repeated blocks counted).
"""

from __future__ import annotations

import pytest
import torch

from bigbird.attention import KERNELS, block_sparse_attention, select_kernel
from tests.bigbird.test_attention_kernels import _dense_reference, _inputs, _layout, _transformers

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device"))]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Largest |error| against float64, relative to the reference's largest |value| (outputs and gradients alike).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 5e-3}


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> tuple[float, float]:
    """(error, allowed): the largest gap of ``got`` to the float64 ``want`` and what ``dtype`` may give."""
    scale = max(1.0, want.abs().max().item())
    return (got.double().cpu() - want.cpu()).abs().max().item(), TOLERANCE[dtype] * scale


def _run(kernel: str, leaves, layout, key_mask) -> torch.Tensor:
    try:
        return KERNELS[kernel](*leaves, layout=layout, key_mask=key_mask)
    except NotImplementedError as exc:  # a kernel written for one device only (the dispatcher says so)
        if select_kernel(leaves[0].device, leaves[0].dtype) == kernel:
            raise  # the kernel the model uses here must run
        pytest.skip(f"{kernel} has no {leaves[0].device.type} implementation: {str(exc).splitlines()[0][:120]}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("bs,r,L,zero_random", [(16, 3, 1024, False), (8, 2, 128, True)])
def test_kernel_matches_float64_reference(device, dtype, kernel, bs, r, L, zero_random):
    layout = _layout(bs, r, L, heads=2, zero_random=zero_random)
    q, k, v, key_mask = _inputs(2, 2, L, 32, pad=L // 5)
    ref_leaves = [t.double().requires_grad_() for t in (q, k, v)]
    ref = _dense_reference(*ref_leaves, layout, key_mask)
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(9))
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out.double())

    leaves = [t.to(device, dtype).requires_grad_() for t in (q, k, v)]
    out = _run(kernel, leaves, layout.to(device), key_mask.to(device))
    assert out.dtype == dtype and out.device.type == device
    error, allowed = _close(out, ref, dtype)
    assert error <= allowed, f"output: {error:.3g} > {allowed:.3g}"
    grads = torch.autograd.grad(out, leaves, grad_out.to(device, dtype))
    for name, g, rg in zip("qkv", grads, ref_grads):
        assert g.dtype == dtype
        error, allowed = _close(g, rg, dtype)
        assert error <= allowed, f"grad {name}: {error:.3g} > {allowed:.3g}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_public_entry_uses_a_kernel_that_runs_here(device, dtype):
    layout = _layout(16, 2, 288, heads=2)
    q, k, v, key_mask = _inputs(1, 2, 288, 16, pad=40)
    out, _ = block_sparse_attention(*(t.to(device, dtype) for t in (q, k, v)), layout=layout.to(device),
                                    key_mask=key_mask.to(device))
    error, allowed = _close(out, _dense_reference(q, k, v, layout, key_mask), dtype)
    assert error <= allowed


@pytest.mark.parametrize("device", DEVICES)
def test_kernels_match_transformers_on_the_device(device):
    seed, bs, r, L = 3, 16, 2, 288
    from bigbird.layout import sparse_layout

    layout = sparse_layout(seed=seed, seq_len=L, block_size=bs, num_random_blocks=r, num_heads=2, max_seq_len=1024,
                           plan="transformers")
    q, k, v, key_mask = (t.to(device) for t in _inputs(2, 2, L, 16, pad=L // 4))
    ref = _transformers(q, k, v, key_mask, bs, r, seed=seed, max_len=1024, train=True)
    out, _ = block_sparse_attention(q, k, v, layout=layout.to(device), key_mask=key_mask)
    assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("device", DEVICES)
def test_model_matches_transformers_on_the_device(tmp_path, device):
    import bigbird
    from tests.helpers import random_batch, save_reference

    reference = save_reference("BigBirdModel", tmp_path).to(device).train()  # dropout 0: seeded random blocks
    ours = bigbird.BigBirdModel.from_pretrained(tmp_path, random_attention_eval="transformers").to(device).train()
    ids, mask = (t.to(device) for t in random_batch(2, 256, pad_from=200))
    want = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    got = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert (got - want)[real].abs().max().item() <= 1e-4
    got.float().square().mean().backward()  # the backward runs on the device
    assert all(p.grad is None or p.grad.device.type == device for p in ours.parameters())


@pytest.mark.skipif(not CUDA, reason="no CUDA device (PyTorch has no CPU backward for FlexAttention)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_flex_attention_with_our_block_mask_matches_our_kernel_on_cuda(dtype):
    from benchmarks.flex_mask import flex_call

    layout = _layout(64, 3, 2048, heads=2).to("cuda")
    q, k, v, _ = _inputs(1, 2, 2048, 64)
    leaves = [t.to("cuda", dtype).requires_grad_() for t in (q, k, v)]
    ours = [t.detach().clone().requires_grad_() for t in leaves]
    out = flex_call(layout, "cuda")(*leaves)
    ref, _ = block_sparse_attention(*ours, layout=layout, key_mask=None)
    assert (out.float() - ref.float()).abs().max().item() <= 5 * TOLERANCE[dtype]
    out.float().square().sum().backward()
    ref.float().square().sum().backward()
    for a, b in zip(leaves, ours):
        scale = max(1.0, b.grad.float().abs().max().item())
        assert (a.grad.float() - b.grad.float()).abs().max().item() <= 5 * TOLERANCE[dtype] * scale
