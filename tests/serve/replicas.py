"""What the replica-failure tests share: a model deployment that reports its replicas to a recorder actor, and a
closed-loop load of HTTP clients that logs every answer.

:class:`RecordedModel` is the real :class:`serve.model.TaskModel`; each replica tells the :class:`Recorder`
(a named actor made by the test) its id, process id and node when it starts, and every request it takes and
answers. The test then knows which process to kill, which requests the killed replica held when it died (taken,
never answered: those the ingress had to retry) and when a new replica answered its first request.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import ray
import requests

from serve.model import Outcome, TaskModel

RECORDER, NAMESPACE = "bigbird-replica-recorder", "bigbird-tests"


@ray.remote(num_cpus=0)
class Recorder:
    """Replicas report here: ``started`` (id -> pid, node, wall time), requests taken and answered per replica."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self.taken: Counter = Counter()
        self.answered: Counter = Counter()
        self.first_answer: dict[str, float] = {}

    def start(self, replica: str, pid: int, node: str, at: float) -> None:
        self.started[replica] = {"pid": pid, "node": node, "at": at}

    def take(self, replica: str) -> None:
        self.taken[replica] += 1

    def answer(self, replica: str, at: float) -> None:
        self.answered[replica] += 1
        self.first_answer.setdefault(replica, at)

    def state(self) -> dict[str, Any]:
        return {"started": dict(self.started), "taken": dict(self.taken), "answered": dict(self.answered),
                "first_answer": dict(self.first_answer)}


class RecordedModel(TaskModel):
    """The real model deployment, reporting to the :class:`Recorder` (fire and forget: calls from one caller
    to one actor run in order, so the recorder's counts are final once the replica is dead)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from ray import serve

        super().__init__(settings)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.recorder = ray.get_actor(RECORDER, namespace=NAMESPACE)
        self.recorder.start.remote(self.replica, os.getpid(), ray.get_runtime_context().get_node_id(), time.time())

    async def predict(self, request: dict[str, Any]) -> Outcome:
        self.recorder.take.remote(self.replica)
        outcome = await super().predict(request)
        self.recorder.answer.remote(self.replica, time.time())
        return outcome


def make_recorder(on_node: str | None = None) -> Any:
    """A fresh recorder (the replicas look it up by name when they start), on node ``on_node`` if given."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        ray.kill(ray.get_actor(RECORDER, namespace=NAMESPACE))
    except ValueError:
        pass
    else:  # the name is free once the old one is gone

        def name_free() -> bool:
            try:
                ray.get_actor(RECORDER, namespace=NAMESPACE)
            except ValueError:
                return True
            return False

        wait_for(name_free, 60, "the previous recorder gone")
    where = {} if on_node is None else {"scheduling_strategy": NodeAffinitySchedulingStrategy(on_node, soft=False)}
    recorder = Recorder.options(name=RECORDER, namespace=NAMESPACE, **where).remote()
    ray.get(recorder.state.remote())
    return recorder


def running_replicas(app: str) -> int:
    """Model replicas Serve reports RUNNING for ``app``."""
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or "TaskModel" not in status.deployments:
        return 0
    return status.deployments["TaskModel"].replica_states.get("RUNNING", 0)


@dataclass
class Load:
    """``clients`` threads posting ``bodies`` in turn to ``url`` until :meth:`stop`; every answer is logged as
    ``(sent, answered, status, body)`` in wall-clock seconds (status -1: no HTTP answer)."""

    url: str
    bodies: list[dict[str, Any]]
    clients: int = 16
    timeout_s: float = 120.0
    log: list[tuple[float, float, int, Any, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(self.clients)]

    def client(self, i: int) -> None:
        n = i
        while not self.stopping.is_set():
            which = n % len(self.bodies)
            sent = time.time()
            try:
                r = requests.post(self.url, json=self.bodies[which], timeout=self.timeout_s)
                status, body = r.status_code, r.json()
            except (requests.RequestException, ValueError) as e:
                status, body = -1, repr(e)
            with self.lock:
                self.log.append((sent, time.time(), status, body, which))
            n += 1

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=self.timeout_s + 10)
        assert not any(t.is_alive() for t in self.threads), "a client is still waiting for an answer"

    def statuses(self) -> Counter:
        with self.lock:
            return Counter(status for _, _, status, _, _ in self.log)


def wait_for(condition: Any, timeout_s: float, what: str, every_s: float = 0.2) -> float:
    """Poll ``condition()`` until true; the wall-clock time it became true. Fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.time()
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:g} s")
