"""The whole encoder: ours against transformers' BigBirdModel with the same weights.

transformers' ``BigBirdModel`` (base size by default, random weights, dropout 0) is saved once with
``save_pretrained``; each implementation loads that folder in its own fresh process (ours through
``bigbird.BigBirdModel.from_pretrained``). Both run in ``train()`` mode, where transformers draws the
seeded random blocks ours uses (dropout is 0, so the outputs must agree: the table shows the gap).

    python benchmarks/bench_model.py                     # the full default run (~10 min on 2 cores)
    python benchmarks/bench_model.py --quick             # CI smoke test
    python benchmarks/bench_model.py --impls ours_sparse --lengths 8192 16384 \
        --cap "ours_sparse:forward+backward=16384"       # our forward+backward at long lengths

The default lengths and caps (``CAPS``, change them with ``--cap IMPL:MODE=LENGTH``) keep the run near ten
minutes: transformers builds an L x L matrix per layer, full attention is quadratic, and forward+backward
costs three forwards. The extra ``--crossover`` lengths run our two attention types forward only.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common

BASE = dict(vocab_size=50358, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, block_size=64, num_random_blocks=3,
            lengths=[1024, 2048, 4096, 8192, 16384, 32768], crossover=[768])
QUICK = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=128, block_size=16, num_random_blocks=2, lengths=[256, 512], crossover=[])
IMPLS = {  # name -> (library, attention_type)
    "ours_sparse": ("ours", "block_sparse"),
    "ours_full": ("ours", "original_full"),
    "hf_sparse": ("transformers", "block_sparse"),
    "hf_full": ("transformers", "original_full"),
}
# Keep the default run near 10 minutes on 2 cores: transformers builds an L x L matrix per layer, dense
# attention is quadratic, and a forward+backward costs three forwards.
CAPS = {"ours_sparse:forward+backward": 4096, "ours_full:forward": 4096, "ours_full:forward+backward": 4096,
        "hf_sparse:forward": 8192, "hf_sparse:forward+backward": 4096, "hf_full:forward": 4096,
        "hf_full:forward+backward": 2048}
REFERENCE = {"ours_sparse": "hf_sparse", "ours_full": "hf_full", "hf_sparse": "hf_sparse", "hf_full": "hf_full"}


# ---------------------------------------------------------------------------------------------- worker


def save_weights(folder: str, cfg: dict, max_position_embeddings: int) -> None:
    """Save a random-weight transformers ``BigBirdModel`` of ``cfg`` (seed 0, dropout 0) into ``folder``."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.BigBirdConfig(**cfg, max_position_embeddings=max_position_embeddings,
                                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    transformers.BigBirdModel(config).save_pretrained(folder)


def load_model(folder: str, impl: str, device: str = "cpu") -> torch.nn.Module:
    """``impl`` (a key of :data:`IMPLS`) loaded from ``folder`` onto ``device``, in ``train()`` mode."""
    library, attention_type = IMPLS[impl]
    if library == "ours":
        import bigbird

        # transformers' training-mode random blocks (they differ from the original's at some lengths)
        model = bigbird.BigBirdModel.from_pretrained(folder, attention_type=attention_type,
                                                     random_attention_eval="transformers")
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.BigBirdModel.from_pretrained(folder, attention_type=attention_type)
    return model.to(device).train()  # dropout is 0; train() makes transformers draw the seeded random blocks


def worker(spec: dict, report=common.emit) -> None:
    """Measure ``spec["impls"]`` at their points, calling ``report`` with each result."""
    torch.set_num_threads(spec["threads"])
    for impl in spec["impls"]:
        model = load_model(spec["folder"], impl, spec["device"])
        warm: set[str] = set()
        for length, mode in spec["points"][impl]:
            report(_measure(spec, model, impl, length, mode, warm_up=mode not in warm))
            warm.add(mode)
        del model


