"""Helpers shared by the benchmarks: timing, FLOP counts, the torch.mm roofline, peak memory, output.

Method, stated once:

* **Time**: the first call of each point is a warm-up (it also gives the peak memory); then up to
  ``repeat`` timed calls (fewer when they are slow, see :func:`time_calls`; a first call slower than the
  script's ``max_call_s`` is itself the measurement); we report the best and the median.
* **FLOP rate**: the FLOPs the computation needs (for block-sparse attention: the attended query/key pairs
  of the layout, counted once; backward = 2x forward) divided by the best time, next to a large
  ``torch.mm`` (fp32, 4096^3) measured in the same run with the same threads.
* **Peak memory**: each implementation runs in its own fresh process; before each point we free what
  the allocator keeps (``malloc_trim``) and reset the kernel's high-water mark (``/proc/self/clear_refs``),
  so peak = ``VmHWM`` after the first call minus ``VmRSS`` before it: resident memory above the
  weights and inputs, allocator overhead included.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ timing


def time_calls(fn: Callable[[], object], repeat: int, budget_s: float = 10.0) -> dict:
    """Best and median seconds of up to ``repeat`` calls (call ``fn`` once before, as a warm-up).

    Stops early once the calls have taken ``budget_s`` in all, so the slow references stay affordable.
    """
    times: list[float] = []
    while len(times) < max(1, repeat) and sum(times) < budget_s:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"best": min(times), "median": statistics.median(times), "runs": len(times)}


def measure_step(step: Callable[[], torch.Tensor], spec: dict,
                 sample: Callable[[torch.Tensor], list[float]]) -> dict:
    """Peak memory and time of ``step`` (already warmed up), as the keys of a result row.

    The first call gives the peak memory and a ``sample`` of the output; if it took less than
    ``spec["max_call_s"]``, up to ``spec["repeat"]`` more calls (``spec["point_budget_s"]`` in all) give the
    times, otherwise that one call is the measurement (it includes the first-call costs: page faults,
    layout draw).
    """
    base = memory_baseline()
    start = time.perf_counter()
    out = step()
    first = time.perf_counter() - start
    peak = peak_mib_since(base)
    values = sample(out)
    del out
    if first < spec["max_call_s"]:
        timing = time_calls(step, spec["repeat"], budget_s=spec["point_budget_s"])
    else:
        timing = {"best": first, "median": first, "runs": 1}
    return {"time_s": timing["best"], "median_s": timing["median"], "runs": timing["runs"], "peak_mib": peak,
            "sample": values}


def mm_gflops(size: int = 4096, repeat: int = 3) -> float:
    """GFLOP/s of a large fp32 ``torch.mm`` (the roofline the other numbers are compared with)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    best = min(_timed(lambda: torch.mm(a, b, out=out)) for _ in range(repeat))
    return 2 * size**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------- FLOPs


def sparse_pairs(layout) -> int:
    """Attended (query, key) pairs of a block-sparse layout, over all heads, each pair counted once."""
    H = layout.blocks.shape[0]
    bs, n = layout.block_size, layout.num_blocks
    unique_mid = int(layout.slot_valid.sum()) * bs * bs  # the invalid slots are the structural duplicates
    return H * (2 * bs * n * bs + unique_mid)


def attention_flops(pairs: int, head_size: int) -> int:
    """Forward FLOPs of attention over ``pairs`` query/key pairs: ``QK^T`` and ``PV``, 2 FLOPs per MAC."""
    return 4 * pairs * head_size


def encoder_flops(length: int, hidden: int, intermediate: int, layers: int, attention_pairs: int,
                  head_size: int) -> int:
    """Forward FLOPs of a BERT-style encoder (projections, MLP, attention) for one sequence."""
    dense = 2 * length * (4 * hidden * hidden + 2 * hidden * intermediate)
    return layers * (dense + attention_flops(attention_pairs, head_size))


