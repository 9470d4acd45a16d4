"""The ingress's retry rule, on the real ``Ingress.predict`` with a stand-in model handle (no Serve): a request
whose replica died is sent once more; model errors, client errors and overload are never retried; a second loss
is a JSON 503 with Retry-After. (tests/serve/test_replica_failure.py shows it under load on Serve.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError

from serve.app import Ingress, replica_lost
from serve.model import Outcome
from serve.settings import Limits

OK = Outcome(200, [[{"label": "POS", "score": 0.9}]])


def model_error(cause: Exception) -> RayTaskError:
    """What awaiting a model call raises when the model's own code raised ``cause``."""
    return RayTaskError("predict", "Traceback: ...", cause).as_instanceof_cause()


class Handle:
    """A model deployment handle whose calls give ``script``'s items in turn (an exception is raised)."""

    def __init__(self, *script: Any) -> None:
        self.script, self.calls = list(script), 0
        self.predict = self

    def remote(self, payload: dict[str, Any]) -> Any:
        item = self.script[self.calls]
        self.calls += 1

        class Response:
            def __await__(self):
                if isinstance(item, BaseException):
                    raise item
                return item
                yield  # a generator: awaitable

            def cancel(self) -> None:
                pass

        return Response()


class Bare:
    """The real Ingress methods on a bare object (its FastAPI app and Serve wrapper are not needed)."""

    predict = Ingress.func_or_class.predict
    unavailable = Ingress.func_or_class.unavailable


def ingress(handle: Handle) -> Any:
    ing = Bare()
    ing.model = handle
    ing.limits = Limits(max_body_bytes=1024, request_timeout_s=5, retry_after_s=3)
    return ing


def answer(handle: Handle) -> tuple[int, Any, dict[str, str]]:
    response = asyncio.run(ingress(handle).predict({"inputs": "x", "parameters": {}}, "rid-1"))
    return response.status_code, json.loads(response.body), dict(response.headers)


@pytest.mark.parametrize("lost", [ActorDiedError(), ActorUnavailableError("connection lost", None),
                                  ReplicaUnavailableError("TaskModel#abc")], ids=type)
def test_lost_replica_is_retried_once(lost):
    handle = Handle(lost, OK)
    status, body, _ = answer(handle)
    assert (status, body, handle.calls) == (200, OK.result, 2)


def test_lost_twice_is_503_after_one_retry():
    handle = Handle(ActorDiedError(), ActorDiedError(), OK)
    status, body, headers = answer(handle)
    assert (status, handle.calls, headers["retry-after"]) == (503, 2, "3")
    assert body["status"] == 503 and body["request_id"] == "rid-1" and "after one retry" in body["error"], body


@pytest.mark.parametrize(("first", "status"), [
    (Outcome(422, error="input 0: no [MASK] token in the text"), 422),  # client error: an outcome
    (Outcome(500, error="internal error while scoring"), 500),  # model error caught in the replica
    (BackPressureError(num_queued_requests=8, max_queued_requests=8), 503),  # overload
])
def test_never_retried(first, status):
    handle = Handle(first, OK)
    got, body, _ = answer(handle)
    assert (got, handle.calls, body["status"]) == (status, 1, status), body


def test_exception_raised_by_the_model_is_not_retried():
    handle = Handle(model_error(RuntimeError("boom")), OK)
    with pytest.raises(RuntimeError):  # the ingress's middleware answers it 500
        answer(handle)
    assert handle.calls == 1


def test_what_counts_as_a_lost_replica():
    assert replica_lost(ActorDiedError()) and replica_lost(ActorUnavailableError("x", None))
    assert replica_lost(ReplicaUnavailableError("r"))
    assert not replica_lost(model_error(RuntimeError("boom")))
    assert not replica_lost(model_error(ActorDiedError()))  # an actor the model called died: the model's error
    assert not replica_lost(BackPressureError(num_queued_requests=1, max_queued_requests=1))
