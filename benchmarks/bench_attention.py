"""Attention alone: our block-sparse kernel against transformers' BigBird attention and dense SDPA.

Two levels, each with its own reference, both measured in this run:

* ``kernel``: attention on given ``q, k, v`` ``(1, H, L, D)``. ``ours`` is
  :func:`bigbird.attention.block_sparse_attention`; ``hf_sparse`` is the computation inside transformers'
  ``BigBirdBlockSparseAttention`` (its ``bigbird_block_sparse_attention`` method, which also builds the
  dense probability matrix it always returns); ``sdpa_dense`` is full attention through
  ``F.scaled_dot_product_attention``; ``flex`` is compiled FlexAttention with a BlockMask built from the same
  layout (:mod:`benchmarks.flex_mask`; not in the default CPU run: a compile per length and no CPU backward).
* ``layer``: the query/key/value projections plus attention on hidden states ``(1, L, H*D)``, same weights:
  ``ours_layer`` against ``hf_sparse_layer`` (the ``BigBirdBlockSparseAttention`` module) and
  ``hf_full_layer`` (``BigBirdSelfAttention``, ``original_full``).

Every implementation runs in its own process (see benchmarks/common.py for the timing and memory method).

    python benchmarks/bench_attention.py                 # the full default run
    python benchmarks/bench_attention.py --quick         # CI smoke test, seconds
    python benchmarks/bench_attention.py --device cuda --impls ours hf_sparse sdpa_dense flex
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

FULL = dict(heads=12, head_size=64, block_size=64, num_random_blocks=3,
            lengths=[1024, 2048, 4096, 8192, 16384])
QUICK = dict(heads=2, head_size=16, block_size=16, num_random_blocks=2, lengths=[256, 512])
IMPLS = {  # name -> (level, transformers?)
    "ours": ("kernel", False),
    "hf_sparse": ("kernel", True),
    "sdpa_dense": ("kernel", False),
    "flex": ("kernel", False),
    "ours_layer": ("layer", False),
    "hf_sparse_layer": ("layer", True),
    "hf_full_layer": ("layer", True),
}
REFERENCE = {"kernel": "hf_sparse", "layer": "hf_sparse_layer"}
# transformers builds L x L matrices (4 GB per call at 8,192 tokens); dense backward at 16,384 takes minutes.
CAPS = {f"{impl}:{mode}": 8192 for impl in ("hf_sparse", "hf_sparse_layer", "hf_full_layer") for mode in common.MODES}
CAPS["sdpa_dense:forward+backward"] = 8192
CAPS["flex:forward+backward"] = 0  # on CPU (PyTorch has no CPU backward for FlexAttention); CUDA: no cap
DENSE = {"sdpa_dense", "hf_full_layer"}
DEFAULT_CPU = [impl for impl in IMPLS if impl != "flex"]


# ---------------------------------------------------------------------------------------------- worker


def _hf_config(spec: dict, max_len: int):
    import transformers

    return transformers.BigBirdConfig(hidden_size=spec["heads"] * spec["head_size"],
                                      num_attention_heads=spec["heads"], block_size=spec["block_size"],
                                      num_random_blocks=spec["num_random_blocks"], max_position_embeddings=max_len,
                                      attention_probs_dropout_prob=0.0, use_bias=True)


def _setup(spec: dict, impl: str, length: int, grad: bool):
    """Inputs and a zero-argument call returning the ``(1, H, L, D)`` context for one point."""
    import torch.nn.functional as F

    from bigbird.attention import block_sparse_attention
    from bigbird.layout import sparse_layout

    H, D, bs, r = spec["heads"], spec["head_size"], spec["block_size"], spec["num_random_blocks"]
    max_len = max(spec["lengths"])
    device = spec["device"]
    torch.manual_seed(length)
    C = H * D
    key_mask = torch.ones(1, length, device=device)
    layout = sparse_layout(seed=0, seq_len=length, block_size=bs, num_random_blocks=r, num_heads=H,
                           max_seq_len=max_len, plan="transformers").to(device)  # the blocks transformers draws
    level = IMPLS[impl][0]
    if level == "kernel":
        q, k, v = (torch.randn(1, H, length, D).to(device).requires_grad_(grad) for _ in range(3))
        leaves = [q, k, v]
    else:
        x = torch.randn(1, length, C).to(device).requires_grad_(grad)
        leaves = [x]

    if impl == "ours":
        return leaves, lambda: block_sparse_attention(q, k, v, layout=layout, key_mask=key_mask)[0]
    if impl == "sdpa_dense":
        return leaves, lambda: F.scaled_dot_product_attention(q, k, v)
    if impl == "flex":
        from benchmarks.flex_mask import flex_call

        flex = flex_call(layout, device)
        return leaves, lambda: flex(q, k, v)

    from transformers.models.big_bird.modeling_big_bird import (
        BigBirdBlockSparseAttention,
        BigBirdModel,
        BigBirdSelfAttention,
    )

    torch.manual_seed(0)
    sparse = BigBirdBlockSparseAttention(_hf_config(spec, max_len), seed=0).to(device).train()  # seeded blocks
    for p in sparse.parameters():
        p.requires_grad_(grad)
    blocked, band, from_mask, to_mask = BigBirdModel.create_masks_for_block_sparse_attn(key_mask, bs)

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.view(1, length, H, D).transpose(1, 2)  # (1, H, L, D)

    if impl == "hf_sparse":
        def call():
            out, _ = sparse.bigbird_block_sparse_attention(
                q, k, v, band, from_mask, to_mask, blocked, blocked, H, r, D, bs, bs, 1, length, length,
                seed=0, plan_from_length=None, plan_num_rand_blocks=None)
            return out.transpose(1, 2)  # it returns (1, L, H, D)
        return leaves, call
    if impl == "hf_sparse_layer":
        return leaves, lambda: heads(sparse(x, band_mask=band, from_mask=from_mask, to_mask=to_mask,
                                            from_blocked_mask=blocked, to_blocked_mask=blocked)[0])
    if impl == "hf_full_layer":
        full = BigBirdSelfAttention(_hf_config(spec, max_len)).to(device).train()
        full.load_state_dict(sparse.state_dict())
        for p in full.parameters():
            p.requires_grad_(grad)
        return leaves, lambda: heads(full(x)[0])
    if impl == "ours_layer":
        wq, wk, wv = sparse.query, sparse.key, sparse.value

        def call():
            q_, k_, v_ = (heads(F.linear(x, w.weight, w.bias)) for w in (wq, wk, wv))
            return block_sparse_attention(q_, k_, v_, layout=layout, key_mask=key_mask)[0]
        return leaves, call
    raise ValueError(f"unknown implementation {impl!r}")


def _sample(out: torch.Tensor) -> list[float]:
    """A few output values, to check the implementations compute the same thing."""
    L = out.shape[2]
    return out[0, :, :: max(1, L // 8), :4].detach().float().flatten().tolist()


def worker(spec: dict, report=common.emit) -> None:
    """Measure ``spec["impls"]`` at every length and mode, calling ``report`` with each result."""
    torch.set_num_threads(spec["threads"])
    for impl in spec["impls"]:
        _measure(spec, impl, report)


def _measure(spec: dict, impl: str, report) -> None:
    warm: set[str] = set()
    for length in spec["lengths"]:
        for mode in spec["modes"]:
            if length > spec["caps"].get(f"{impl}:{mode}", 1 << 30):
                continue
            grad = mode == "forward+backward"
            leaves, call = _setup(spec, impl, length, grad)
            if grad:
                def step(call=call, leaves=leaves):
                    out = call()
                    out.backward(torch.ones_like(out))
                    for t in leaves:
                        t.grad = None
                    return out
            else:
                def step(call=call):
                    with torch.no_grad():
                        return call()
            # One-time costs (lazy imports, op registration; flex compiles per length) stay out of the numbers.
            if mode not in warm or impl == "flex":
                step()
                warm.add(mode)
            report({"impl": impl, "mode": mode, "length": length, **common.measure_step(step, spec, _sample)})


# ---------------------------------------------------------------------------------------------- parent


def _flops(spec: dict, impl: str, length: int, mode: str) -> int:
    from bigbird.layout import sparse_layout

    H, D = spec["heads"], spec["head_size"]
    if impl in DENSE:
        attn = common.attention_flops(H * length * length, D)
    else:
        layout = sparse_layout(seed=0, seq_len=length, block_size=spec["block_size"],
                               num_random_blocks=spec["num_random_blocks"], num_heads=H,
                               max_seq_len=max(spec["lengths"]))
        attn = common.attention_flops(common.sparse_pairs(layout), D)
    proj = 3 * 2 * length * (H * D) ** 2 if IMPLS[impl][0] == "layer" else 0
    return (attn + proj) * (3 if mode == "forward+backward" else 1)


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(__doc__.split("\n")[0], IMPLS, CAPS, repeat=10,
                           repeat_help="timed calls per point after a warm-up (fewer once a point has taken 10 s)",
                           quick_help="tiny sizes, for the CI smoke test", default_impls=DEFAULT_CPU)
    args = common.parse(parser, argv, worker)
    if args is None:
        return

    base = dict(QUICK if args.quick else FULL)
    spec = {**base, "lengths": sorted(args.lengths or base["lengths"]), **common.run_settings(args, 15.0),
            "modes": list(common.MODES)}
    try:
        defaults = CAPS if args.device == "cpu" else {k: v for k, v in CAPS.items() if not k.startswith("flex:")}
        spec["caps"] = common.caps(defaults, args.cap, list(IMPLS))
    except ValueError as exc:
        parser.error(str(exc))

    rows, mm = common.measured(args.threads, args.quick, lambda: common.run_impls(
        Path(__file__), worker, spec, args.impls, args.quick, timeout_s=900), busy=args.contention,
        device=args.device)

    by_key = {(r["impl"], r["mode"], r["length"]): r for r in rows}
    for r in rows:
        r["level"] = level = IMPLS[r["impl"]][0]
        common.add_rates(r, _flops(spec, r["impl"], r["length"], r["mode"]), mm.best,
                         by_key.get((REFERENCE[level], r["mode"], r["length"])), diff=r["impl"] not in DENSE)
    rows.sort(key=lambda r: (r["level"], r["mode"], r["length"], r["impl"]))

    columns = [("level", "level"), ("mode", "mode"), ("length", "L"), ("impl", "implementation"),
               ("time_s", "best s"), ("median_s", "median s"), ("speedup", "speed-up vs hf_sparse"),
               ("gflops", "GFLOP/s"), ("pct_mm", "% of mm"), ("peak_mib", "peak MiB"),
               ("mem_ratio", "mem / hf_sparse"), ("max_diff", "max |diff| vs hf")]
    text = common.table(rows, columns)
    cfg = {k: spec[k] for k in ("heads", "head_size", "block_size", "num_random_blocks", "threads", "repeat",
                                "device")}
    header = common.header("Attention benchmark", "bench_attention.py", argv, f"config: {cfg}", mm)
    common.write_report(args.out, common.report_name("attention", spec), header, text, spec, mm.best, rows,
                        f"attention alone, H={spec['heads']} D={spec['head_size']} block={spec['block_size']} "
                        f"r={spec['num_random_blocks']}, {args.threads} threads, {args.device}, "
                        f"{args.contention} busy processes")

if __name__ == "__main__":
    main()
