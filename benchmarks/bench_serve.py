"""Load benchmark of the HTTP service: dynamic batching vs one request per forward pass, and vs the simplest
service a user would write instead.

N closed-loop clients (default 16) send a fixed number of ~512-token texts to ``/v1/text-classification`` on
127.0.0.1. The same application runs twice side by side, with ``max_batch_size`` 16 and 1, next to ``plain``:
FastAPI + transformers' BigBird on the same weights in one uvicorn process (``serve_plain.py``, one request per
forward pass, same torch thread count). Rounds alternate (A B C C B A) so drifting machine load hits all alike.
Only ``batched`` and ``unbatched`` are Serve applications (their own Ray instance, no dashboard). The script
prints throughput, p50/p95/p99 latency, mean requests per batch, the server processes' CPU per request, the
throughput ratios and whether the three answer with the same scores. The model
is random-weight but realistic for a CPU (hidden 256, 4 layers, block-sparse; 1024 positions, or 4096 for
texts over 1,022 tokens: ``--tokens 4094`` is one window of BigBird's length) with the SentencePiece test
tokenizer.

    python benchmarks/bench_serve.py                      # 16 clients, 160 requests per configuration
    python benchmarks/bench_serve.py --clients 8 --requests 64 --rounds 2 --max-seconds 120
    python benchmarks/bench_serve.py --tokens 4094 --clients 4 --requests 24 --max-batch-size 4   # 4,096 positions

Bounded: a fixed request count per configuration, a deadline for the applications to start (--deploy-timeout),
per round (--max-seconds) and per request, and --timeout for the whole run (SIGTERM alike): services, Ray and
the plain server are stopped on every exit. Traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # import serve/, bigbird/, benchmarks/

from benchmarks.serve_load import cpu_used, load, server_cpu, summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPM = ROOT / "tests" / "fixtures" / "spm" / "test_model.model"
TEXT = ROOT / "tests" / "fixtures" / "spm" / "botchan_excerpt.txt"
SAME_MODEL_TOLERANCE = 1e-4  # top-label score, ours (served) vs transformers (plain)


def build_model(folder: Path, *, hidden: int, layers: int, positions: int = 1024) -> None:
    import torch

    import bigbird
    from bigbird.tokenization import BigBirdTokenizer

    tokenizer = BigBirdTokenizer(vocab_file=str(SPM))
    config = bigbird.BigBirdConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden, max_position_embeddings=positions, block_size=64, num_random_blocks=3,
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


def start_plain(folder: Path, *, threads: int) -> tuple[subprocess.Popen, int]:
    """``serve_plain.py`` on a free port, once it answers ``/healthz``."""
    import requests

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("serve_plain.py")), "--model", str(folder),
                             "--port", str(port), "--threads", str(threads)])
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                    return proc, port
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve_plain.py did not start within 120 s (exit status {proc.poll()})")
            time.sleep(0.5)
    except BaseException:  # also the benchmark's own timeout: never leave the server behind
        proc.kill()
        proc.wait(timeout=30)
        raise


class Interrupted(Exception):
    """SIGTERM (``timeout``'s signal) or the --timeout alarm: raised in the main thread so that cleanup runs."""


def on_signal(signum: int, frame: object) -> None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}")


def wait_running(serve: Any, names: list[str], timeout_s: float) -> None:
    """Wait until every application is RUNNING; after ``timeout_s`` raise with what Serve says of each.

    ``serve.run_many`` would wait forever for a replica the cluster cannot place (it only logs a warning)."""
    deadline = time.monotonic() + timeout_s
    while True:
        apps = serve.status().applications
        states = {name: str(getattr(apps.get(name), "status", "MISSING")) for name in names}
        if all(s.endswith("RUNNING") for s in states.values()):
            return
        failed = [n for n, s in states.items() if s.endswith("DEPLOY_FAILED") or s.endswith("UNHEALTHY")]
        if failed or time.monotonic() > deadline:
            why = "; ".join(f"{n}: {states[n]} {apps[n].message if n in apps else ''} " + ", ".join(
                f"{d}: {o.status} {o.message}" for d, o in (apps[n].deployments if n in apps else {}).items())
                for n in names)
            raise RuntimeError(f"applications not running after {timeout_s - max(0.0, deadline - time.monotonic()):.0f}"
                               f" s: {why}")
        time.sleep(1.0)


