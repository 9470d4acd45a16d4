"""The block-sparse kernel candidates side by side: the measurements behind ``select_kernel``.

Kept in ``bigbird.kernels``: ``cpu_flash`` (tiled gather + fused CPU flash attention, forward and backward),
``sdpa_gather`` (one gather + ``scaled_dot_product_attention``, any device) and ``explicit`` (spelled-out
softmax, used only for ``need_weights``). Measured here and not kept:

* ``split_lse``: no gather for the window (a strided view of K/V), the two global key blocks broadcast,
  only the random blocks gathered; three fused attention calls merged by their log-sum-exp (forward only);
* ``flex``: ``torch.nn.attention.flex_attention`` compiled with a BlockMask built from the layout
  (``--flex``; compiling takes ~20 s; PyTorch has no CPU backward for it);
* ``cpu_flash`` with other tile budgets.

    python benchmarks/bench_kernels.py --flex
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common


def split_lse(q, k, v, *, layout, key_mask):
    """Window from strided views, globals broadcast, random blocks gathered; merged by log-sum-exp."""
    from bigbird.kernels.common import MASK_PENALTY, flat_block_index, gather_blocks, global_bias, global_rows

    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    B, H, L, D = q.shape
    bs, n = layout.block_size, layout.num_blocks
    M, BH, r = n - 2, B * H, layout.blocks.shape[-1] - 5
    k, v = k.contiguous(), v.contiguous()
    keep = torch.ones(B, L) if key_mask is None else key_mask.float()
    q_mid = q.reshape(BH, n, bs, D)[:, 1:-1]  # (BH, M, bs, D)
    parts = []
    # Window: key blocks i-1, i, i+1 are contiguous in memory, so a strided view needs no copy.
    k_win = k.as_strided((BH, M, 3 * bs, D), (n * bs * D, bs * D, D, 1))
    v_win = v.as_strided((BH, M, 3 * bs, D), (n * bs * D, bs * D, D, 1))
    win_keep = keep.view(B, 1, L).expand(B, H, L).reshape(BH, L).contiguous().as_strided((BH, M, 3 * bs), (L, bs, 1))
    win_keep = win_keep * layout.slot_valid[:, 1:4].float().repeat_interleave(bs, -1)  # (BH, M, 3bs)
    parts.append(flash(q_mid, k_win, v_win, attn_mask=((1 - win_keep) * MASK_PENALTY)[:, :, None], scale=D**-0.5))
    # The two global key blocks, the same for every query block: broadcast with stride 0.
    k_glob = global_rows(k, bs).reshape(BH, 1, 2 * bs, D).expand(BH, M, 2 * bs, D)
    v_glob = global_rows(v, bs).reshape(BH, 1, 2 * bs, D).expand(BH, M, 2 * bs, D)
    glob_keep = global_rows(keep[:, None, :, None], bs).reshape(B, 1, 1, 1, 2 * bs)
    glob_bias = ((1 - glob_keep) * MASK_PENALTY).expand(B, H, M, 1, 2 * bs).reshape(BH, M, 1, 2 * bs)
    parts.append(flash(q_mid, k_glob, v_glob, attn_mask=glob_bias, scale=D**-0.5))
    if r:
        index = flat_block_index(layout.blocks[:, :, 5:], B)
        k_rand = gather_blocks(k.view(BH * n, bs, D), index, bs)
        v_rand = gather_blocks(v.view(BH * n, bs, D), index, bs)
        rand_keep = keep.view(B, n, bs)[:, layout.blocks[:, :, 5:]].reshape(BH, M, 1, r * bs)
        parts.append(flash(q_mid, k_rand, v_rand, attn_mask=(1 - rand_keep) * MASK_PENALTY, scale=D**-0.5))
    lse = torch.stack([p[1] for p in parts])  # (P, BH, M, bs)
    weights = torch.softmax(lse, dim=0).unsqueeze(-1)
    out_mid = sum(w * p[0] for w, p in zip(weights, parts))
    out_glob, _ = flash(global_rows(q, bs), k, v, attn_mask=global_bias(key_mask, torch.float32), scale=D**-0.5)
    out = torch.cat([out_glob[:, :, :bs], out_mid.reshape(B, H, M * bs, D), out_glob[:, :, bs:]], dim=2)
    return out * keep[:, None, :, None]


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
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="where kernels.md goes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

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
                  "explicit": lambda *a, **kw: explicit(*a, **kw)[0], "split_lse": split_lse}
    if args.flex:
        start = time.perf_counter()
        candidates["flex"] = flex_kernel(layout, L)
        with torch.no_grad():
            candidates["flex"](q, k, v)
        print(f"flex: compiled in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    rows = []
    default_tile = cpu_flash.TILE_BYTES_PER_THREAD
    tiles = {"cpu_flash": default_tile, "cpu_flash tile 1 MiB/thread": 1 << 20,
             "cpu_flash tile 8 MiB/thread": 8 << 20, "cpu_flash untiled": 1 << 40}
    for name in list(candidates) + [t for t in tiles if t != "cpu_flash"]:
        fn = candidates.get(name, candidates["cpu_flash"])
        cpu_flash.TILE_BYTES_PER_THREAD = tiles.get(name, default_tile)
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
        if name == "split_lse":
            row["fwd_bwd_s"], row["note"] = None, "forward-only prototype"
        row["fwd_gflops"] = flops / row["forward_s"] / 1e9
        row["fwd_pct_mm"] = 100 * row["fwd_gflops"] / mm
        if row.get("fwd_bwd_s"):
            row["fwd_bwd_gflops"] = 3 * flops / row["fwd_bwd_s"] / 1e9
        rows.append(row)
    cpu_flash.TILE_BYTES_PER_THREAD = default_tile
    command = "python benchmarks/bench_kernels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"# Kernel candidates\n\nmachine: {common.machine()}\ncommand: `{command.strip()}`\n"
              f"L={L}, H={H}, D={D}, block {bs}, r={r}, batch 1, {args.threads} threads; torch.mm fp32 4096^3 "
              f"{mm:.0f} GFLOP/s; the pattern needs {flops / 1e9:.2f} GFLOP forward (3x for forward+backward)\n")
    text = common.table(rows, [("impl", "kernel"), ("forward_s", "forward s"), ("fwd_gflops", "fwd GFLOP/s"),
                               ("fwd_pct_mm", "fwd % of mm"), ("fwd_bwd_s", "fwd+bwd s"),
                               ("fwd_bwd_gflops", "fwd+bwd GFLOP/s"), ("max_diff", "max |diff|"),
                               ("note", "note")])
    print(header)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels.md").write_text(header + "\n" + text + "\n")


if __name__ == "__main__":
    main()
