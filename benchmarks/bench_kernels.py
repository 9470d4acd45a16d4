"""The block-sparse kernel candidates side by side: the measurements behind ``select_kernel``.

Kept in ``bigbird.kernels``: ``cpu_flash`` (fused CPU flash attention over three key sets merged by their
log-sum-exp: the global blocks, the window as a strided view, the gathered random blocks; forward and
backward), ``sdpa_gather`` (one gather + ``scaled_dot_product_attention``, any device) and ``explicit``
(spelled-out softmax, used only for ``need_weights``). Measured here and not kept:

* ``flex``: ``torch.nn.attention.flex_attention`` compiled with a BlockMask built from the layout
  (``--flex``; compiling takes ~20 s; PyTorch has no CPU backward for it);
* ``cpu_flash`` with other tile budgets (of the gathered random blocks);
* ``cpu_flash`` with its glue (gathers, merges, gradient sums) on every thread instead of the calling thread
  alone (:mod:`bigbird.kernels.threads`), the kernel before 2026-12-01 evening. These two are also timed
  alternating call by call (``--glue-pairs``), the fair comparison beside busy processes (``--contention``).

    python benchmarks/bench_kernels.py --flex
    python benchmarks/bench_kernels.py --contention 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common, contention


def flex_kernel(layout, length: int):
    """A compiled FlexAttention call with the layout as a BlockMask (no padding, no repeated blocks)."""
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    H, M, S = layout.blocks.shape
    n, bs = layout.num_blocks, layout.block_size
    dense = torch.zeros(H, n, n, dtype=torch.bool)
    dense[:, 0] = dense[:, -1] = True
    rows = torch.arange(1, n - 1)[None, :, None].expand(H, M, S)
    dense[torch.arange(H)[:, None, None].expand(H, M, S), rows, layout.blocks] = True
    num = dense.sum(-1, dtype=torch.int32)[None]
    indices = torch.argsort((~dense).to(torch.int8), dim=-1, stable=True).to(torch.int32)[None]
    block_mask = BlockMask.from_kv_blocks(num, indices, BLOCK_SIZE=bs)
    compiled = torch.compile(flex_attention)
    def call(q, k, v, **_):
        if not torch.is_grad_enabled():  # it refuses inputs that require grad on CPU, even under no_grad
            q, k, v = q.detach(), k.detach(), v.detach()
        return compiled(q, k, v, block_mask=block_mask)
    return call


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flex", action="store_true", help="also compile and time FlexAttention (forward)")
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="N busy processes beside the whole run (benchmarks/contention.py)")
    parser.add_argument("--glue-pairs", type=int, default=15, metavar="N",
                        help="forward+backward calls of each glue setting, alternating (default 15; 0: none)")
    parser.add_argument("--out", type=Path, default=common.RESULTS,
                        help="where kernels.md (kernels_busyN.md with --contention) goes")
    args = parser.parse_args(argv)
    if args.contention < 0:
        parser.error(f"--contention wants a number of busy processes >= 0, got {args.contention}")
    torch.set_num_threads(args.threads)
    with contention.busy(args.contention):
        _run(args, argv)


@contextlib.contextmanager
def _all_threads_glue() -> Iterator[None]:
    """The kernel's glue on every thread, as before 2026-12-01 evening: its thread teams switched off."""
    from bigbird.kernels import threads

    omp, threads._OMP = threads._OMP, None
    try:
        yield
    finally:
        threads._OMP = omp


def _glue_pairs(step: Callable[[], object], pairs: int) -> list[dict]:
    """Forward+backward seconds of the kernel with its glue on one thread and on every thread, alternating
    call by call so that both see the same load; best, median and mean of each."""
    settings = {"cpu_flash, glue on the calling thread (default)": contextlib.nullcontext,
                "cpu_flash, glue on every thread (before)": _all_threads_glue}
    times: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(pairs):
        for name, setting in settings.items():
            with setting():
                times[name].append(common.timed(step))
    return [{"impl": name, "best": min(t), "median": statistics.median(t), "mean": statistics.fmean(t),
             "calls": len(t)} for name, t in times.items()]


