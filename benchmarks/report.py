"""The benchmarks' output: the machine line, the header above a table, Markdown tables, the plot, and the
files a run writes (``NAME.md``, ``NAME.json``, ``NAME.png``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmarks import contention

if TYPE_CHECKING:
    from benchmarks.common import Roofline



def machine() -> str:
    """CPU model, core count and library versions, for the record."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{model}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def header(title: str, script: str, argv: list[str] | None, config: str, mm: Roofline) -> str:
    """The lines above a results table: title, machine, command, ``config``, torch.mm rates, wall time."""
    command = f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:])
    load = (f"load: {mm.busy} busy processes beside the run (--contention), niceness {contention.niceness()}, "
            f"1-min load average {mm.load:.1f} before it")
    return (f"# {title}\n\nmachine: {machine()}\ncommand: `{command.strip()}`\n{config}\n{load}\n"
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
    cycle = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]
    styles = {m: cycle[i % len(cycle)] for i, m in enumerate(dict.fromkeys(r["mode"] for r in rows))}
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(13, 4.8))
    for impl in impls:
        for mode, style in styles.items():
            pts = sorted((r for r in rows if r["impl"] == impl and r["mode"] == mode), key=lambda r: r["length"])
            for ax, key in ((ax_t, "time_s"), (ax_m, "peak_mib")):
                xy = [(p["length"], p[key]) for p in pts if p.get(key) is not None and p[key] > 0]
                if xy:
                    ax.plot(*zip(*xy), linestyle=style, marker="o", ms=3, color=colours[impl])
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
