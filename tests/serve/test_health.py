"""The model deployment's ``check_health``: what it checks, in process, and Serve replacing a hung replica.

In process (the real :class:`serve.model.TaskModel` on a tiny model, no Serve): healthy after loading; a scoring
pass running past ``stuck_after_s`` fails it; after a scoring failure it probes the model with a tiny cached
input, so one request's failure leaves the replica healthy and a model that fails everything does not.
On Serve: a replica whose forward pass hangs is replaced (health checks every second), and the service answers
again; the time from the hang to the new replica's first answer is printed (``-s``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from serve.model import TaskModel
from tests.serve.replicas import RecordedModel, make_recorder, wait_for

STUCK_APP, STUCK_PREFIX = "stuck", "/stuck"
STUCK = dict(replicas=1, num_cpus=0.25, max_batch_size=4, max_ongoing_requests=8, stride=64, request_timeout_s=2,
             retry_after_s=1, health_check_period_s=1, health_check_timeout_s=5, stuck_after_s=4)


class HangingModel(RecordedModel):
    """The real model deployment, whose forward pass hangs (for minutes) on a text holding ``HANG``."""

    def score_group(self, prepared: list[Any], params: dict[str, Any]) -> list[list[Any]]:
        if any("HANG" in str(r.get("text")) for p in prepared for r in p.records):
            time.sleep(600)
        return super().score_group(prepared, params)


@pytest.fixture
def local_model(ray_cluster, task_models) -> TaskModel:
    from serve.settings import make_settings

    settings = make_settings({"model": str(task_models["fill-mask"]), "task": "fill-mask", "stride": 64})
    return TaskModel(settings.model_dump())


def healthy(model: TaskModel) -> str | None:
    """None if the health check passes, else its message."""
    try:
        asyncio.run(model.check_health())
    except RuntimeError as e:
        return str(e)
    return None


def test_check_health_flags_a_stuck_pass(local_model):
    assert healthy(local_model) is None
    local_model.scoring_since = time.monotonic() - 400  # a pass started 400 s ago, still running
    message = healthy(local_model)
    assert message is not None and "stuck" in message and "stuck_after_s 300" in message
    local_model.scoring_since = time.monotonic() - 5  # a pass under way, not for long
    assert healthy(local_model) is None
    local_model.scoring_since = None
    (outcome,) = local_model.run_batch([{"inputs": "The [MASK] sat.", "request_id": "r"}])
    assert outcome.status == 200 and local_model.scoring_since is None  # cleared after each pass


def test_check_health_probes_after_a_failure(local_model, monkeypatch):
    real = local_model.score_group

    def fails_on_poison(prepared: list[Any], params: dict[str, Any]) -> list[list[Any]]:
        if any("poison" in str(r.get("text")) for p in prepared for r in p.records):
            raise RuntimeError("this request breaks the forward")
        return real(prepared, params)

    monkeypatch.setattr(local_model, "score_group", fails_on_poison)
    bad = local_model.run_batch([{"inputs": "A [MASK] of poison.", "request_id": "a"}])
    assert [o.status for o in bad] == [500] and local_model.suspect is not None
    assert healthy(local_model) is None and local_model.suspect is None  # the probe passes: one request's fault
    (invalid,) = local_model.run_batch([{"inputs": "no mask here", "request_id": "b"}])
    assert invalid.status == 422 and local_model.suspect is None  # client errors raise no suspicion

    def broken(prepared: list[Any], params: dict[str, Any]) -> list[list[Any]]:
        raise RuntimeError("device lost")

    monkeypatch.setattr(local_model, "score_group", broken)
    assert [o.status for o in local_model.run_batch([{"inputs": "The [MASK] sat.", "request_id": "c"}])] == [500]
    message = healthy(local_model)
    assert message is not None and "probe input fails" in message and "device lost" in message
    monkeypatch.setattr(local_model, "score_group", real)  # the device is back: healthy again
    assert healthy(local_model) is None


def test_serve_replaces_a_hung_replica(urls, task_models):
    import ray
    import requests
    from ray import serve

    from serve.app import build_application
    from serve.settings import make_settings

    recorder = make_recorder()
    settings = make_settings({"model": str(task_models["text-classification"]), **STUCK})
    serve.run(build_application(settings, model_class=HangingModel), name=STUCK_APP, route_prefix=STUCK_PREFIX)
    url = f"{urls['text-classification']}{STUCK_PREFIX}/v1/text-classification"
    try:
        assert requests.post(url, json={"inputs": "before"}, timeout=30).status_code == 200
        state = lambda: ray.get(recorder.state.remote())  # noqa: E731
        (first,) = state()["started"]
        hung = time.time()
        r = requests.post(url, json={"inputs": "HANG"}, timeout=30)
        assert r.status_code == 503 and "timeout" in r.json()["error"], r.text
        wait_for(lambda: len(state()["started"]) > 1, 120, "a replacement replica", every_s=0.5)

        def answered() -> bool:
            return requests.post(url, json={"inputs": "after"}, timeout=30).status_code == 200

        back = wait_for(answered, 120, "the service answering again", every_s=0.5)
        new = [r for r in state()["first_answer"] if r != first]
        assert new, state()
    finally:
        serve.delete(STUCK_APP)
    print(f"\n[hung replica] replaced (health checks every 1 s, stuck_after_s 4): the service answered again "
          f"{back - hung:.1f} s after the hanging request was sent")
