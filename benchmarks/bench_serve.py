"""Load benchmark of the HTTP service: dynamic batching vs one request per forward pass, and vs the simplest
service a user would write instead.

N closed-loop clients (default 16) send a fixed number of ~512-token texts to ``/v1/text-classification`` on
127.0.0.1. The same application runs twice side by side, with ``max_batch_size`` 16 and 1, next to ``plain``:
FastAPI + transformers' BigBird on the same weights in one uvicorn process (``serve_plain.py``, one request per
forward pass, same torch thread count). Rounds alternate (A B C C B A) so drifting machine load hits all alike.
The script prints throughput, p50/p95/p99 latency, mean requests per batch and the throughput ratios. The model
is random-weight but realistic for a CPU (hidden 256, 4 layers, 1024 positions) with the SentencePiece test
tokenizer.

    python benchmarks/bench_serve.py                      # 16 clients, 160 requests per configuration
    python benchmarks/bench_serve.py --clients 8 --requests 64 --rounds 2 --max-seconds 120

Bounded: a fixed request count per configuration, a deadline per round (--max-seconds) and a timeout per
request; traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / "tests" / "fixtures" / "spm" / "test_model.model"
TEXT = ROOT / "tests" / "fixtures" / "spm" / "botchan_excerpt.txt"


def build_model(folder: Path, *, hidden: int, layers: int) -> None:
    import torch

    import bigbird
    from bigbird.tokenization import BigBirdTokenizer

    tokenizer = BigBirdTokenizer(vocab_file=str(SPM))
    config = bigbird.BigBirdConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden, max_position_embeddings=1024, block_size=64, num_random_blocks=3,
        sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
        id2label={0: "NEG", 1: "POS"})
    torch.manual_seed(0)
    bigbird.BigBirdForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def make_texts(folder: Path, n_tokens: int, count: int) -> list[str]:
    """``count`` distinct texts of exactly ``n_tokens`` tokens, cut from the Botchan excerpt."""
    from bigbird.tokenization import BigBirdTokenizer

    tokenizer = BigBirdTokenizer.from_pretrained(folder)
    text = TEXT.read_text(encoding="utf-8")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    step = max(1, (len(offsets) - n_tokens) // count)
    texts = []
    for k in range(count):
        first = (k * step) % max(1, len(offsets) - n_tokens)
        texts.append(text[offsets[first][0] : offsets[first + n_tokens - 1][1]])
    return texts


def compute_ceiling(folder: Path, texts: list[str], *, batch: int, threads: int, repeats: int = 3) -> dict:
    """In-process pipeline, no HTTP: milliseconds per text scoring ``batch`` texts one by one vs together.

    The ratio bounds what batching can gain in the service on this machine (same torch thread count).
    """
    import torch

    from bigbird.tasks import pipeline

    torch.set_num_threads(threads)
    one = pipeline("text-classification", folder, batch_size=1)
    many = pipeline("text-classification", folder, batch_size=batch)
    records = [{"text": t} for t in texts[:batch]]
    many.run(records)  # warm-up
    singles, together = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for record in records:
            one.run([record])
        singles.append(1000 * (time.perf_counter() - start) / batch)
        start = time.perf_counter()
        many.run(records)
        together.append(1000 * (time.perf_counter() - start) / batch)
    ms1, msb = statistics.median(singles), statistics.median(together)
    return {"ms_per_text_batch_1": ms1, f"ms_per_text_batch_{batch}": msb, "ratio": ms1 / msb}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_plain(folder: Path, *, threads: int) -> tuple[subprocess.Popen, int]:
    """``serve_plain.py`` on a free port, once it answers ``/healthz``."""
    import requests

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_plain.py")), "--model", str(folder),
                             "--port", str(port), "--threads", str(threads)])
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                return proc, port
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"serve_plain.py did not start (exit status {proc.poll()})")
        time.sleep(0.5)


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
    return {"ok": len(lat), "errors": errors, "seconds": seconds, "throughput": len(lat) / seconds,
            "tokens_per_s": tokens / seconds, "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"),
            "mean_batch": requests / max(1, batches),
            "round_throughputs": [len(r["latencies"]) / r["seconds"] for r in rounds]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=160, help="requests per configuration, over all rounds")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds per configuration, in the order A B B A ... so drifting load hits both alike")
    p.add_argument("--tokens", type=int, default=512, help="tokens per text")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--num-cpus", type=float, default=float(os.cpu_count() or 1), help="CPUs of each model replica")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs of each model replica")
    p.add_argument("--max-seconds", type=float, default=150, help="deadline per round")
    p.add_argument("--no-plain", dest="plain", action="store_false",
                   help="leave out the FastAPI + transformers baseline")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    load_before = os.getloadavg()

    import ray
    import requests
    from ray import serve
    from ray.serve import RunTarget

    from serve.app import build_application
    from serve.settings import make_settings

    configs = {"batched": args.max_batch_size, "unbatched": 1, **({"plain": 1} if args.plain else {})}
    order = [name for k in range(args.rounds) for name in (list(configs) if k % 2 == 0 else list(configs)[::-1])]
    per_round = max(1, args.requests // args.rounds)
    rounds: dict[str, list[dict]] = {name: [] for name in configs}
    same_model = float("nan")
    stats: dict[str, list[tuple[dict, dict]]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        build_model(folder, hidden=args.hidden, layers=args.layers)
        texts = make_texts(folder, args.tokens, 64)
        ceiling = compute_ceiling(folder, texts, batch=args.max_batch_size, threads=max(1, int(args.num_cpus)))
        port = free_port()
        plain = start_plain(folder, threads=max(1, int(args.num_cpus))) if args.plain else None
        # Both configurations run side by side (an idle replica costs nothing) so rounds can alternate.
        ray.init(num_cpus=max(4, 2 * int(args.num_cpus) + 1), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        try:
            targets = []
            for name, batch in configs.items():
                settings = make_settings({
                    "model": str(folder), "task": "text-classification", "num_cpus": args.num_cpus,
                    "num_gpus": args.num_gpus,
                    "max_batch_size": batch, "forward_batch_size": batch,
                    "batch_wait_timeout_s": args.batch_wait_timeout_s,
                    "max_ongoing_requests": max(32, 2 * args.clients), "max_queued_requests": 4 * args.clients,
                    "request_timeout_s": 110})
                targets.append(RunTarget(build_application(settings), name=name, route_prefix=f"/{name}"))
            serve.run_many(targets)
            urls = {name: f"http://127.0.0.1:{port}/{name}/v1/text-classification" for name in configs}
            if plain is not None:
                urls["plain"] = f"http://127.0.0.1:{plain[1]}/v1/text-classification"
            answers = {name: [requests.post(url, json={"inputs": text}, timeout=120) for text in texts[:4]]
                       for name, url in urls.items()}  # warm-up: first forward passes, connection setup
            for got in answers.values():
                for r in got:
                    r.raise_for_status()
            same_model = max(abs(a.json()[0][0]["score"] - b.json()[0][0]["score"])
                             for a, b in zip(answers["batched"], answers.get("plain", answers["batched"])))
            for name in order:
                model = None if name == "plain" else serve.get_deployment_handle("TaskModel", app_name=name)
                before = model.stats.remote().result() if model else None
                rounds[name].append(load(urls[name], texts, clients=args.clients, requests_total=per_round,
                                         deadline_s=args.max_seconds))
                if model is None:  # one request per forward pass by construction
                    n = len(rounds[name][-1]["latencies"])
                    stats[name].append(({"batches": 0, "requests": 0, "tokens": 0},
                                        {"batches": n, "requests": n, "tokens": n * args.tokens}))
                else:
                    stats[name].append((before, model.stats.remote().result()))
                print(f"round {name}: {len(rounds[name][-1]['latencies']) / rounds[name][-1]['seconds']:.2f} req/s",
                      flush=True)
        finally:
            serve.shutdown()
            ray.shutdown()
            if plain is not None:
                plain[0].terminate()
                plain[0].wait(timeout=30)

    results = {name: summary(rounds[name], stats[name]) for name in configs}
    ratio = results["batched"]["throughput"] / results["unbatched"]["throughput"]
    print(f"\n{args.clients} clients, {per_round * args.rounds} requests of {args.tokens} tokens per configuration "
          f"in {args.rounds} rounds, model hidden {args.hidden} x {args.layers} layers, replica num_cpus "
          f"{args.num_cpus:g}")
    print(f"{'config':<24}{'ok':>5}{'errors':>7}{'req/s':>7}{'tok/s':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
          f"{'batch':>7}")
    for name, r in results.items():
        label = f"{name} (max_batch {configs[name]})"
        print(f"{label:<24}{r['ok']:>5}{sum(r['errors'].values()):>7}{r['throughput']:>7.2f}{r['tokens_per_s']:>7.0f}"
              f"{r['p50_ms']:>8.0f}{r['p95_ms']:>8.0f}{r['p99_ms']:>8.0f}{r['mean_batch']:>7.1f}")
    print(f"throughput ratio batched / unbatched: {ratio:.2f}x (target >= 2x)")
    if "plain" in results:
        plain_ratio = {name: results[name]["throughput"] / results["plain"]["throughput"]
                       for name in ("batched", "unbatched")}
        print(f"against plain FastAPI + transformers: batched {plain_ratio['batched']:.2f}x, unbatched "
              f"{plain_ratio['unbatched']:.2f}x; largest top-label score difference on 4 texts: {same_model:.2g}")
    print(f"compute ceiling (in-process pipeline, {max(1, int(args.num_cpus))} torch threads): "
          f"{ceiling['ms_per_text_batch_1']:.0f} ms/text one at a time, "
          f"{ceiling[f'ms_per_text_batch_{args.max_batch_size}']:.0f} ms/text {args.max_batch_size} at once: "
          f"{ceiling['ratio']:.2f}x; machine load average (1 min) {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "ratio": ratio,
                                               "ceiling": ceiling, "loadavg_before": load_before,
                                               "loadavg_after": os.getloadavg(), "same_model": same_model},
                                              indent=2))
    errors = sum(sum(r["errors"].values()) for r in results.values())
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script from anywhere: import serve/ and bigbird/ from the repo
    sys.exit(main())
