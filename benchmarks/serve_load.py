"""The load side of ``bench_serve.py``: closed-loop clients, the server processes' CPU time, and the summary of a
configuration's rounds (throughput, latency percentiles, mean batch, CPU per request)."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path


def load(url: str, texts: list[str], *, clients: int, requests_total: int, deadline_s: float) -> dict:
    """Closed loop: each client sends its next request when the previous one is answered."""
    import requests

    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    counter = iter(range(requests_total))
    stop_at = time.monotonic() + deadline_s

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < stop_at:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            start = time.perf_counter()
            try:
                r = session.post(url, json={"inputs": texts[k % len(texts)]}, timeout=120)
                status = str(r.status_code)
            except requests.RequestException as e:
                status = type(e).__name__
            with lock:
                if status == "200":
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[status] = errors.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"latencies": latencies, "errors": errors, "seconds": time.perf_counter() - start}


def server_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) used so far by each process this benchmark started (every descendant), with
    its kind: Ray's processes and actors by their ``ray::`` title without the running method (Ray retitles a
    worker for each call), the plain server as ``plain``. The driver itself, the load generator, is left out."""
    import psutil

    found: dict[int, tuple[str, float]] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = child.cmdline()
            times = child.cpu_times()
        except psutil.Error:  # exited meanwhile
            continue
        if any(part.endswith("serve_plain.py") for part in cmd):
            kind = "plain"
        elif cmd and cmd[0].startswith("ray::"):
            kind = cmd[0].split()[0].split(".")[0]
        else:
            kind = Path(cmd[0] if cmd else "?").name
        found[child.pid] = (kind, times.user + times.system)
    return found


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each kind of process used between two :func:`server_cpu` readings (per process, so a process
    that changed its title is still counted once)."""
    used: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        used[kind] = used.get(kind, 0.0) + seconds - before.get(pid, (kind, 0.0))[1]
    return used


def summary(rounds: list[dict], stats: list[tuple[dict, dict]]) -> dict:
    """Throughput over all rounds of a configuration, latency percentiles, mean requests per batch."""
    lat = sorted(x for r in rounds for x in r["latencies"])
    seconds = sum(r["seconds"] for r in rounds)
    errors: dict[str, int] = {}
    for r in rounds:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")

    requests = sum(a["requests"] - b["requests"] for b, a in stats)
    batches = sum(a["batches"] - b["batches"] for b, a in stats)
    tokens = sum(a["tokens"] - b["tokens"] for b, a in stats)
    cpu: dict[str, float] = {}
    for r in rounds:
        for k, v in r.get("cpu", {}).items():
            cpu[k] = cpu.get(k, 0.0) + v
    per_request = {k: round(1000 * v / max(1, len(lat)), 1) for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
                   if v > 0}
    return {"cpu_ms_per_request": sum(per_request.values()), "cpu_ms_per_request_by_process": per_request,
            "ok": len(lat), "errors": errors, "seconds": seconds, "throughput": len(lat) / seconds,
            "tokens_per_s": tokens / seconds, "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"),
            "mean_batch": requests / max(1, batches),
            "round_throughputs": [len(r["latencies"]) / r["seconds"] for r in rounds]}
