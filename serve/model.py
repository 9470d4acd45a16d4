"""The model deployment: a task pipeline loaded once per replica, fed by ``@serve.batch``.

``@serve.batch`` gathers concurrent requests into one call of :meth:`TaskModel.batch`. Each request is
prepared on its own (the pipeline's :meth:`~bigbird.tasks.base.TaskPipeline.prepare`: parameters checked,
inputs tokenized once and validated, windows cut), so a bad request is its own 422 and never touches its
batch-mates. The windows of requests sharing parameters are then scored together (grouped by padded length)
and finished per request. Each request gets back an :class:`Outcome`: its own result, or its own error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from ray import serve

from serve.settings import ServeSettings

logger = logging.getLogger("ray.serve")


@dataclass
class Outcome:
    """What a request gets back from the model deployment: HTTP status, result or error message."""

    status: int
    result: Any = None
    error: str | None = None
    tokens: int = 0


@dataclass
class Job:
    """One request inside a batch, prepared (tokenized, validated and windowed) by the pipeline."""

    request_id: str
    prepared: Any  # bigbird.tasks.Prepared
    params: dict[str, Any]  # as the request gave them (the pipeline's shaping reads which were set)

    @property
    def tokens(self) -> int:
        return self.prepared.num_tokens


class TaskModel:
    """Model replica. ``predict({"inputs", "parameters", "request_id"})`` -> :class:`Outcome`.

    Args:
        settings: :class:`ServeSettings` as a dict (plain data travels best to replicas).
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        import torch

        from bigbird.tasks import get_spec
        from bigbird.tokenizer import BigBirdTokenizer

        s = ServeSettings.model_validate(settings)
        assert s.task is not None, "build_app resolves the task before deploying"
        self.settings = s
        spec = get_spec(s.task)
        if s.num_gpus > 0 and not torch.cuda.is_available():
            raise RuntimeError(f"num_gpus={s.num_gpus} but this replica sees no CUDA device")
        device = "cuda" if s.num_gpus > 0 else "cpu"
        model = spec.model_class.from_pretrained(s.model, revision=s.revision, dtype=s.dtype)
        tokenizer = BigBirdTokenizer.from_pretrained(s.model, revision=s.revision)
        self.pipe = spec.pipeline_class(model, tokenizer, device=device, batch_size=s.forward_batch_size,
                                        max_length=s.max_length, stride=s.stride, max_tokens=s.forward_max_tokens)
        self.batch.set_max_batch_size(s.max_batch_size)
        self.batch.set_batch_wait_timeout_s(s.batch_wait_timeout_s)
        self.metrics = ModelMetrics()
        logger.info("loaded %s for %s on %s", s.model, s.task, device)

    def ready(self) -> str:
        """The served task, once the model is loaded (what the ingress's health check awaits)."""
        return self.pipe.task

    def stats(self) -> dict[str, int]:
        """Totals of this replica since it started: batches, requests and tokens scored."""
        return dict(self.metrics.totals)

    async def predict(self, request: dict[str, Any]) -> Outcome:
        """One request's outcome, scored in a batch with whatever else is waiting. Cancelled with this call
        (the ingress's request timeout), a request still waiting is dropped from its batch."""
        return await self.batch(request)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def batch(self, requests: list[dict[str, Any]]) -> list[Outcome]:
        """Serve's batch of concurrent requests; the forward pass runs in a thread (torch releases the GIL),
        so the replica keeps accepting requests meanwhile."""
        try:
            return await asyncio.to_thread(self.run_batch, requests)
        except Exception:  # run_batch isolates requests; a last resort that keeps the replica serving
            logger.exception("batch of %d requests failed", len(requests))
            return [Outcome(500, error="internal error while scoring") for _ in requests]

    # ------------------------------------------------------------------------------------ batch
    def run_batch(self, requests: list[dict[str, Any]]) -> list[Outcome]:
        """Outcomes of a batch of requests, in order: each request's result or its own error."""
        start = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(requests)
        jobs: dict[int, Job] = {}
        for i, req in enumerate(requests):
            job, outcome = self.prepare(req)
            if outcome is not None:
                outcomes[i] = outcome
            else:
                jobs[i] = job
        groups: dict[str, list[int]] = {}
        for i, job in jobs.items():
            groups.setdefault(json.dumps(job.prepared.params, sort_keys=True, default=str), []).append(i)
        for members in groups.values():
            for i, outcome in zip(members, self.run_group([jobs[i] for i in members])):
                outcomes[i] = outcome
        done: list[Outcome] = [o if o is not None else Outcome(500, error="no outcome") for o in outcomes]
        self.metrics.batch(len(requests), sum(o.tokens for o in done if o.status == 200),
                           time.perf_counter() - start)
        return done

    def prepare(self, request: dict[str, Any]) -> tuple[Job | None, Outcome | None]:
        """One request, alone: the pipeline's ``prepare`` (parameters, inputs, tokens, validation, windows),
        then the token limit. Returns its job, or the outcome that ends it here (413, 422; 500 for a bug)."""
        request_id = str(request.get("request_id", ""))
        params = dict(request.get("parameters") or {})
        try:
            prepared = self.pipe.prepare(request.get("inputs"), params)
        except (TypeError, ValueError) as e:  # the pipeline's word for a bad input or parameter
            return None, Outcome(422, error=str(e))
        except Exception as e:
            logger.error("request %s could not be prepared", request_id, exc_info=e)
            return None, Outcome(500, error="internal error while preparing the request")
        tokens = prepared.num_tokens
        if tokens > self.settings.max_tokens:
            return None, Outcome(413, error=f"request has {tokens} tokens, more than the limit of "
                                            f"{self.settings.max_tokens}", tokens=tokens)
        if prepared.errors:
            i = min(prepared.errors)
            return None, Outcome(422, error=f"input {i}: {prepared.errors[i]}", tokens=tokens)
        return Job(request_id, prepared, params), None

    def run_group(self, jobs: list[Job]) -> list[Outcome]:
        """One scoring pass over the windows of requests sharing parameters. If it raises, each request runs
        alone, so only the request that causes the failure gets it."""
        try:
            results = self.score_group([job.prepared for job in jobs], jobs[0].prepared.params)
        except Exception as e:
            if len(jobs) == 1:
                return [self.failed(jobs[0], e)]
            return [self.run_group([job])[0] for job in jobs]
        outcomes = []
        for job, result in zip(jobs, results):
            try:  # the pipeline's own __call__ shaping
                outcome = Outcome(200, self.pipe.shape(result, job.prepared.single, job.params))
            except ValueError as e:
                outcome = Outcome(422, error=str(e))
            outcome.tokens = job.tokens
            outcomes.append(outcome)
        return outcomes

    def score_group(self, prepared: list[Any], params: dict[str, Any]) -> list[list[Any]]:
        """Score the windows of several prepared requests together; per request, its per-record results
        (the pipeline's ``finish``). A seam for tests that inject failures."""
        windows = [w for p in prepared for w in p.windows]
        outputs = self.pipe.score(windows, **params) if windows else []
        results, at = [], 0
        for p in prepared:
            results.append(self.pipe.finish(p, outputs[at : at + len(p.windows)]))
            at += len(p.windows)
        return results

    @staticmethod
    def failed(job: Job, error: Exception) -> Outcome:
        if isinstance(error, (TypeError, ValueError)):  # the pipeline's word for a bad input or parameter
            return Outcome(422, error=str(error), tokens=job.tokens)
        logger.error("request %s failed", job.request_id, exc_info=error)
        return Outcome(500, error="internal error while scoring", tokens=job.tokens)


class ModelMetrics:
    """Batch metrics of a model replica (Ray Serve adds deployment, replica and application tags)."""

    def __init__(self) -> None:
        from ray.serve import metrics

        self.batch_size = metrics.Histogram(
            "bigbird_serve_batch_size", description="Requests per @serve.batch call",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128])
        self.batch_latency = metrics.Histogram(
            "bigbird_serve_batch_latency_s", description="Seconds to score one batch",
            boundaries=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
        self.tokens = metrics.Counter("bigbird_serve_tokens", description="Tokens scored")
        self.tokens_per_s = metrics.Gauge("bigbird_serve_tokens_per_second",
                                          description="Tokens per second of the last batch")
        self.totals = {"batches": 0, "requests": 0, "tokens": 0}

    def batch(self, size: int, tokens: int, seconds: float) -> None:
        self.totals["batches"] += 1
        self.totals["requests"] += size
        self.totals["tokens"] += tokens
        self.batch_size.observe(size)
        self.batch_latency.observe(seconds)
        if tokens:
            self.tokens.inc(tokens)
        self.tokens_per_s.set(tokens / max(seconds, 1e-9))