def _measure(spec: dict, model: torch.nn.Module, impl: str, length: int, mode: str, warm_up: bool) -> dict:
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(5, spec["vocab_size"], (1, length), generator=g).to(spec["device"])
    mask = torch.ones_like(ids)

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).last_hidden_state

    def forward_backward() -> torch.Tensor:
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out.float().square().mean().backward()
        model.zero_grad(set_to_none=True)
        return out.detach()

    step = forward if mode == "forward" else forward_backward
    if warm_up:  # one-time costs (lazy imports, op registration) stay out of the numbers
        step()
    return {"impl": impl, "mode": mode, "length": length, **common.measure_step(step, spec, _sample)}


def _sample(out: torch.Tensor) -> list[float]:
    """A few output values, to check the implementations compute the same thing."""
    return out[0, :: max(1, out.shape[1] // 8), :8].float().flatten().tolist()


# ---------------------------------------------------------------------------------------------- parent


def forward_flops(spec: dict, impl: str, length: int) -> int:
    """Model FLOPs of one forward: the encoder's matmuls and the attended query/key pairs of the layout."""
    from bigbird.layout import sparse_layout

    H, C = spec["num_attention_heads"], spec["hidden_size"]
    if IMPLS[impl][1] == "block_sparse":
        layout = sparse_layout(seed=0, seq_len=length, block_size=spec["block_size"],
                               num_random_blocks=spec["num_random_blocks"], num_heads=H,
                               max_seq_len=spec["max_position_embeddings"])
        pairs = common.sparse_pairs(layout)  # the same count for every layer
    else:
        pairs = H * length * length
    return common.encoder_flops(length, C, spec["intermediate_size"], spec["num_hidden_layers"], pairs, C // H)


def add_model_rates(rows: list[dict], flops, mm: float) -> dict:
    """Tokens/s, FLOP rate and the ratios against the reference implementation of each row (in place).

    Returns the rows by ``(impl, mode, length)``."""
    by_key = {(r["impl"], r["mode"], r["length"]): r for r in rows}
    for r in rows:
        r["tokens_s"] = r["length"] / r["time_s"]
        common.add_rates(r, flops(r), mm, by_key.get((REFERENCE[r["impl"]], r["mode"], r["length"])))
    return by_key


def _flops(spec: dict, impl: str, length: int, mode: str) -> int:
    fwd = forward_flops(spec, impl, length)
    return fwd * (3 if mode == "forward+backward" else 1)


def _points(spec: dict, impls: list[str], caps: dict[str, int]) -> dict[str, list[tuple[int, str]]]:
    points: dict[str, list[tuple[int, str]]] = {}
    for impl in impls:
        pts = [(L, m) for m in common.MODES for L in spec["lengths"] if L <= caps[f"{impl}:{m}"]]
        if impl.startswith("ours"):
            pts += [(L, "forward") for L in spec["crossover"] if L <= caps[f"{impl}:forward"]]
        points[impl] = sorted(set(pts), key=lambda p: (p[1] != "forward", p[0]))
    return points


def _crossover(rows: list[dict]) -> str:
    """Where our block-sparse model is faster than our full-attention model (forward), as measured.

    A crossover is named only when block-sparse is faster at every measured length from some length up;
    otherwise (timing noise near the crossover, a loaded machine) the lengths where each one won are listed.
    """
    sparse = {r["length"]: r["time_s"] for r in rows if r["impl"] == "ours_sparse" and r["mode"] == "forward"}
    full = {r["length"]: r["time_s"] for r in rows if r["impl"] == "ours_full" and r["mode"] == "forward"}
    both = sorted(set(sparse) & set(full))
    if not both:
        return "not measured"
    ratios = "full/sparse time: " + ", ".join(f"{L}: {full[L] / sparse[L]:.2f}x" for L in both)
    faster = [L for L in both if sparse[L] < full[L]]
    if not faster:
        return f"full attention is faster at every measured length ({both[0]}..{both[-1]}); {ratios}"
    slower = [L for L in both if L not in faster]
    if slower and max(slower) > min(faster):  # no single crossover among the measured lengths
        return (f"no single crossover: block-sparse is faster at {faster}, full attention at {slower}; "
                f"{ratios}")
    first = faster[0]
    where = f"between {slower[-1]} and {first}" if slower else f"at or below {first}"
    return f"block-sparse is faster from {first} tokens up (crossover {where}); {ratios}"


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(__doc__.split("\n")[0], IMPLS, CAPS, repeat=2,
                           repeat_help="timed calls per point after a warm-up",
                           quick_help="a tiny model, for the CI smoke test",
                           extra=lambda p: p.add_argument("--crossover", type=int, nargs="*",
                                                          help="extra lengths, ours only, forward only"))
    args = common.parse(parser, argv, worker)
    if args is None:
        return

    cfg = dict(QUICK if args.quick else BASE)
    lengths = sorted(args.lengths or cfg.pop("lengths"))
    crossover = sorted(args.crossover if args.crossover is not None else cfg.pop("crossover"))
    cfg.pop("lengths", None), cfg.pop("crossover", None)
    max_pos = max(lengths + crossover)
    spec = {**cfg, "max_position_embeddings": max_pos, "lengths": lengths, "crossover": crossover,
            **common.run_settings(args, 10.0)}
    try:
        spec["points"] = _points(spec, args.impls, common.caps(CAPS, args.cap, list(IMPLS)))
    except ValueError as exc:
        parser.error(str(exc))

    def run() -> list[dict]:
        with tempfile.TemporaryDirectory(prefix="bigbird-bench-") as folder:
            save_weights(folder, cfg, max_pos)
            spec["folder"] = folder
            return common.run_impls(Path(__file__), worker, spec, args.impls, args.quick, timeout_s=1200)

    rows, mm = common.measured(args.threads, args.quick, run, busy=args.contention, device=args.device)

    by_key = add_model_rates(rows, lambda r: _flops(spec, r["impl"], r["length"], r["mode"]), mm.best)
    for r in rows:
        full = by_key.get(("ours_full", r["mode"], r["length"]))
        if r["impl"] == "ours_sparse" and full is not None:
            r["vs_ours_full"] = full["time_s"] / r["time_s"]
    rows.sort(key=lambda r: (r["mode"], r["length"], r["impl"]))

    columns = [("mode", "mode"), ("length", "L"), ("impl", "implementation"), ("time_s", "best s"),
               ("median_s", "median s"), ("runs", "runs"), ("tokens_s", "tokens/s"),
               ("speedup", "speed-up vs hf same attention"), ("vs_ours_full", "speed-up vs ours_full"),
               ("gflops", "GFLOP/s"), ("pct_mm", "% of mm"), ("peak_mib", "peak MiB"),
               ("mem_ratio", "mem / hf"), ("max_diff", "max |diff| vs hf")]
    text = common.table(rows, columns)
    growth = {r["length"]: r["peak_mib"] for r in rows if r["impl"] == "ours_sparse" and r["mode"] == "forward"}
    notes = [f"crossover: {_crossover(rows)}"]
    if 4096 in growth and 16384 in growth:
        notes.append(f"ours_sparse forward peak memory 4096 -> 16384: {growth[16384] / growth[4096]:.2f}x")
    model_cfg = {k: spec[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                      "vocab_size", "block_size", "num_random_blocks", "max_position_embeddings")}
    header = common.header("Model benchmark", "bench_model.py", argv,
                           f"model: {model_cfg}, batch 1, threads {args.threads}, repeat {spec['repeat']}, "
                           f"device {args.device}", mm)
    common.write_report(args.out, common.report_name("model", spec), header, text + "\n\n" + "\n".join(notes), spec, mm.best, rows,
                        f"BigBird encoder H={spec['hidden_size']} x {spec['num_hidden_layers']} layers, batch 1, "
                        f"{args.threads} threads, {args.device}, {args.contention} busy processes")

if __name__ == "__main__":
    main()
