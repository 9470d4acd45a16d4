"""The model deployment: a task pipeline loaded once per replica, fed by ``@serve.batch``.

``@serve.batch`` gathers concurrent requests into one call of :meth:`TaskModel.batch`. Each request is
prepared on its own (the pipeline's :meth:`~bigbird.tasks.base.TaskPipeline.prepare`: parameters checked,
inputs tokenized once and validated, windows cut), so a bad request is its own 422 and never touches its
batch-mates. The windows of requests sharing parameters are then scored together (grouped by padded length)
and finished per request. Each request gets back an :class:`Outcome`: its own result, or its own error.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from ray import serve

from serve.cpus import replica_threads, usable_cpus
from serve.metrics import ModelMetrics
from serve.schemas import WINDOW_PARAMS as TASK_WINDOW_PARAMS
from serve.settings import ServeSettings

logger = logging.getLogger("ray.serve")
WINDOW_PARAMS = frozenset(k for params in TASK_WINDOW_PARAMS.values() for k in params)


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

        from bigbird.tasks import load

        s = ServeSettings.model_validate(settings)
        assert s.task is not None, "build_app resolves the task before deploying"
        self.settings = s
        assigned = assigned_cpus()
        if assigned is not None:  # a replica (a TaskModel built in a test's driver leaves its threads alone)
            torch.set_num_threads(replica_threads(assigned, usable_cpus()))
        self.threads = torch.get_num_threads()
        device = "cuda" if s.num_gpus > 0 else "cpu"  # the loader refuses cuda where the replica sees none
        self.pipe = load(s.task, s.model, device=device, dtype=s.dtype, quantize=s.quantize, revision=s.revision,
                         batch_size=s.forward_batch_size, max_length=s.max_length, stride=s.stride,
                         max_tokens=s.forward_max_tokens)
        self.batch.set_max_batch_size(s.max_batch_size)
        self.batch.set_batch_wait_timeout_s(s.batch_wait_timeout_s)
        self.metrics = ModelMetrics()
        self.scoring_since: float | None = None  # monotonic start of the scoring pass under way
        self.suspect: str | None = None  # the last internal scoring failure, until the probe passes again
        self.probe = make_probe(self.pipe)  # tokenized once: a tiny known-good input
        logger.info("loaded %s for %s on %s (%d torch threads)", s.model, s.task, device, self.threads)

    def ready(self) -> str:
        """The served task, once the model is loaded (what the ingress's health check awaits)."""
        return self.pipe.task

    async def check_health(self) -> None:
        """Serve's periodic health check (``health_check_period_s``; three failures in a row and Serve replaces
        the replica). Cheap unless something went wrong: fails if the model is gone, if one scoring pass has
        run longer than ``stuck_after_s`` (a hung forward: every request behind it would time out), or, after a
        scoring pass raised an internal error, if the probe (a tiny cached input) fails too: then the failure
        was the replica's (a broken device, say), not one request's. A probe that passes clears the suspicion.

        Raises:
            RuntimeError: Naming what is wrong.
        """
        if getattr(self.pipe, "model", None) is None:
            raise RuntimeError("no model loaded")
        since = self.scoring_since
        if since is not None and time.monotonic() - since > self.settings.stuck_after_s:
            raise RuntimeError(f"stuck: a scoring pass has run for {time.monotonic() - since:.0f} s, more than "
                               f"stuck_after_s {self.settings.stuck_after_s:g}")
        if self.suspect is not None:
            try:
                await asyncio.to_thread(self.score_group, [self.probe], self.probe.params)
            except Exception as e:
                raise RuntimeError(f"model failing: the probe input fails ({type(e).__name__}: {e}) after a "
                                   f"scoring failure ({self.suspect})") from e
            self.suspect = None

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
            self.suspect = "a whole batch failed"
            return [Outcome(500, error="internal error while scoring") for _ in requests]

    # ------------------------------------------------------------------------------------ batch
    def run_batch(self, requests: list[dict[str, Any]]) -> list[Outcome]:
        """Outcomes of a batch of requests, in order: each request's result or its own error."""
        start = time.perf_counter()
        self.scoring_since = time.monotonic()
        try:
            return self.score_requests(requests, start)
        finally:
            self.scoring_since = None

    def score_requests(self, requests: list[dict[str, Any]], start: float) -> list[Outcome]:
        """:meth:`run_batch`'s work: prepare each request alone, score the groups, record the metrics."""
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
            windowing = {k: params.pop(k) for k in WINDOW_PARAMS if k in params}
            pipe, max_question_len = self.windowed(windowing)
            prepared = pipe.prepare(request.get("inputs"), params)
            if max_question_len is not None:
                cut_questions(pipe, prepared, max_question_len)
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

    def windowed(self, windowing: dict[str, Any]) -> tuple[Any, int | None]:
        """The pipeline that cuts this request's windows (the served one, or a copy with the request's
        ``doc_stride`` / ``stride`` and ``max_seq_len``; it shares the model) and the question length limit.

        Raises:
            ValueError: For a window parameter the served model cannot honour, naming it.
        """
        windowing = {k: v for k, v in windowing.items() if v is not None}
        if windowing.get("align_to_words"):
            raise ValueError("parameters.align_to_words: true is not supported (answers are token spans); "
                             "leave it out or pass false")
        stride = windowing.get("doc_stride", windowing.get("stride"))
        max_length = windowing.get("max_seq_len")
        if max_length is not None and max_length > self.pipe.max_length:
            raise ValueError(f"parameters.max_seq_len {max_length} exceeds the served max_length "
                             f"{self.pipe.max_length}")
        if stride is None and max_length is None:
            return self.pipe, windowing.get("max_question_len")
        pipe = copy.copy(self.pipe)
        pipe.max_length = max_length or self.pipe.max_length
        pipe.stride = self.pipe.stride if stride is None else stride
        if pipe.stride >= pipe.max_length:
            name = "doc_stride" if "doc_stride" in windowing else "stride"
            raise ValueError(f"parameters.{name} {pipe.stride} must be smaller than the window length "
                             f"{pipe.max_length}")
        return pipe, windowing.get("max_question_len")

    def api_shape(self, result: list[Any], job: Job) -> Any:
        """The Inference API's shape of a request's result: the pipeline's ``__call__`` shaping, except that
        text classification always gives each input its list of labels (``[[{label, score}, ...]]`` for a
        single input, which huggingface_hub's client indexes with ``[0]``)."""
        if self.pipe.task == "text-classification":
            return self.pipe.shape(result, False, job.prepared.params)  # top_k set: one list per input
        return self.pipe.shape(result, job.prepared.single, job.params)

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
                outcome = Outcome(200, self.api_shape(result, job))
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

    def failed(self, job: Job, error: Exception) -> Outcome:
        if isinstance(error, (TypeError, ValueError)):  # the pipeline's word for a bad input or parameter
            return Outcome(422, error=str(error), tokens=job.tokens)
        logger.error("request %s failed", job.request_id, exc_info=error)
        self.suspect = f"{type(error).__name__}: {error}"  # the next health check probes the model
        return Outcome(500, error="internal error while scoring", tokens=job.tokens)


def assigned_cpus() -> float | None:
    """The CPUs Ray assigned to this replica (None outside a Ray worker)."""
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return None
    return ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)


