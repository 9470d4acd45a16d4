"""The HTTP service end to end: apps on the shared Ray cluster, called over 127.0.0.1 with ``requests``.

Six applications run side by side (started once per session, tests/serve/conftest.py), one per task (text-classification at ``/``, the others under a route
prefix named after the task) plus ``faulty``: text-classification with :class:`FaultyModel`, whose
``score_group`` seam raises on ``BOOM`` (its ``predict`` on ``CRASH``), sleeps on ``SLOW`` (0.5 s) / ``STALL`` (4 s, past the 3 s request
timeout) and which records batch sizes. Its max_queued_requests is small, so 32 requests at once overload it.
``bodies`` is text-classification with a short body deadline and few concurrent body reads (test_isolation.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serve.common import (
    BOTCHAN,
    LONG,
    TASKS,
    TIMEOUT,
    assert_close,
    assert_error,
    expected,
    model_handle,
    post,
)

CASES: dict[str, list[tuple[Any, dict[str, Any]]]] = {
    "fill-mask": [
        ("The [MASK] sat on the mat.", {}),
        (["Hello [MASK] world.", "Two [MASK] masks [MASK] here.", LONG[:1200] + " [MASK] " + LONG[1200:]],
         {"top_k": 3}),
    ],
    "question-answering": [
        ({"question": "Who was the father?", "context": BOTCHAN[:600]}, {}),
        ([{"question": "What did he do?", "context": LONG}, {"question": "Where?", "context": "In Tokyo, Japan."}],
         {"top_k": 2, "max_answer_len": 10}),
    ],
    "text-classification": [
        ("A short review.", {}),
        (["A short review.", LONG, "Another text."], {}),
        ("A short review.", {"top_k": None}),
        (["A short review.", LONG], {"top_k": 2, "function_to_apply": "sigmoid"}),
    ],
    "token-classification": [
        ("Alice flew from Paris to Tokyo.", {}),
        (["Alice flew from Paris to Tokyo.", LONG], {"aggregation_strategy": "none"}),
        (LONG, {"ignore_labels": []}),
    ],
}


# ----------------------------------------------------------------------------------- endpoints
@pytest.mark.parametrize("task", TASKS)
def test_endpoint_matches_pipeline(urls, references, task):
    for inputs, params in CASES[task]:
        r = post(f"{urls[task]}/v1/{task}", {"inputs": inputs, "parameters": params})
        assert r.status_code == 200, r.text
        assert_close(r.json(), expected(references, task, inputs, params))



def test_concurrent_requests_are_batched_and_keep_their_results(urls, references):
    texts = [f"Review number {i}: " + BOTCHAN[i * 50 : i * 50 + 40 * (i + 1)] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: post(f"{urls['faulty']}/v1/text-classification", {"inputs": t}), texts))
    for text, r in zip(texts, answers):
        assert r.status_code == 200, r.text
        assert_close(r.json(), expected(references, "text-classification", text, {}))
    assert max(model_handle("faulty").batch_sizes.remote().result()) >= 2


def test_service_routes(urls, task_models):
    for task in TASKS:
        health = requests.get(f"{urls[task]}/healthz", timeout=TIMEOUT)
        assert health.status_code == 200 and health.json() == {"status": "ok", "task": task}
        card = requests.get(f"{urls[task]}/v1/models", timeout=TIMEOUT).json()["data"][0]
        assert card["id"] == str(task_models[task]) and card["task"] == task
        assert card["max_length"] == 256 and card["attention_type"] == "block_sparse"
        schema = requests.get(f"{urls[task]}/openapi.json", timeout=TIMEOUT).json()
        assert [p for p in schema["paths"] if p.startswith("/v1/") and p != "/v1/models"] == [f"/v1/{task}"]
    docs = requests.get(f"{urls['text-classification']}/docs", timeout=TIMEOUT)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_unserved_task_is_404(urls):
    body = assert_error(post(f"{urls['text-classification']}/v1/fill-mask", {"inputs": "a [MASK]"}), 404,
                        "fill-mask", "/v1/text-classification")
    assert body["request_id"]
    assert_error(requests.get(f"{urls['fill-mask']}/nowhere", timeout=TIMEOUT), 404)


# -------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("task", "body", "words"), [
    ("text-classification", {}, ["inputs", "Field required"]),
    ("text-classification", {"inputs": []}, ["inputs"]),
    ("text-classification", {"inputs": 5}, ["inputs"]),
    ("text-classification", {"inputs": "x", "parameters": {"top_k": "many"}}, ["parameters.top_k"]),
    ("text-classification", {"inputs": "x", "parameters": {"bogus": 1}}, ["parameters.bogus"]),
    ("token-classification", {"inputs": "x", "parameters": {"aggregation_strategy": "maximum"}},
     ["parameters.aggregation_strategy"]),
    ("question-answering", {"inputs": {"question": "Who?"}}, ["inputs.", "context"]),
    ("text-classification", {"inputs": ""}, ["input 0", "empty text"]),
    ("fill-mask", {"inputs": ["a [MASK] b", "no mask"]}, ["input 1", "[MASK]"]),
])
def test_bad_body_is_422_naming_the_field(urls, task, body, words):
    assert_error(post(f"{urls[task]}/v1/{task}", body), 422, *words)


def test_malformed_json_is_422(urls):
    r = requests.post(f"{urls['text-classification']}/v1/text-classification", data=b'{"inputs": "x"',
                      headers={"content-type": "application/json"}, timeout=TIMEOUT)
    assert_error(r, 422, "body", "JSON")


def test_body_over_limit_is_413(urls):
    url = f"{urls['text-classification']}/v1/text-classification"
    big = b'{"inputs": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    assert_error(requests.post(url, data=big, timeout=TIMEOUT), 413, "2097152 bytes")  # Content-Length
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))  # chunked: no Content-Length
    assert_error(requests.post(url, data=chunks, timeout=TIMEOUT), 413, "2097152 bytes")


def test_too_many_tokens_is_413(urls):
    r = post(f"{urls['text-classification']}/v1/text-classification", {"inputs": [LONG, LONG, LONG]})
    assert_error(r, 413, "tokens", "2000")


# ------------------------------------------------------------------------------ faults, batches
def test_failing_request_does_not_fail_its_batch(urls, references):
    url = f"{urls['faulty']}/v1/text-classification"
    before = len(model_handle("faulty").batch_sizes.remote().result())
    bodies = [{"inputs": "BOOM goes this one"}, {"inputs": ""}] + [{"inputs": f"good text {i}"} for i in range(4)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: post(url, b), bodies))
    body = assert_error(answers[0], 500, "internal")
    assert len(body["request_id"]) >= 8
    assert_error(answers[1], 422, "empty text")
    for b, r in zip(bodies[2:], answers[2:]):
        assert r.status_code == 200, r.text
        assert_close(r.json(), expected(references, "text-classification", b["inputs"], {}))
    sizes = model_handle("faulty").batch_sizes.remote().result()[before:]
    assert max(sizes) >= 2, f"requests were not batched together: {sizes}"
    after = post(url, {"inputs": "still serving"})  # the replica survived
    assert after.status_code == 200, after.text


def test_internal_error_is_500_with_request_id(urls):
    url = f"{urls['faulty']}/v1/text-classification"
    r = post(url, {"inputs": "BOOM"}, headers={"x-request-id": "test-request-42"})
    body = assert_error(r, 500)
    assert body["request_id"] == "test-request-42"
    assert post(url, {"inputs": "fine"}).status_code == 200


def test_crash_outside_the_batch_is_500_with_request_id(urls):
    url = f"{urls['faulty']}/v1/text-classification"
    body = assert_error(post(url, {"inputs": "CRASH"}), 500, "internal")
    assert len(body["request_id"]) >= 8
    assert post(url, {"inputs": "fine"}).status_code == 200


def test_overload_is_503_with_retry_after(urls):
    """32 requests at once: 8 fill the replica (a 0.8 s batch), at most 8 wait in the queue, the rest are
    turned away at once (a request that waits past the 3 s timeout is a 503 as well)."""
    url = f"{urls['faulty']}/v1/text-classification"
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: post(url, {"inputs": f"SLOW request {i}"}), range(32)))
    elapsed = time.perf_counter() - start
    statuses = Counter(r.status_code for r in answers)
    print(f"\noverload: {dict(statuses)} in {elapsed:.1f} s")
    assert set(statuses) == {200, 503} and statuses[200] >= 8, statuses
    for r in answers:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "2"
            assert_error(r, 503, "overloaded")
    assert elapsed < 15, f"overload must be answered, not queued for long: took {elapsed:.1f} s"


def test_request_timeout_is_503(urls):
    url = f"{urls['faulty']}/v1/text-classification"
    start = time.perf_counter()
    r = post(url, {"inputs": "STALL"})
    assert_error(r, 503, "timeout")  # answered at the 3 s timeout, before the 4 s stall ends
    assert r.headers["Retry-After"] == "2" and time.perf_counter() - start < 10
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the stalled batch ends after 4 s; then the replica answers again
        if post(url, {"inputs": "after the stall"}).status_code == 200:
            return
        time.sleep(0.5)
    pytest.fail("the replica did not answer after a timed-out request")


def test_cli_serves_until_interrupted(urls, ray_cluster, task_models, tmp_path):
    """``python -m serve.cli`` joins the cluster and its running Serve, answers over HTTP, and on Ctrl-C
    removes its own application only."""
    from ray import serve

    port = int(urls["faulty"].split(":")[2].split("/")[0])
    config = tmp_path / "cli.yaml"
    config.write_text("app_name: cli\nroute_prefix: /cli\nnum_cpus: 0.25\n")
    cmd = [sys.executable, "-m", "serve.cli", "--model", str(task_models["text-classification"]), "--port",
           str(port), "--config", str(config), "--address", ray_cluster.get_runtime_context().gcs_address]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).parents[2], env={**os.environ, "RAY_AUTH_MODE": "disabled"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("serving ") for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, f"no URL printed: {lines}"
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/cli"
        serving = next(line for line in lines if line.startswith("serving "))  # Ray may log lines first
        assert f"{url}/v1/text-classification" in serving and f"{url}/docs" in serving
        r = post(f"{url}/v1/text-classification", {"inputs": "hello"})
        assert r.status_code == 200 and r.json()[0][0]["label"] in ("NEG", "POS")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130  # interrupted (serve/cli.py: 128 + SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "cli" not in serve.status().applications
    assert requests.get(f"{urls['text-classification']}/healthz", timeout=TIMEOUT).status_code == 200


def test_replica_killed_under_load_recovers(urls):
    """Kill the model replica while 4 clients send requests for 10 s; it must serve again. The 60 s bound tells
    "recovers" from "never recovers"; it is no speed claim (a loaded CI machine took 32 s once)."""
    import ray

    url = f"{urls['text-classification']}/v1/text-classification"
    stop_at = time.monotonic() + 10
    log: list[tuple[float, float, int]] = []  # (time sent, time answered, status)
    lock = threading.Lock()

    def client(i: int) -> None:
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            try:
                status = post(url, {"inputs": f"client {i} text"}).status_code
            except requests.RequestException:
                status = -1
            with lock:
                log.append((sent, time.monotonic(), status))

    def replicas() -> list[dict[str, str]]:
        return [a for a in ray.util.list_named_actors(all_namespaces=True)
                if a["name"].startswith("SERVE_REPLICA::text-classification#TaskModel#")]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    (victim,) = replicas()
    killed = time.monotonic()
    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=True)
    replaced = None
    while replaced is None and time.monotonic() < killed + 60:
        if any(a["name"] != victim["name"] for a in replicas()):
            replaced = time.monotonic() - killed
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=60)
    log.sort()
    last_failure = max((sent for sent, _, status in log if status != 200), default=killed)
    # Served again: the answer to the first request sent after the kill and after the last failure.
    served = next((done - killed for sent, done, status in log if sent > last_failure and status == 200), None)
    while served is None and time.monotonic() < killed + 60:
        if post(url, {"inputs": "are you back?"}).status_code == 200:
            served = time.monotonic() - killed
        else:
            time.sleep(0.5)
    statuses = Counter(status for _, _, status in log)
    failed = statuses.total() - statuses[200]
    seconds = {k: "never" if v is None else f"{v:.1f} s" for k, v in (("replaced", replaced), ("served", served))}
    print(f"\nreplica kill: {len(log)} requests from 4 clients in 10 s, {failed} failed {dict(statuses)}; new "
          f"replica listed after {seconds['replaced']}, requests served again {seconds['served']} after the kill")
    assert replaced is not None, "Serve did not start a new replica within 60 s"
    assert served is not None and served < 60, "the application did not serve again within 60 s of the kill"
    assert set(statuses) <= {200, 503}, statuses  # failures are retryable 503s, never 500s or hangs
