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
  weights and inputs, allocator overhead included. On CUDA (``--device cuda``): the caching allocator's
  peak (``torch.cuda.max_memory_allocated``) above what was allocated before the call.
* **Load**: ``--contention N`` runs N busy processes (:mod:`benchmarks.contention`) beside the whole run,
  the ``torch.mm`` measurements included; the report records N and the load average at the start.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import contention
from benchmarks.report import header, machine, plot, table, write_report  # noqa: F401 (the scripts' API)

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ timing


def time_calls(fn: Callable[[], object], repeat: int, budget_s: float = 10.0, device: str = "cpu") -> dict:
    """Best and median seconds of up to ``repeat`` calls (call ``fn`` once before, as a warm-up).

    Stops early once the calls have taken ``budget_s`` in all, so the slow references stay affordable.
    On CUDA each call is timed up to its last kernel's end (synchronized before and after).
    """
    times: list[float] = []
    while len(times) < max(1, repeat) and sum(times) < budget_s:
        times.append(timed(fn, device))
    return {"best": min(times), "median": statistics.median(times), "runs": len(times)}


def sync(device: str) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Seconds of one call of ``fn`` (on CUDA, up to the end of the work it queued)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def measure_step(step: Callable[[], torch.Tensor], spec: dict,
                 sample: Callable[[torch.Tensor], list[float]]) -> dict:
    """Peak memory and time of ``step`` (already warmed up), as the keys of a result row.

    The first call gives the peak memory and a ``sample`` of the output; if it took less than
    ``spec["max_call_s"]``, up to ``spec["repeat"]`` more calls (``spec["point_budget_s"]`` in all) give the
    times, otherwise that one call is the measurement (it includes the first-call costs: page faults,
    layout draw).
    """
    device = spec.get("device", "cpu")
    base = memory_baseline(device)
    out: list[torch.Tensor] = []
    first = timed(lambda: out.append(step()), device)
    peak = peak_mib_since(base, device)
    values = sample(out.pop())
    if first < spec["max_call_s"]:
        timing = time_calls(step, spec["repeat"], budget_s=spec["point_budget_s"], device=device)
    else:
        timing = {"best": first, "median": first, "runs": 1}
    return {"time_s": timing["best"], "median_s": timing["median"], "runs": timing["runs"], "peak_mib": peak,
            "sample": values}


def mm_gflops(size: int = 4096, repeat: int = 3, device: str = "cpu") -> float:
    """GFLOP/s of a large fp32 ``torch.mm`` (the roofline the other numbers are compared with)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    torch.mm(a, b, out=out)
    best = min(timed(lambda: torch.mm(a, b, out=out), device) for _ in range(repeat))
    return 2 * size**3 / best / 1e9


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


def memory_baseline(device: str = "cpu") -> int:
    """Release freed memory, reset the high-water mark; return the resident set in KiB (on CUDA: the
    bytes the caching allocator has handed out)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def peak_mib_since(baseline: int, device: str = "cpu") -> float:
    """Peak memory above ``baseline`` (what :func:`memory_baseline` returned) since that call, in MiB."""
    if device.startswith("cuda"):
        return (torch.cuda.max_memory_allocated() - baseline) / 2**20
    return (_status_kb("VmHWM") - baseline) / 1024


# -------------------------------------------------------------------------------------------- settings

MODES = ("forward", "forward+backward")


def caps(defaults: dict[str, int], overrides: Sequence[str], impls: Sequence[str],
         modes: Sequence[str] = MODES) -> dict[str, int]:
    """Longest length per ``"impl:mode"``: ``defaults`` (missing = no cap), then ``overrides`` such as
    ``"hf_sparse:forward=16384"`` or ``"hf_sparse:*=16384"`` (every mode).

    Raises:
        ValueError: On a malformed override or an unknown implementation or mode.
    """
    out = {f"{i}:{m}": defaults.get(f"{i}:{m}", 1 << 30) for i in impls for m in modes}
    for item in overrides:
        try:
            key, value = item.split("=")
            impl, mode = key.split(":")
            length = int(value)
        except ValueError:
            raise ValueError(f"--cap wants IMPL:MODE=LENGTH, got {item!r}") from None
        chosen = tuple(modes) if mode == "*" else (mode,)
        if impl not in impls or not set(chosen) <= set(modes):
            raise ValueError(f"--cap {item!r}: implementations {list(impls)}, modes {list(modes)} or *")
        for m in chosen:
            out[f"{impl}:{m}"] = length
    return out


