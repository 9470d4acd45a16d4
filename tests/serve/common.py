"""What the HTTP service tests share: the applications' settings, the model with injected faults, and HTTP
helpers. The applications themselves run once per session (``tests/serve/conftest.py``)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from serve.model import TaskModel

TASKS = ("fill-mask", "question-answering", "text-classification", "token-classification")
PREFIX = {"text-classification": "", "fill-mask": "/fill-mask", "question-answering": "/question-answering",
          "token-classification": "/token-classification", "faulty": "/faulty", "bodies": "/bodies"}
BOTCHAN = (Path(__file__).parents[1] / "fixtures" / "spm" / "botchan_excerpt.txt").read_text(encoding="utf-8")
LONG = BOTCHAN[:2500]  # ~900 tokens: several 256-token windows
COMMON = dict(num_cpus=0.25, max_batch_size=8, max_ongoing_requests=16, max_queued_requests=32,
              batch_wait_timeout_s=0.05, stride=64, max_tokens=2000, request_timeout_s=20)
FAULTY = dict(num_cpus=0.25, max_batch_size=8, max_ongoing_requests=8, max_queued_requests=8,
              batch_wait_timeout_s=0.3, stride=64, request_timeout_s=3, retry_after_s=2)
# Body limits under test: a 2 s body deadline, at most 3 bodies read at once.
BODIES = dict(num_cpus=0.25, max_batch_size=8, stride=64, max_tokens=2000, request_timeout_s=20, body_timeout_s=2,
              max_body_reads=3, retry_after_s=1)
TIMEOUT = 30  # seconds per HTTP call; every call is bounded

class FaultyModel(TaskModel):
    """The real model deployment with failures injected at the ``score_group`` seam."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.sizes: list[int] = []

    def run_batch(self, requests: list[dict[str, Any]]) -> list[Any]:
        self.sizes.append(len(requests))
        return super().run_batch(requests)

    def batch_sizes(self) -> list[int]:
        return list(self.sizes)

    async def predict(self, request: dict[str, Any]) -> Any:
        if "CRASH" in str(request.get("inputs")):
            raise RuntimeError("injected crash outside the batch")
        return await super().predict(request)

    def score_group(self, prepared: list[Any], params: dict[str, Any]) -> list[list[Any]]:
        texts = " ".join(str(r.get("text")) for p in prepared for r in p.records)
        if "STALL" in texts:
            time.sleep(4.0)
        elif "SLOW" in texts:
            time.sleep(0.5)
        if "BOOM" in texts:
            raise RuntimeError("injected failure")
        return super().score_group(prepared, params)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: Any = None, **kwargs: Any) -> requests.Response:
    return requests.post(url, json=body, timeout=TIMEOUT, **kwargs)


def assert_close(got: Any, want: Any, path: str = "") -> None:
    """Equal structure and values; floats to 1e-5 (batch composition changes float summation order)."""
    if isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), path
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: {got!r} vs {want!r}"
        for k in want:
            assert_close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{path}[{i}]")
    else:
        assert got == want, f"{path}: {got!r} vs {want!r}"


def assert_error(r: requests.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and body["request_id"] == r.headers["x-request-id"], body
    for word in words:
        assert word in body["error"], body
    return body




def model_handle(app: str):
    from ray import serve

    return serve.get_deployment_handle("TaskModel", app_name=app)


def expected(references: dict[str, Any], task: str, inputs: Any, params: dict[str, Any]) -> Any:
    """What the service answers: the pipeline's result in the Inference API's shape. Text classification gives
    each input its list of labels, a single input too (``[[{label, score}, ...]]``; top_k 1 by default),
    where the Python pipeline follows transformers' legacy shape (one dict per input without top_k)."""
    if task == "text-classification":
        return references[task](inputs if isinstance(inputs, list) else [inputs], **{"top_k": 1, **params})
    return references[task](inputs, **params)