def _run(args: argparse.Namespace, argv: list[str] | None) -> None:
    import bigbird.kernels.cpu_flash as cpu_flash
    from bigbird.attention import KERNELS
    from bigbird.kernels.gather import explicit
    from bigbird.layout import sparse_layout

    L, H, D, bs, r = args.length, 12, 64, 64, 3
    layout = sparse_layout(seed=0, seq_len=L, block_size=bs, num_random_blocks=r, num_heads=H, max_seq_len=L)
    q, k, v = (torch.randn(1, H, L, D, requires_grad=True) for _ in range(3))
    key_mask = torch.ones(1, L)
    flops = common.attention_flops(common.sparse_pairs(layout), D)
    mm = common.mm_gflops()
    reference = KERNELS["sdpa_gather"](q, k, v, layout=layout, key_mask=key_mask).detach()

    candidates = {"cpu_flash": KERNELS["cpu_flash"], "sdpa_gather": KERNELS["sdpa_gather"],
                  "explicit": lambda *a, **kw: explicit(*a, **kw)[0]}
    if args.flex:
        start = time.perf_counter()
        candidates["flex"] = flex_kernel(layout, L)
        with torch.no_grad():
            candidates["flex"](q, k, v)
        print(f"flex: compiled in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    rows = []
    default_tile = cpu_flash.TILE_BYTES
    tiles = {"cpu_flash": default_tile, "cpu_flash tile 4 MiB": 4 << 20, "cpu_flash tile 96 MiB": 96 << 20,
             "cpu_flash untiled": 1 << 40}
    for name in list(candidates) + [t for t in tiles if t != "cpu_flash"]:
        fn = candidates.get(name, candidates["cpu_flash"])
        cpu_flash.TILE_BYTES = tiles.get(name, default_tile)
        row = {"impl": name}
        with torch.no_grad():
            out = fn(q, k, v, layout=layout, key_mask=key_mask)
            row["max_diff"] = (out - reference).abs().max().item()
            row["forward_s"] = common.time_calls(lambda fn=fn: fn(q, k, v, layout=layout, key_mask=key_mask),
                                                 args.repeat)["best"]
        try:
            def step(fn=fn):
                out = fn(q, k, v, layout=layout, key_mask=key_mask)
                torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
            step()
            row["fwd_bwd_s"] = common.time_calls(step, args.repeat)["best"]
        except (RuntimeError, NotImplementedError) as exc:
            row["fwd_bwd_s"] = None
            row["note"] = "no backward: " + str(exc).splitlines()[0][:50]
        row["fwd_gflops"] = flops / row["forward_s"] / 1e9
        row["fwd_pct_mm"] = 100 * row["fwd_gflops"] / mm
        if row.get("fwd_bwd_s"):
            row["fwd_bwd_gflops"] = 3 * flops / row["fwd_bwd_s"] / 1e9
        rows.append(row)
    cpu_flash.TILE_BYTES = default_tile
    pairs = []
    if args.glue_pairs:
        def cpu_step():
            out = candidates["cpu_flash"](q, k, v, layout=layout, key_mask=key_mask)
            torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
        pairs = _glue_pairs(cpu_step, args.glue_pairs)
    command = "python benchmarks/bench_kernels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"# Kernel candidates\n\nmachine: {common.machine()}\ncommand: `{command.strip()}`\n"
              f"L={L}, H={H}, D={D}, block {bs}, r={r}, batch 1, {args.threads} threads; torch.mm fp32 4096^3 "
              f"{mm:.0f} GFLOP/s; the pattern needs {flops / 1e9:.2f} GFLOP forward (3x for forward+backward)\n"
              f"load: {args.contention} busy processes beside the run (--contention)\n")
    text = common.table(rows, [("impl", "kernel"), ("forward_s", "forward s"), ("fwd_gflops", "fwd GFLOP/s"),
                               ("fwd_pct_mm", "fwd % of mm"), ("fwd_bwd_s", "fwd+bwd s"),
                               ("fwd_bwd_gflops", "fwd+bwd GFLOP/s"), ("max_diff", "max |diff|"),
                               ("note", "note")])
    if pairs:
        text += ("\n\nForward+backward, the two glue settings alternating call by call:\n\n"
                 + common.table(pairs, [("impl", "kernel"), ("best", "best s"), ("median", "median s"),
                                        ("mean", "mean s"), ("calls", "calls")]))
    print(header)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"kernels_busy{args.contention}.md" if args.contention else "kernels.md"
    (args.out / name).write_text(header + "\n" + text + "\n")


if __name__ == "__main__":
    main()