def make_probe(pipe: Any) -> Any:
    """The health check's probe: a tiny input of the pipeline's task, prepared; English text, or DNA bases
    where the vocabulary rejects text."""
    prepared = None
    for text in ("This is a short probe text.", "ACGTACGTACGTACGTACGTACGT"):
        if pipe.task == "question-answering":
            inputs: Any = {"question": text[:12], "context": text}
        elif pipe.task == "fill-mask":
            inputs = f"{text[:12]} {pipe.tokenizer.mask_token} {text[12:]}"
        else:
            inputs = text
        prepared = pipe.prepare(inputs, {})
        if not prepared.errors:
            break
    return prepared


def cut_questions(pipe: Any, prepared: Any, max_question_len: int) -> None:
    """``max_question_len``: questions longer than that many tokens keep their first ones (transformers'
    truncation); the windows of the records concerned are cut again."""
    long = [i for i, e in enumerate(prepared.encoded)
            if getattr(e, "question_ids", None) is not None and len(e.question_ids) > max_question_len]
    if not long:
        return
    for i in long:
        enc = prepared.encoded[i]
        prepared.tokens[i] -= len(enc.question_ids) - max_question_len
        enc.question_ids = enc.question_ids[:max_question_len]
    prepared.windows, prepared.errors = pipe.windows(prepared.encoded)