def positions(args: argparse.Namespace) -> int:
    """The model's max_position_embeddings: --positions, else the smaller of 1024 and 4096 that holds a text."""
    if args.positions is not None:
        return args.positions
    return 1024 if args.tokens + 2 <= 1024 else 4096


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=160, help="requests per configuration, over all rounds")
    p.add_argument("--rounds", type=int, default=2,
                   help="rounds per configuration, in the order A B C C B A ... so drifting load hits all alike")
    p.add_argument("--tokens", type=int, default=512, help="tokens per text")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    p.add_argument("--positions", type=int, default=None,
                   help="max_position_embeddings of the model (default: 1024, or 4096 for texts longer than 1022 "
                        "tokens); the sparse kernel runs from 704 tokens on")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--num-cpus", type=float, default=float(os.cpu_count() or 1), help="CPUs of each model replica")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs of each model replica")
    p.add_argument("--max-seconds", type=float, default=150, help="deadline per round")
    p.add_argument("--deploy-timeout", type=float, default=300, help="seconds for the applications to start")
    p.add_argument("--timeout", type=float, default=1800, help="whole run; cleans up and exits 2 beyond it")
    p.add_argument("--no-plain", dest="plain", action="store_false",
                   help="leave out the FastAPI + transformers baseline")
    p.add_argument("--json", help="also write the results to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(max(1, int(args.timeout)))
    try:
        results, extra = run(args)
    except Interrupted as e:
        print(f"bench_serve: {e} (--timeout {args.timeout:g} s); services and Ray stopped", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    report(args, results, extra, load_before)
    errors = sum(sum(r["errors"].values()) for r in results.values())
    return 0 if errors == 0 and extra["same_model"] <= SAME_MODEL_TOLERANCE else 1


def run(args: argparse.Namespace) -> tuple[dict, dict]:
    """Build the model, start the services, run the interleaved rounds; stop everything on any exit."""
    import ray
    import requests
    from ray import serve
    from ray.serve import RunTarget

    from serve.app import build_application
    from serve.settings import make_settings

    # Serve applications: only these two. ``plain`` is serve_plain.py's own process, not a Serve application
    # (deploying a third TaskModel asked for 3 x num_cpus on a cluster sized for two: it never started).
    served = {"batched": args.max_batch_size, "unbatched": 1}
    configs = {**served, **({"plain": 1} if args.plain else {})}
    order = [name for k in range(args.rounds) for name in (list(configs) if k % 2 == 0 else list(configs)[::-1])]
    per_round = max(1, args.requests // args.rounds)
    rounds: dict[str, list[dict]] = {name: [] for name in configs}
    stats: dict[str, list[tuple[dict, dict]]] = {name: [] for name in configs}
    threads = max(1, int(args.num_cpus))
    with tempfile.TemporaryDirectory(prefix="bs", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp) / "model"
        build_model(folder, hidden=args.hidden, layers=args.layers, positions=positions(args))
        texts = make_texts(folder, args.tokens, 64)
        ceiling = compute_ceiling(folder, texts, batch=args.max_batch_size, threads=threads)
        port = free_port()
        plain = None
        try:
            plain = start_plain(folder, threads=threads) if args.plain else None
            # Both Serve configurations run side by side (an idle replica costs nothing) so rounds can alternate:
            # the cluster holds both model replicas (ingress, proxy and controller take no CPU).
            ray.init(address="local", num_cpus=max(4, len(served) * math.ceil(args.num_cpus) + 1),
                     include_dashboard=False, log_to_driver=False, configure_logging=False,
                     _temp_dir=str(Path(tmp) / "ray"))
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            targets = []
            for name, batch in served.items():
                settings = make_settings({
                    "model": str(folder), "task": "text-classification", "num_cpus": args.num_cpus,
                    "num_gpus": args.num_gpus, "max_batch_size": batch, "forward_batch_size": batch,
                    "batch_wait_timeout_s": args.batch_wait_timeout_s,
                    "max_ongoing_requests": max(32, 2 * args.clients), "max_queued_requests": 4 * args.clients,
                    "request_timeout_s": 110})
                targets.append(RunTarget(build_application(settings), name=name, route_prefix=f"/{name}"))
            serve.run_many(targets, wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
            wait_running(serve, list(served), args.deploy_timeout)
            urls = {name: f"http://127.0.0.1:{port}/{name}/v1/text-classification" for name in served}
            if plain is not None:
                urls["plain"] = f"http://127.0.0.1:{plain[1]}/v1/text-classification"
            scores = {name: [top(requests.post(url, json={"inputs": text}, timeout=120)) for text in texts[:4]]
                      for name, url in urls.items()}  # first forward passes, connections; same model check
            for url in urls.values():  # warm-up at full concurrency: the batched replica's first big batches
                load(url, texts, clients=args.clients, requests_total=args.clients, deadline_s=args.max_seconds)
            same_model = max(abs(a[1] - b[1]) if a[0] == b[0] else float("inf")
                             for name in scores for a, b in zip(scores[name], scores["batched"]))
            for name in order:
                model = None if name == "plain" else serve.get_deployment_handle("TaskModel", app_name=name)
                before = model.stats.remote().result() if model else None
                cpu_before = server_cpu()
                rounds[name].append(load(urls[name], texts, clients=args.clients, requests_total=per_round,
                                         deadline_s=args.max_seconds))
                cpu_after = server_cpu()  # every server process, idle ones included (they cost alike in all rounds)
                rounds[name][-1]["cpu"] = cpu_used(cpu_before, cpu_after)
                if model is None:  # one request per forward pass by construction
                    n = len(rounds[name][-1]["latencies"])
                    stats[name].append(({"batches": 0, "requests": 0, "tokens": 0},
                                        {"batches": n, "requests": n, "tokens": n * args.tokens}))
                else:
                    stats[name].append((before, model.stats.remote().result()))
                print(f"round {name}: {len(rounds[name][-1]['latencies']) / rounds[name][-1]['seconds']:.2f} req/s",
                      flush=True)
        finally:
            signal.alarm(0)  # cleanup is not interrupted again
            if ray.is_initialized():
                try:
                    serve.shutdown()
                finally:
                    ray.shutdown()
            if plain is not None:
                plain[0].terminate()
                plain[0].wait(timeout=30)
    results = {name: summary(rounds[name], stats[name]) for name in configs}
    return results, {"ceiling": ceiling, "same_model": same_model, "scores": scores, "per_round": per_round}


def top(response: Any) -> tuple[str, float]:
    """The top label and its score of a text-classification answer ``[[{label, score}, ...]]``."""
    response.raise_for_status()
    best = response.json()[0][0]
    return best["label"], float(best["score"])


def report(args: argparse.Namespace, results: dict, extra: dict, load_before: tuple[float, ...]) -> None:
    configs = {"batched": args.max_batch_size, "unbatched": 1, "plain": 1}
    ceiling, same_model, per_round = extra["ceiling"], extra["same_model"], extra["per_round"]
    ratio = results["batched"]["throughput"] / results["unbatched"]["throughput"]
    print(f"\n{args.clients} clients, {per_round * args.rounds} requests of {args.tokens} tokens per configuration "
          f"in {args.rounds} rounds, model hidden {args.hidden} x {args.layers} layers, {positions(args)} positions, "
          f"replica num_cpus "
          f"{args.num_cpus:g}, batch_wait_timeout_s {args.batch_wait_timeout_s:g}")
    print(f"{'config':<24}{'ok':>5}{'errors':>7}{'req/s':>7}{'tok/s':>7}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
          f"{'batch':>7}{'CPU ms/req':>11}")
    for name, r in results.items():
        label = f"{name} (max_batch {configs[name]})"
        print(f"{label:<24}{r['ok']:>5}{sum(r['errors'].values()):>7}{r['throughput']:>7.2f}{r['tokens_per_s']:>7.0f}"
              f"{r['p50_ms']:>8.0f}{r['p95_ms']:>8.0f}{r['p99_ms']:>8.0f}{r['mean_batch']:>7.1f}"
              f"{r['cpu_ms_per_request']:>11.0f}")
    print("server CPU ms per request by process: " + "; ".join(
        f"{name} " + ", ".join(f"{k} {v:.0f}" for k, v in list(r["cpu_ms_per_request_by_process"].items())[:4])
        for name, r in results.items()))
    print(f"throughput ratio batched / unbatched: {ratio:.2f}x (target >= 2x)")
    plain_ratio = {}
    if "plain" in results:
        plain_ratio = {name: results[name]["throughput"] / results["plain"]["throughput"]
                       for name in ("batched", "unbatched")}
        print(f"against plain FastAPI + transformers: batched {plain_ratio['batched']:.2f}x, unbatched "
              f"{plain_ratio['unbatched']:.2f}x")
    print(f"same model: largest top-label score difference from batched on 4 texts, over "
          f"{', '.join(results)}: {same_model:.2g} (tolerance {SAME_MODEL_TOLERANCE:g})")
    print(f"compute ceiling (in-process pipeline, {max(1, int(args.num_cpus))} torch threads): "
          f"{ceiling['ms_per_text_batch_1']:.0f} ms/text one at a time, "
          f"{ceiling[f'ms_per_text_batch_{args.max_batch_size}']:.0f} ms/text {args.max_batch_size} at once: "
          f"{ceiling['ratio']:.2f}x; machine load average (1 min) {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "results": results, "ratio": ratio, "plain_ratio": plain_ratio,
            "ceiling": ceiling, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "same_model": same_model, "scores": extra["scores"]}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
