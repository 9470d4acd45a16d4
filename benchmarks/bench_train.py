"""Training step: ours against transformers' BigBirdModel with the same weights.

The weights are saved once (transformers' ``BigBirdModel``, base width, ``--layers`` layers, random, dropout
0) and loaded by both implementations (see benchmarks/bench_model.py), in ``train()`` mode, block-sparse
attention. Modes, all on one sequence (batch 1) and the scalar loss ``mean(last_hidden_state ** 2)``:

* ``forward``: no grad; ``fwd+bwd``: forward and backward of the loss; ``step``: forward, backward and an
  AdamW step (``torch.optim.AdamW`` defaults, lr 1e-12 so the weights do not move and every call
  computes the same thing: the step's work is the same at any lr);
* ``+ckpt``: the same with gradient checkpointing (``model.gradient_checkpointing_enable()``, non-reentrant,
  every layer; the recomputed forward is not counted in the FLOP rate).

Two ways to run:

* default: each implementation in its own fresh process, one after the other: times and **peak memory**
  (resident memory above the weights, gradients excluded only where they are freed; see common.py);
* ``--interleaved``: both implementations in one process with the same weights, their calls alternating
  (ours, transformers, then transformers, ours, ...): the **ratios** stay comparable when the machine's load
  changes during the run (``--contention N``, or a shared machine). No memory figures in this mode.

    python benchmarks/bench_train.py                      # 4 base layers, 1,024..8,192 tokens (~10 min, 2 cores)
    python benchmarks/bench_train.py --interleaved --lengths 4096              # the headline ratios
    python benchmarks/bench_train.py --interleaved --lengths 4096 --contention 2
    python benchmarks/bench_train.py --quick              # CI smoke test, seconds
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common
from benchmarks.bench_model import IMPLS, add_model_rates, forward_flops, load_model, save_weights

BASE = dict(vocab_size=50358, hidden_size=768, num_attention_heads=12, intermediate_size=3072, block_size=64,
            num_random_blocks=3)
QUICK = dict(vocab_size=1000, hidden_size=64, num_attention_heads=4, intermediate_size=128, block_size=16,
             num_random_blocks=2)
LENGTHS, QUICK_LENGTHS = [1024, 2048, 4096, 8192], [256]
LAYERS, QUICK_LAYERS = 4, 2
MODES = ("forward", "fwd+bwd", "fwd+bwd+ckpt", "step", "step+ckpt")
DEFAULT_IMPLS = ["ours_sparse", "hf_sparse"]
LR = 1e-12  # far below half an ulp of the weights: AdamW does all its work and changes nothing
# Keep the default run (4 layers) near 10 minutes on 2 cores: transformers' block-sparse attention builds an
# L x L matrix per layer and head, a training step costs three forwards, checkpointing four.
CAPS = {"hf_sparse:fwd+bwd": 4096, "hf_sparse:step": 4096, "hf_sparse:fwd+bwd+ckpt": 2048,
        "hf_sparse:step+ckpt": 2048, "ours_sparse:fwd+bwd+ckpt": 4096, "ours_sparse:step+ckpt": 4096,
        **{f"{i}:{m}": 4096 for i in ("ours_full", "hf_full") for m in MODES}}


# ---------------------------------------------------------------------------------------------- worker


class Trainer:
    """One model and its (lazily created) optimizer; :meth:`step` gives the call of a point."""

    def __init__(self, model: torch.nn.Module, spec: dict) -> None:
        self.model, self.spec = model, spec
        self.optimizer: torch.optim.Optimizer | None = None

    def step(self, mode: str, length: int) -> Callable[[], torch.Tensor]:
        """A zero-argument call running ``mode`` on a ``length``-token input; returns the hidden states."""
        model, device = self.model, self.spec["device"]
        g = torch.Generator().manual_seed(length)
        ids = torch.randint(5, self.spec["vocab_size"], (1, length), generator=g).to(device)
        mask = torch.ones_like(ids)
        # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_* (ours has both names)
        if mode.endswith("+ckpt"):
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable({"use_reentrant": False})
        else:
            (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
        if mode == "forward":
            def forward() -> torch.Tensor:
                with torch.no_grad():
                    return model(input_ids=ids, attention_mask=mask).last_hidden_state
            return forward
        if mode.startswith("step") and self.optimizer is None:
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        optimizer = self.optimizer if mode.startswith("step") else None

        def train() -> torch.Tensor:
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            out.float().square().mean().backward()
            if optimizer is not None:
                optimizer.step()
            model.zero_grad(set_to_none=True)
            return out.detach()
        return train


def _sample(out: torch.Tensor) -> list[float]:
    """A few output values, to check the implementations compute the same thing."""
    return out[0, :: max(1, out.shape[1] // 8), :8].float().flatten().tolist()


def worker(spec: dict, report=common.emit) -> None:
    """Measure ``spec["impls"]`` at their points (interleaved if ``spec["interleaved"]``), calling
    ``report`` with each result."""
    torch.set_num_threads(spec["threads"])
    if spec["interleaved"]:
        _interleaved(spec, report)
        return
    for impl in spec["impls"]:
        trainer = Trainer(load_model(spec["folder"], impl, spec["device"]), spec)
        warm: set[str] = set()
        for length, mode in spec["points"][impl]:
            step = trainer.step(mode, length)
            if mode not in warm:  # one-time costs (lazy imports, optimizer state) stay out of the numbers
                step()
                warm.add(mode)
            report({"impl": impl, "mode": mode, "length": length, **common.measure_step(step, spec, _sample)})
        del trainer


def _interleaved(spec: dict, report) -> None:
    """Every implementation in this process; at each point their calls alternate (the order flips every
    round), up to ``repeat`` rounds or ``point_budget_s`` per implementation."""
    trainers = {impl: Trainer(load_model(spec["folder"], impl, spec["device"]), spec) for impl in spec["impls"]}
    own = {impl: {tuple(p) for p in spec["points"][impl]} for impl in spec["impls"]}  # JSON gives lists
    points = sorted(set().union(*own.values()), key=lambda p: (MODES.index(p[1]), p[0]))
    warm: set[tuple[str, str]] = set()
    for length, mode in points:
        impls = [i for i in spec["impls"] if (length, mode) in own[i]]
        steps = {i: trainers[i].step(mode, length) for i in impls}
        for i in impls:
            if (i, mode) not in warm:
                steps[i]()
                warm.add((i, mode))
        times: dict[str, list[float]] = {i: [] for i in impls}
        samples: dict[str, list[float]] = {}
        for round_ in range(max(1, spec["repeat"])):
            for i in impls if round_ % 2 == 0 else impls[::-1]:
                seconds, out = _timed_call(steps[i], spec["device"])
                times[i].append(seconds)
                if i not in samples:
                    samples[i] = _sample(out)
                del out
            if sum(map(sum, times.values())) >= spec["point_budget_s"] * len(impls):
                break
        for i in impls:
            t = sorted(times[i])
            report({"impl": i, "mode": mode, "length": length, "time_s": t[0], "median_s": t[len(t) // 2],
                    "runs": len(t), "peak_mib": None, "sample": samples[i]})


def _timed_call(step: Callable[[], torch.Tensor], device: str) -> tuple[float, torch.Tensor]:
    out: list[torch.Tensor] = []
    seconds = common.timed(lambda: out.append(step()), device)
    return seconds, out[0]


# ---------------------------------------------------------------------------------------------- parent


def _flops(spec: dict, impl: str, length: int, mode: str) -> int:
    """Model FLOPs of one call: the forward (see bench_model.py), 3x with a backward (recompute not counted)."""
    fwd = forward_flops(spec, impl, length)
    return fwd * (1 if mode == "forward" else 3)


def _extra(p) -> None:
    p.add_argument("--layers", type=int, help=f"encoder layers (default {LAYERS}; {QUICK_LAYERS} with --quick)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--interleaved", action="store_true",
                   help="all implementations in one process, calls alternating (ratios; no memory figures)")


def _summary(rows: list[dict]) -> str:
    """One line per (mode, length) of ours: the speed-up and memory ratio against transformers."""
    lines = []
    for r in rows:
        if r["impl"].startswith("ours") and r.get("speedup") is not None:
            mem = f", memory {r['mem_ratio']:.2f}x transformers'" if r.get("mem_ratio") is not None else ""
            lines.append(f"- {r['impl']} {r['mode']} at {r['length']}: {r['speedup']:.2f}x transformers{mem}")
    return "\n".join(lines) or "- no pair of ours and transformers measured"


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(__doc__.split("\n")[0], IMPLS, CAPS, repeat=2,
                           repeat_help="timed calls (interleaved: rounds) per point after a warm-up",
                           quick_help="a tiny model, for the CI smoke test", extra=_extra,
                           default_impls=DEFAULT_IMPLS)
    args = common.parse(parser, argv, worker)
    if args is None:
        return
    cfg = dict(QUICK if args.quick else BASE)
    cfg["num_hidden_layers"] = args.layers or (QUICK_LAYERS if args.quick else LAYERS)
    if cfg["num_hidden_layers"] < 1:
        parser.error(f"--layers wants a positive number, got {cfg['num_hidden_layers']}")
    lengths = sorted(args.lengths or (QUICK_LENGTHS if args.quick else LENGTHS))
    spec = {**cfg, "max_position_embeddings": max(lengths), "lengths": lengths, "interleaved": args.interleaved,
            **common.run_settings(args, 30.0)}
    try:
        caps = common.caps(CAPS, args.cap, list(IMPLS), MODES)
    except ValueError as exc:
        parser.error(str(exc))
    spec["points"] = {impl: [(L, m) for m in MODES if m in args.modes for L in lengths if L <= caps[f"{impl}:{m}"]]
                      for impl in args.impls}

    def run() -> list[dict]:
        with tempfile.TemporaryDirectory(prefix="bigbird-bench-") as folder:
            save_weights(folder, cfg, spec["max_position_embeddings"])
            spec["folder"] = folder
            if not args.interleaved:
                return common.run_impls(Path(__file__), worker, spec, args.impls, args.quick, timeout_s=1800)
            if args.quick:
                rows: list[dict] = []
                worker({**spec, "impls": args.impls}, report=rows.append)
                return rows
            return common.run_worker(Path(__file__), {**spec, "impls": args.impls}, timeout_s=args.timeout or 3600)

    rows, mm = common.measured(args.threads, args.quick, run, busy=args.contention, device=args.device)

    add_model_rates(rows, lambda r: _flops(spec, r["impl"], r["length"], r["mode"]), mm.best)
    rows.sort(key=lambda r: (MODES.index(r["mode"]), r["length"], r["impl"]))
    columns = [("mode", "mode"), ("length", "L"), ("impl", "implementation"), ("time_s", "best s"),
               ("median_s", "median s"), ("runs", "runs"), ("tokens_s", "tokens/s"),
               ("speedup", "speed-up vs hf same attention"), ("gflops", "GFLOP/s"), ("pct_mm", "% of mm"),
               ("peak_mib", "peak MiB"), ("mem_ratio", "mem / hf"), ("max_diff", "max |diff| vs hf")]
    model_cfg = {k: spec[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                      "vocab_size", "block_size", "num_random_blocks", "max_position_embeddings")}
    how = "interleaved in one process" if args.interleaved else "one fresh process per implementation"
    header = common.header("Training-step benchmark", "bench_train.py", argv,
                           f"model: {model_cfg}, batch 1, threads {args.threads}, repeat {spec['repeat']}, "
                           f"device {args.device}, {how}", mm)
    name = common.report_name("train_interleaved" if args.interleaved else "train", spec)
    common.write_report(args.out, name, header, common.table(rows, columns) + "\n\n" + _summary(rows), spec,
                        mm.best, rows, f"BigBird training step, H={spec['hidden_size']} x "
                        f"{spec['num_hidden_layers']} layers, batch 1, {args.threads} threads, {how}, "
                        f"{args.contention} busy processes")


if __name__ == "__main__":
    main()