# ------------------------------------------------------------------------------------------------ memory


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_baseline() -> int:
    """Release freed memory, reset the high-water mark; return the resident set in KiB."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def peak_mib_since(baseline_kb: int) -> float:
    """Peak resident memory above ``baseline_kb`` since :func:`memory_baseline`, in MiB."""
    return (_status_kb("VmHWM") - baseline_kb) / 1024


# -------------------------------------------------------------------------------------------- settings

MODES = ("forward", "forward+backward")


def caps(defaults: dict[str, int], overrides: Sequence[str], impls: Sequence[str]) -> dict[str, int]:
    """Longest length per ``"impl:mode"``: ``defaults`` (missing = no cap), then ``overrides`` such as
    ``"hf_sparse:forward=16384"`` or ``"hf_sparse:*=16384"`` (both modes).

    Raises:
        ValueError: On a malformed override or an unknown implementation or mode.
    """
    out = {f"{i}:{m}": defaults.get(f"{i}:{m}", 1 << 30) for i in impls for m in MODES}
    for item in overrides:
        try:
            key, value = item.split("=")
            impl, mode = key.split(":")
            length = int(value)
        except ValueError:
            raise ValueError(f"--cap wants IMPL:MODE=LENGTH, got {item!r}") from None
        modes = MODES if mode == "*" else (mode,)
        if impl not in impls or not set(modes) <= set(MODES):
            raise ValueError(f"--cap {item!r}: implementations {list(impls)}, modes {list(MODES)} or *")
        for m in modes:
            out[f"{impl}:{m}"] = length
    return out


def parser(description: str, impls: Sequence[str], default_caps: dict[str, int], *, repeat: int,
           repeat_help: str, quick_help: str,
           extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.ArgumentParser:
    """The command line the per-implementation benchmarks share.

    ``--lengths``, then what ``extra`` adds, then ``--repeat`` (default ``repeat``), ``--threads``,
    ``--quick``, ``--impls``, ``--cap``, ``--out`` and the hidden ``--worker``.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--lengths", type=int, nargs="+", help="sequence lengths (multiples of the block size)")
    if extra is not None:
        extra(p)
    p.add_argument("--repeat", type=int, default=repeat, help=repeat_help)
    p.add_argument("--threads", type=int,
                   help="torch.set_num_threads in every process (default 2; 1 with --quick, which must "
                        "stay fast on a busy CI machine where OpenMP threads wait for each other)")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--impls", nargs="+", choices=list(impls), default=list(impls))
    p.add_argument("--cap", action="append", default=[], metavar="IMPL:MODE=LENGTH",
                   help=f"longest length for an implementation and mode (* = both); defaults {default_caps}")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the table and plot go")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None,
          worker: Callable[[dict], None]) -> argparse.Namespace | None:
    """Parse ``argv`` and fill in the default ``--threads``; in a worker process, run ``worker`` on its
    spec and return None."""
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    if args.worker:
        worker(json.loads(args.worker))
        return None
    return args


def run_settings(args: argparse.Namespace, max_call_s: float) -> dict:
    """The spec entries for threads and timing (``--quick``: one timed call, 2 s a point)."""
    return {"threads": args.threads, "repeat": 1 if args.quick else args.repeat, "max_call_s": max_call_s,
            "point_budget_s": 2.0 if args.quick else 10.0}


# ------------------------------------------------------------------------------------- worker processes


def run_worker(script: Path, spec: dict, timeout_s: float) -> list[dict]:
    """Run ``script --worker SPEC`` in a fresh process; collect its ``RESULT {json}`` lines.

    A worker killed by the timeout (or by the OOM killer) keeps the points it finished.
    """
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=ROOT)
        stdout, err = proc.stdout, (proc.stderr if proc.returncode else "")
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = f"timed out after {timeout_s:.0f} s"
    results = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
    if err:
        print(f"  worker {spec.get('impls')}: {err.strip().splitlines()[-1] if err.strip() else 'failed'}",
              file=sys.stderr)
    return results


