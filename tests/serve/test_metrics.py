"""The documented metrics (serve/README.md#metrics) on Ray's Prometheus endpoint: scraped after a few requests,
parsed with prometheus_client's parser, names and values checked; the model gauge present on every
application's replica, also past the metrics agent's lifetime of an unrefreshed gauge."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import requests

from tests.serve.common import COMMON, PREFIX, TIMEOUT, model_handle, post

parser = pytest.importorskip("prometheus_client.parser")

DEADLINE_S = 150  # Ray reports metrics every 10 s by default; on a loaded machine it can take a few rounds
GAUGE = "ray_bigbird_serve_tokens_per_second"
MODEL_APPS = sorted(PREFIX)  # every application of the session runs a TaskModel replica


def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of every node's endpoint, by sample name (counters end in ``_total``)."""
    from serve.metrics import metrics_urls

    urls = metrics_urls(host="127.0.0.1")  # one machine: its agents listen on all its addresses
    assert urls, "no node exports metrics"
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for url in urls:
        text = requests.get(url, timeout=TIMEOUT).text
        for family in parser.text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def total(samples: dict[str, Any], name: str, **labels: str) -> tuple[int, float]:
    """How many samples of ``name`` carry ``labels``, and the sum of their values."""
    found = [v for got, v in samples.get(name, []) if all(got.get(k) == want for k, want in labels.items())]
    return len(found), sum(found)


def problems(samples: dict[str, Any], sent: int, tokens: int) -> list[str]:
    """What is missing or insane in a scrape, given the ``sent`` good requests of ``tokens`` tokens."""
    app = {"application": "text-classification"}
    route = {**app, "route": "/v1/text-classification"}
    out = []
    for name in MODEL_APPS:  # the gauge on every replica, idle or not
        n, value = total(samples, GAUGE, application=name)
        if n == 0 or not math.isfinite(value) or value < 0:
            out.append(f"{GAUGE} of {name}: {n} samples, {value}")
    checks = [
        ("ray_bigbird_serve_requests_total", {**route, "status": "200"}, lambda n, v: v >= sent),
        ("ray_bigbird_serve_errors_total", {**route, "status": "422"}, lambda n, v: v >= 1),
        ("ray_bigbird_serve_request_latency_s_count", route, lambda n, v: v >= sent + 1),
        ("ray_bigbird_serve_request_latency_s_sum", route, lambda n, v: v > 0),
        ("ray_bigbird_serve_tokens_total", app, lambda n, v: v >= tokens),
        ("ray_bigbird_serve_batch_size_count", app, lambda n, v: v >= 1),
        ("ray_bigbird_serve_batch_latency_s_count", app, lambda n, v: v >= 1),
        ("ray_bigbird_serve_batch_latency_s_sum", app, lambda n, v: v > 0),
        (GAUGE, app, lambda n, v: v > 0),  # the last batch of text-classification scored tokens
    ]
    for name, labels, ok in checks:
        n, value = total(samples, name, **labels)
        if n == 0 or not ok(n, value):
            out.append(f"{name}{labels}: {n} samples, sum {value}")
    # Ray's agent rebuilds histograms from bucket counts (sums from bucket midpoints: a batch of 1 adds 0.5), so
    # the batch sizes are checked by bucket: every batch within max_batch_size.
    count = total(samples, "ray_bigbird_serve_batch_size_count", **app)[1]
    within = sum(v for labels, v in samples.get("ray_bigbird_serve_batch_size_bucket", [])
                 if labels.get("application") == app["application"]
                 and float(labels["le"]) == COMMON["max_batch_size"])
    if count and within != count:
        out.append(f"{count - within} of {count} batches above max_batch_size {COMMON['max_batch_size']}")
    latency = total(samples, "ray_bigbird_serve_request_latency_s_sum", **route)[1]
    answered = total(samples, "ray_bigbird_serve_request_latency_s_count", **route)[1]
    if answered and latency / answered > COMMON["request_timeout_s"]:
        out.append(f"mean request latency {latency / answered} s above the request timeout")
    return out


def wait_for_scrape(sent: int, tokens: int) -> list[str]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        missing = problems(scrape(), sent, tokens)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(2)


def test_documented_metrics_are_exported(urls, ray_cluster):
    url = f"{urls['text-classification']}/v1/text-classification"
    model = model_handle("text-classification")
    before = model.stats.remote().result()["tokens"]
    assert post(url, {"inputs": "not", "parameters": {"top_k": "three"}}).status_code == 422
    sent = 6
    for i in range(sent):
        assert post(url, {"inputs": f"review number {i}: a long and winding text"}).status_code == 200
    tokens = model.stats.remote().result()["tokens"] - before
    assert tokens > 0
    assert wait_for_scrape(sent, tokens) == []
    # A gauge is dropped by the metrics agent after two report intervals (20 s) without a report: the replicas
    # must keep reporting it while idle.
    time.sleep(25)
    assert wait_for_scrape(sent, tokens) == []
