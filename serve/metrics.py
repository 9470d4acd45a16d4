"""The model replica's metrics, and where Ray exports them.

Metrics defined with ``ray.serve.metrics`` travel from each replica to its node's metrics agent, which serves
them in Prometheus' text format at ``http://NODE:METRICS_EXPORT_PORT/metrics`` (``ray start
--metrics-export-port=PORT``, ``ray.init(_metrics_export_port=PORT)``, ``bigbird serve --metrics-port PORT``;
a free port otherwise, listed by :func:`metrics_urls`). Replicas report every ``metrics_report_interval_ms``
(10 s by default), so a value shows up there seconds after it is recorded.

The agent drops a gauge that has not been reported for two report intervals, and a replica reports a gauge
only when it is set: a gauge set once per batch vanished from the endpoint of an idle server. So
:class:`ModelMetrics` sets its gauge when the replica starts and again every ``REFRESH_S`` seconds.
"""

from __future__ import annotations

import threading

REFRESH_S = 2.0  # well below the agent's gauge lifetime (2 report intervals, at least 2 s)


class IngressMetrics:
    """Request counters and latency of the ingress (Serve adds deployment, replica and application tags)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.requests = metrics.Counter("bigbird_serve_requests", description="HTTP requests by route and status",
                                        tag_keys=("route", "status"))
        self.errors = metrics.Counter("bigbird_serve_errors", description="HTTP error answers by route and status",
                                      tag_keys=("route", "status"))
        self.latency = metrics.Histogram(
            "bigbird_serve_request_latency_s", description="Seconds from request to answer", tag_keys=("route",),
            boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])

    def record(self, route: str, status: int, seconds: float) -> None:
        tags = {"route": route, "status": str(status)}
        self.requests.inc(tags=tags)
        if status >= 400:
            self.errors.inc(tags=tags)
        self.latency.observe(seconds, tags={"route": route})


class ModelMetrics:
    """Batch metrics of a model replica (Ray Serve adds deployment, replica and application tags).

    ``bigbird_serve_tokens_per_second`` is exported from the replica's start (0 until its first batch), the
    histograms and the token counter from its first batch on.
    """

    def __init__(self, refresh_s: float = REFRESH_S) -> None:
        from ray.serve import metrics

        self.batch_size = metrics.Histogram(
            "bigbird_serve_batch_size", description="Requests per @serve.batch call",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128])
        self.batch_latency = metrics.Histogram(
            "bigbird_serve_batch_latency_s", description="Seconds to score one batch",
            boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        self.tokens = metrics.Counter("bigbird_serve_tokens", description="Tokens scored")
        self.tokens_per_s = metrics.Gauge("bigbird_serve_tokens_per_second",
                                          description="Tokens per second of the last batch (0 before the first)")
        self.totals = {"batches": 0, "requests": 0, "tokens": 0}
        self.last_tokens_per_s = 0.0
        self.tokens_per_s.set(0.0)
        self._stopped = threading.Event()
        self._refresher = threading.Thread(target=self._refresh, args=(refresh_s,), name="bigbird-metrics",
                                           daemon=True)
        self._refresher.start()

    def batch(self, size: int, tokens: int, seconds: float) -> None:
        """Record one scored batch: its requests, the tokens of its answered requests, its wall time."""
        self.totals["batches"] += 1
        self.totals["requests"] += size
        self.totals["tokens"] += tokens
        self.batch_size.observe(size)
        self.batch_latency.observe(seconds)
        if tokens:
            self.tokens.inc(tokens)
        self.last_tokens_per_s = tokens / max(seconds, 1e-9)
        self.tokens_per_s.set(self.last_tokens_per_s)

    def close(self) -> None:
        """Stop re-reporting the gauge."""
        self._stopped.set()

    def _refresh(self, every_s: float) -> None:
        while not self._stopped.wait(every_s):
            self.tokens_per_s.set(self.last_tokens_per_s)


def metrics_urls(*, local_only: bool = False, host: str | None = None) -> list[str]:
    """The Prometheus endpoints of the connected Ray cluster's live nodes (each node's metrics agent serves its
    own processes' metrics), or only of this process's node.

    Args:
        local_only: Only the node this process runs on.
        host: Use this host instead of each node's address (e.g. ``127.0.0.1`` on a one-machine cluster).
    """
    import ray

    here = ray.get_runtime_context().get_node_id() if local_only else None
    return [f"http://{host or node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            for node in ray.nodes()
            if node.get("Alive") and node.get("MetricsExportPort") and (here is None or node["NodeID"] == here)]