def run_impls(script: Path, worker: Callable[..., None], spec: dict, impls: Sequence[str], quick: bool,
              timeout_s: float) -> list[dict]:
    """Results of ``impls``: one fresh ``script`` process per implementation, or with ``quick`` all of
    them in this process (the smoke test must not pay for more interpreter start-ups)."""
    rows: list[dict] = []
    if quick:
        worker({**spec, "impls": list(impls)}, report=rows.append)
        return rows
    for impl in impls:
        t0 = time.perf_counter()
        rows += run_worker(script, {**spec, "impls": [impl]}, timeout_s=timeout_s)
        print(f"  {impl}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows


@dataclass
class Roofline:
    """``torch.mm`` GFLOP/s before and after a run, and when the run started."""

    size: int
    before: float
    after: float
    started: float

    @property
    def best(self) -> float:
        """The rate the "% of mm" column divides by."""
        return max(self.before, self.after)


def measured(threads: int, quick: bool, run: Callable[[], list[dict]]) -> tuple[list[dict], Roofline]:
    """``run()`` with ``threads`` torch threads, between two ``torch.mm`` measurements (1024^3 with
    ``quick``, 4096^3 otherwise)."""
    torch.set_num_threads(threads)
    size = 1024 if quick else 4096
    before = mm_gflops(size)
    started = time.perf_counter()
    rows = run()
    return rows, Roofline(size, before, mm_gflops(size), started)


def add_rates(row: dict, flops: int, mm: float, ref: dict | None, diff: bool = True) -> None:
    """Set ``gflops`` and ``pct_mm`` of ``row``; against ``ref`` (if any), ``speedup``, ``mem_ratio`` and,
    with ``diff``, ``max_diff`` (largest gap between the output samples)."""
    row["gflops"] = flops / row["time_s"] / 1e9
    row["pct_mm"] = 100 * row["gflops"] / mm
    if ref is not None:
        row["speedup"] = ref["time_s"] / row["time_s"]
        row["mem_ratio"] = row["peak_mib"] / ref["peak_mib"] if ref["peak_mib"] > 0 else None
        if diff:
            row["max_diff"] = max(abs(a - b) for a, b in zip(row["sample"], ref["sample"]))


def emit(result: dict) -> None:
    """Report one point from a worker."""
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------ output


def machine() -> str:
    """CPU model, core count and library versions, for the record."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def header(title: str, script: str, argv: list[str] | None, config: str, mm: Roofline) -> str:
    """The lines above a results table: title, machine, command, ``config``, torch.mm rates, wall time."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    return (f"# {title}\n\nmachine: {machine()}\ncommand: `{command.strip()}`\n{config}\n"
            f"torch.mm fp32 {mm.size}^3: {mm.before:.0f} GFLOP/s before, {mm.after:.0f} after "
            f"(% of mm uses {mm.best:.0f})\nwall time: {time.perf_counter() - mm.started:.0f} s\n")


def write_report(out: Path, name: str, head: str, body: str, spec: dict, mm: float, rows: Sequence[dict],
                 plot_title: str) -> None:
    """Print ``head`` and ``body``; write ``name``.md (both), ``name``.json (spec and rows without their
    output samples) and ``name``.png (:func:`plot`) into ``out``."""
    print(head)
    print(body)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(head + "\n" + body + "\n")
    (out / f"{name}.json").write_text(json.dumps({"spec": spec, "mm_gflops": mm, "rows": [
        {k: v for k, v in r.items() if k != "sample"} for r in rows]}, indent=1))
    plot(rows, out / f"{name}.png", plot_title)
    print(f"\nwrote {out / f'{name}.md'} and {out / f'{name}.png'}")


def table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows``; ``columns`` are (key, header) pairs, missing values print as '-'."""
    cells = [[_fmt(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    line = "| " + " | ".join(h.ljust(w) for (_, h), w in zip(columns, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"
    return str(value)


def plot(rows: Sequence[dict], path: Path, title: str) -> None:
    """Time and peak memory against length (log-log): a colour per implementation, a line style per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    impls = sorted({r["impl"] for r in rows})
    colours = {impl: plt.get_cmap("tab10")(i % 10) for i, impl in enumerate(impls)}
    styles = {"forward": "-", "forward+backward": "--"}
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 4.8))
    for impl in impls:
        for mode, style in styles.items():
            pts = sorted((r for r in rows if r["impl"] == impl and r["mode"] == mode), key=lambda r: r["length"])
            for ax, key in ((ax_t, "time_s"), (ax_m, "peak_mib")):
                xy = [(p["length"], p[key]) for p in pts if p.get(key) is not None and p[key] > 0]
                if xy:
                    ax.plot(*zip(*xy), style, marker="o", ms=3, color=colours[impl])
    for ax, label in ((ax_t, "best time per call (s)"), (ax_m, "peak memory above inputs (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], color=colours[i], label=i) for i in impls]
    handles += [Line2D([], [], color="black", linestyle=s, label=m) for m, s in styles.items()]
    ax_m.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