def parser(description: str, impls: Sequence[str], default_caps: dict[str, int], *, repeat: int,
           repeat_help: str, quick_help: str,
           extra: Callable[[argparse.ArgumentParser], None] | None = None,
           default_impls: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line the per-implementation benchmarks share.

    ``--lengths``, then what ``extra`` adds, then ``--repeat`` (default ``repeat``), ``--threads``,
    ``--quick``, ``--impls`` (default ``default_impls`` or all), ``--cap``, ``--contention``, ``--device``,
    ``--out`` and the hidden ``--worker``.
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
    p.add_argument("--impls", nargs="+", choices=list(impls), default=list(default_impls or impls))
    p.add_argument("--cap", action="append", default=[], metavar="IMPL:MODE=LENGTH",
                   help=f"longest length for an implementation and mode (* = every mode); defaults {default_caps}")
    p.add_argument("--contention", type=int, default=0, metavar="N",
                   help="run N busy processes (CPU spinners, same niceness) beside the whole measurement")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the models run")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="seconds each worker process may run; one stopped keeps the points it finished")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the table and plot go")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None,
          worker: Callable[[dict], None]) -> argparse.Namespace | None:
    """Parse ``argv`` and fill in the default ``--threads``; in a worker process, run ``worker`` on its
    spec and return None."""
    args = p.parse_args(argv)
    if args.contention < 0:
        p.error(f"--contention wants a number of busy processes >= 0, got {args.contention}")
    if args.device == "cuda" and not args.worker and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here")
    if args.threads is None:
        args.threads = 1 if args.quick else 2
    if args.worker:
        worker(json.loads(args.worker))
        return None
    return args


def run_settings(args: argparse.Namespace, max_call_s: float) -> dict:
    """The spec entries for threads, timing (``--quick``: one timed call, 2 s a point), the busy processes
    beside the run and the device."""
    return {"threads": args.threads, "repeat": 1 if args.quick else args.repeat, "max_call_s": max_call_s,
            "point_budget_s": 2.0 if args.quick else 10.0, "contention": args.contention, "device": args.device,
            "timeout": args.timeout}


def report_name(base: str, spec: dict) -> str:
    """The results' file name: ``base``, then ``_cuda`` on CUDA and ``_busyN`` with N busy processes, so
    that quiet, contended and GPU results sit side by side."""
    device = "_cuda" if spec.get("device", "cpu") != "cpu" else ""
    busy = f"_busy{spec['contention']}" if spec.get("contention") else ""
    return base + device + busy


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
    """Results of ``impls``: one fresh ``script`` process per implementation (each stopped after
    ``spec["timeout"]`` seconds if set, else ``timeout_s``), or with ``quick`` all of them in this process
    (the smoke test must not pay for more interpreter start-ups)."""
    timeout_s = spec.get("timeout") or timeout_s
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
    """``torch.mm`` GFLOP/s before and after a run, when the run started, the busy processes beside it and
    the 1-minute load average before they started."""

    size: int
    before: float
    after: float
    started: float
    busy: int = 0
    load: float = 0.0

    @property
    def best(self) -> float:
        """The rate the "% of mm" column divides by."""
        return max(self.before, self.after)


def measured(threads: int, quick: bool, run: Callable[[], list[dict]], *, busy: int = 0,
             device: str = "cpu") -> tuple[list[dict], Roofline]:
    """``run()`` with ``threads`` torch threads, between two ``torch.mm`` measurements (1024^3 with
    ``quick``, 4096^3 otherwise), all of it beside ``busy`` busy processes."""
    torch.set_num_threads(threads)
    size = 1024 if quick else 4096
    load = os.getloadavg()[0]
    with contention.busy(busy):
        before = mm_gflops(size, device=device)
        started = time.perf_counter()
        rows = run()
        after = mm_gflops(size, device=device)
    return rows, Roofline(size, before, after, started, busy, load)


def add_rates(row: dict, flops: int, mm: float, ref: dict | None, diff: bool = True) -> None:
    """Set ``gflops`` and ``pct_mm`` of ``row``; against ``ref`` (if any), ``speedup``, ``mem_ratio`` and,
    with ``diff``, ``max_diff`` (largest gap between the output samples)."""
    row["gflops"] = flops / row["time_s"] / 1e9
    row["pct_mm"] = 100 * row["gflops"] / mm
    if ref is not None:
        row["speedup"] = ref["time_s"] / row["time_s"]
        measured = row.get("peak_mib") is not None and (ref.get("peak_mib") or 0) > 0  # None: not measured
        row["mem_ratio"] = row["peak_mib"] / ref["peak_mib"] if measured else None
        if diff:
            row["max_diff"] = max(abs(a - b) for a, b in zip(row["sample"], ref["sample"]))


def emit(result: dict) -> None:
    """Report one point from a worker."""
    print("RESULT " + json.dumps(result), flush=True)
