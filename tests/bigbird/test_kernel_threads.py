"""The CPU kernel's thread teams: glue on the calling thread alone, fused flash calls with the caller's team,
nothing changed for other threads or after the call; a mask without padding gives the same numbers as none."""

from __future__ import annotations

import threading

import pytest
import torch

from bigbird.kernels import cpu_flash, threads
from bigbird.layout import sparse_layout

needs_omp = pytest.mark.skipif(threads._OMP is None, reason="PyTorch's OpenMP runtime was not found")


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@needs_omp
def test_team_sets_the_calling_thread_only_and_restores_it(two_threads):
    seen: dict[str, int] = {}
    inside, release = threading.Event(), threading.Event()

    def other():
        torch.ones(1).add_(1)  # initialise this thread's ATen thread settings
        inside.wait(10)
        seen["other thread"] = torch.get_num_threads()
        release.set()

    t = threading.Thread(target=other)
    t.start()
    with threads.team(1):
        seen["inside"] = torch.get_num_threads()
        inside.set()
        release.wait(10)
    t.join(10)
    assert seen == {"inside": 1, "other thread": 2}
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"), threads.team(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_team_rejects_an_empty_team():
    with pytest.raises(ValueError, match="got 0"), threads.team(0):
        pass


@needs_omp
def test_kernel_runs_glue_on_one_thread_and_flash_calls_on_the_callers_team(two_threads, monkeypatch):
    calls: list[tuple[str, int]] = []
    for name in ("_FLASH", "_FLASH_BACKWARD"):
        op = getattr(cpu_flash, name)
        monkeypatch.setattr(cpu_flash, name, lambda *a, _op=op, _n=name, **kw: (
            calls.append((_n, torch.get_num_threads())), _op(*a, **kw))[1])
    gather = cpu_flash.gather_blocks
    monkeypatch.setattr(cpu_flash, "gather_blocks",
                        lambda *a: (calls.append(("gather", torch.get_num_threads())), gather(*a))[1])
    layout = sparse_layout(seed=0, seq_len=256, block_size=16, num_random_blocks=2, num_heads=2,
                           max_seq_len=256)
    q, k, v = (torch.randn(1, 2, 256, 8, requires_grad=True) for _ in range(3))
    out, _ = cpu_flash.block_sparse_cpu(q, k, v, layout.blocks, layout.slot_valid, None)
    out.sum().backward()
    assert {n for n, _ in calls} == {"_FLASH", "_FLASH_BACKWARD", "gather"}
    assert all(t == (1 if n == "gather" else 2) for n, t in calls), calls
    assert torch.get_num_threads() == 2


def test_mask_without_padding_gives_the_numbers_of_no_mask():
    layout = sparse_layout(seed=0, seq_len=256, block_size=16, num_random_blocks=2, num_heads=2,
                           max_seq_len=256)
    g = torch.Generator().manual_seed(0)
    base = [torch.randn(2, 2, 256, 8, generator=g) for _ in range(3)]
    grad_out = torch.randn(2, 2, 256, 8, generator=g)
    results = []
    for key_mask in (None, torch.ones(2, 256, dtype=torch.long)):
        leaves = [t.clone().requires_grad_() for t in base]
        out, _ = cpu_flash.block_sparse_cpu(*leaves, layout.blocks, layout.slot_valid, key_mask)
        results.append((out, *torch.autograd.grad(out, leaves, grad_out)))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    padded = torch.ones(2, 256)
    padded[1, -3:] = 0
    assert cpu_flash._padding(padded) is padded and cpu_flash._padding(torch.ones(2, 256)) is None
