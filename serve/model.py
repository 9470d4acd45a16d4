"""The model deployment: a task pipeline loaded once per replica, fed by ``@serve.batch``.

``@serve.batch`` gathers concurrent requests; a single model loop runs what is waiting whenever the model
is free. A batch of requests becomes one list of records and one call of the pipeline's ``run`` (per
distinct parameter set), whose scorer groups the windows of all requests by padded length. Each request
gets back an :class:`Outcome`: its own result, or its own error; a bad input never fails its neighbours.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
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
    """One request inside a batch, after normalisation."""

    request_id: str
    records: list[dict[str, Any]]
    single: bool
    params: dict[str, Any]
    tokens: int = 0


class TaskModel:
    """Model replica. ``predict({"inputs", "parameters", "request_id"})`` -> :class:`Outcome`.

    Args:
        settings: :class:`ServeSettings` as a dict (plain data travels best to replicas).
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        import torch

        from bigbird.tasks import task_class
        from bigbird.tokenizer import BigBirdTokenizer

        s = ServeSettings.model_validate(settings)
        assert s.task is not None, "build_app resolves the task before deploying"
        self.settings = s
        cls = task_class(s.task)
        if s.num_gpus > 0 and not torch.cuda.is_available():
            raise RuntimeError(f"num_gpus={s.num_gpus} but this replica sees no CUDA device")
        device = "cuda" if s.num_gpus > 0 else "cpu"
        model = cls.model_class.from_pretrained(s.model, revision=s.revision, dtype=s.dtype)
        tokenizer = BigBirdTokenizer.from_pretrained(s.model, revision=s.revision)
        self.pipe = cls(model, tokenizer, device=device, batch_size=s.forward_batch_size,
                        max_length=s.max_length, stride=s.stride, max_tokens=s.forward_max_tokens)
        self.batch.set_max_batch_size(s.max_batch_size)
        self.batch.set_batch_wait_timeout_s(s.batch_wait_timeout_s)
        self.waiting: deque[tuple[dict[str, Any], asyncio.Future]] = deque()
        self.model_loop: asyncio.Task | None = None
        self.metrics = ModelMetrics()
        logger.info("loaded %s for %s on %s", s.model, s.task, device)

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows."""
        cfg = self.pipe.config
        labels = [cfg.id2label[k] for k in sorted(cfg.id2label)] if self.pipe.task.endswith("classification") \
            else None
        return {"id": self.settings.model, "task": self.pipe.task, "max_length": self.pipe.max_length,
                "max_position_embeddings": cfg.max_position_embeddings, "attention_type": cfg.attention_type,
                "block_size": cfg.block_size, "labels": labels}

    def stats(self) -> dict[str, int]:
        """Totals of this replica since it started: batches, requests and tokens scored."""
        return dict(self.metrics.totals)

    async def predict(self, request: dict[str, Any]) -> Outcome:
        """One request's outcome, scored in a batch with whatever else is waiting."""
        future = await self.batch(request)
        return await future  # cancelled with this call (request timeout): the model loop then skips it

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def batch(self, requests: list[dict[str, Any]]) -> list[asyncio.Future]:
        """Serve's batch of concurrent requests joins the waiting line; each request gets a future.

        Serve forms the next batch while the current one runs, from whatever arrives within
        ``batch_wait_timeout_s``; batches formed during a long forward pass would stay small. Handing them
        to one model loop, which takes everything waiting (up to ``max_batch_size`` requests) each time the
        model is free, keeps batches full under load.
        """
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        self.waiting.extend(zip(requests, futures))
        if self.model_loop is None or self.model_loop.done():
            self.model_loop = loop.create_task(self.drain())
        return futures

    async def drain(self) -> None:
        """Run the waiting requests, a batch at a time, until none is left."""
        while self.waiting:
            take = [self.waiting.popleft() for _ in range(min(len(self.waiting), self.settings.max_batch_size))]
            take = [(request, future) for request, future in take if not future.done()]  # drop cancelled
            if not take:
                continue
            try:
                # The forward pass runs in a thread (torch releases the GIL): the replica keeps accepting
                # requests meanwhile.
                outcomes = await asyncio.to_thread(self.run_batch, [request for request, _ in take])
            except Exception:  # run_batch isolates requests; a last resort that keeps the replica serving
                logger.exception("batch of %d requests failed", len(take))
                outcomes = [Outcome(500, error="internal error while scoring") for _ in take]
            for (_, future), outcome in zip(take, outcomes):
                if not future.done():
                    future.set_result(outcome)

    # ------------------------------------------------------------------------------------ batch
    def run_batch(self, requests: list[dict[str, Any]]) -> list[Outcome]:
        """Outcomes of a batch of requests, in order: each request's result or its own error."""
        start = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(requests)
        jobs: dict[int, Job] = {}
        for i, req in enumerate(requests):
            try:
                jobs[i] = self.prepare(req)
            except (TypeError, ValueError) as e:
                outcomes[i] = Outcome(422, error=str(e))
        self.count_tokens(jobs, outcomes)
        groups: dict[str, list[int]] = {}
        for i, job in jobs.items():
            if outcomes[i] is None:
                groups.setdefault(json.dumps(job.params, sort_keys=True, default=str), []).append(i)
        for members in groups.values():
            for i, outcome in zip(members, self.run_group([jobs[i] for i in members])):
                outcomes[i] = outcome
        done: list[Outcome] = [o if o is not None else Outcome(500, error="no outcome") for o in outcomes]
        self.metrics.batch(len(requests), sum(o.tokens for o in done if o.status == 200),
                           time.perf_counter() - start)
        return done

    def prepare(self, request: dict[str, Any]) -> Job:
        """Normalise one request's inputs to records (the pipeline's own rules)."""
        params = dict(request.get("parameters") or {})
        unknown = set(params) - set(self.pipe.default_params)
        if unknown:
            raise ValueError(f"unknown parameters for {self.pipe.task}: {sorted(unknown)}; "
                             f"known: {sorted(self.pipe.default_params)}")
        records, single = self.pipe.records(request.get("inputs"))
        return Job(str(request.get("request_id", "")), records, single, params)

    def count_tokens(self, jobs: dict[int, Job], outcomes: list[Outcome | None]) -> None:
        """Tokens of each request (texts and questions, one tokenizer call); over ``max_tokens`` -> 413."""
        def strings(job: Job) -> list[str]:
            return [r[k] for r in job.records for k in ("text", "question") if isinstance(r.get(k), str) and r[k]]

        flat = [t for job in jobs.values() for t in strings(job)]
        ids = self.pipe.tokenizer(flat, add_special_tokens=False, return_attention_mask=False,
                                  return_token_type_ids=False)["input_ids"] if flat else []
        counts = iter(len(x) for x in ids)
        for i, job in jobs.items():
            job.tokens = sum(next(counts) for _ in strings(job))
            if job.tokens > self.settings.max_tokens:
                outcomes[i] = Outcome(413, error=f"request has {job.tokens} tokens, more than the limit of "
                                                 f"{self.settings.max_tokens}", tokens=job.tokens)

    def run_group(self, jobs: list[Job]) -> list[Outcome]:
        """One ``run`` over the records of requests sharing parameters. If it raises, each request runs
        alone, so only the request that causes the failure gets it."""
        records = [r for job in jobs for r in job.records]
        try:
            results = self.run_records(records, jobs[0].params)
        except Exception as e:
            if len(jobs) == 1:
                return [self.failed(jobs[0], e)]
            results = None
        if results is None:
            return [self.run_group([job])[0] for job in jobs]
        outcomes, at = [], 0
        for job in jobs:
            try:  # the pipeline's own __call__ shaping; a record it cannot score is this request's 422
                outcome = Outcome(200, self.pipe.shape(results[at : at + len(job.records)], job.single, job.params))
            except ValueError as e:
                outcome = Outcome(422, error=str(e))
            outcome.tokens = job.tokens
            outcomes.append(outcome)
            at += len(job.records)
        return outcomes

    @staticmethod
    def failed(job: Job, error: Exception) -> Outcome:
        if isinstance(error, (TypeError, ValueError)):  # the pipeline's word for a bad input or parameter
            return Outcome(422, error=str(error), tokens=job.tokens)
        logger.error("request %s failed", job.request_id, exc_info=error)
        return Outcome(500, error="internal error while scoring", tokens=job.tokens)

    def run_records(self, records: list[dict[str, Any]], params: dict[str, Any]) -> list[Any]:
        """The pipeline's ``run`` (a seam for tests that inject failures)."""
        return self.pipe.run(records, **params)


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
