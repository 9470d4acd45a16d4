"""How fast PyTorch's fused CPU flash attention runs for the call shapes our block-sparse kernel makes.

``bigbird.kernels.cpu_flash`` spends its time in ``scaled_dot_product_attention``'s fused CPU kernel, called
on three key sets per middle query block (the 2 global key blocks for all middle queries at once; the 3 window
blocks and the ``r`` random blocks for each query block of ``block_size`` queries) and once for the 2 global
query blocks against every key. The fused kernel's speed depends on the query length of a call (it splits
queries into chunks of 32 below 192 queries, 64 below 768 and 256 above) and on the key length. This script
times it over a grid of (queries per call, keys per call) with the same total work (12 heads x ``--length``
queries), as a percentage of the measured ``torch.mm`` rate, then weights the rates of our kernel's four call
shapes by their share of the pattern's FLOPs: the fastest our forward can be while it calls this kernel.

    python benchmarks/bench_flash_shapes.py            # 4,096 tokens, block 64, r = 3: ~1 min
    python benchmarks/bench_flash_shapes.py --quick    # CI smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from benchmarks import common


def rate(queries: int, keys: int, total_queries: int, head_size: int, repeat: int) -> float:
    """GFLOP/s of the fused kernel on ``total_queries // queries`` calls' worth of ``(queries, keys)`` work,
    batched in one call as the kernel batches its blocks."""
    g = torch.Generator().manual_seed(queries * 7919 + keys)
    n = max(1, total_queries // queries)
    q = torch.randn(n, 1, queries, head_size, generator=g)
    k, v = (torch.randn(n, 1, keys, head_size, generator=g) for _ in range(2))
    with torch.no_grad():
        best = common.time_calls(lambda: F.scaled_dot_product_attention(q, k, v), repeat)["best"]
    return 4 * head_size * n * queries * keys / best / 1e9


def call_shapes(length: int, block_size: int, num_random_blocks: int) -> list[dict]:
    """Our kernel's fused calls for one head: name, queries per call, keys per call, query rows in all."""
    n = length // block_size
    middle = (n - 2) * block_size
    return [
        {"set": "global query blocks x every key", "queries": 2 * block_size, "keys": length, "rows": 2 * block_size},
        {"set": "middle queries x 2 global key blocks", "queries": middle, "keys": 2 * block_size, "rows": middle},
        {"set": "query block x 3 window blocks", "queries": block_size, "keys": 3 * block_size, "rows": middle},
        {"set": f"query block x {num_random_blocks} random blocks", "queries": block_size,
         "keys": num_random_blocks * block_size, "rows": middle},
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--random-blocks", type=int, default=3)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks that it runs")
    p.add_argument("--out", type=Path, default=common.RESULTS, help="where flash_shapes.{md,json} go")
    a = p.parse_args(argv)
    if a.quick:
        a.length, a.block_size, a.random_blocks, a.heads, a.head_size, a.repeat = 256, 16, 2, 2, 16, 1
    torch.set_num_threads(a.threads)
    mm = common.mm_gflops(1024 if a.quick else 4096)
    total = a.heads * a.length
    grid_q = sorted({a.block_size, 2 * a.block_size, 3 * a.block_size, 4 * a.block_size, 12 * a.block_size})
    grid_k = sorted({2 * a.block_size, 3 * a.block_size, 8 * a.block_size})
    grid = {(ql, kl): rate(ql, kl, total, a.head_size, a.repeat) for kl in grid_k for ql in grid_q}
    shapes = call_shapes(a.length, a.block_size, a.random_blocks)
    for s in shapes:
        s["flops"] = 4 * a.head_size * a.heads * s["rows"] * s["keys"]
        s["gflops"] = rate(s["queries"], s["keys"], max(s["rows"] * a.heads, s["queries"]), a.head_size, a.repeat)
    flops = sum(s["flops"] for s in shapes)
    ceiling = flops / sum(s["flops"] / s["gflops"] for s in shapes)

    lines = [f"Fused CPU flash attention (`scaled_dot_product_attention`), {a.threads} threads, torch.mm "
             f"{mm:.0f} GFLOP/s, {a.heads} heads x {a.length} queries of size {a.head_size} per point.", "",
             "| keys per call | " + " | ".join(f"{q} queries" for q in grid_q) + " |",
             "|---|" + "---|" * len(grid_q)]
    for kl in grid_k:
        lines.append(f"| {kl} | " + " | ".join(f"{grid[ql, kl] / mm:.0%}" for ql in grid_q) + " |")
    lines += ["", f"Our kernel's calls at {a.length} tokens, block {a.block_size}, r = {a.random_blocks}:", "",
              "| call | queries x keys | share of FLOPs | % of mm |", "|---|---|---|---|"]
    for s in shapes:
        lines.append(f"| {s['set']} | {s['queries']} x {s['keys']} | {s['flops'] / flops:.0%} | "
                     f"{s['gflops'] / mm:.0%} |")
    lines += ["", f"Weighted: the forward's fused calls alone run at **{ceiling / mm:.0%} of mm** "
              f"({ceiling:.0f} GFLOP/s); merging the three softmaxes and gathering the random blocks come on top."]
    text = "\n".join(lines)
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "flash_shapes.md").write_text(text + "\n")
    (a.out / "flash_shapes.json").write_text(json.dumps({
        "mm_gflops": mm, "ceiling_gflops": ceiling, "shapes": shapes,
        "grid": [{"queries": ql, "keys": kl, "gflops": g} for (ql, kl), g in grid.items()],
        "spec": {k: v for k, v in vars(a).items() if k != "out"}}, indent=1))


if __name__ == "__main__":
    main()
