"""What the replica-failure tests share: a model deployment that reports its replicas to a recorder actor, and a
closed-loop load of HTTP clients that logs every answer.

:class:`RecordedModel` is the real :class:`serve.model.TaskModel`; each replica tells the :class:`Recorder`
(a named actor made by the test) its id, process id and node when it starts, and every request it takes and
answers. The test then knows which process to kill, which requests the killed replica held when it died (taken,
never answered: those the ingress had to retry) and when a new replica answered its first request.

A replica can also be told to die (:func:`arm_kill`): it SIGKILLs itself on the first request that finds it
holding ``at_least`` requests, after telling the recorder how many it held. Killing it from outside at a moment
the recorder showed it holding requests is a race (the recorder hears of answers a little late, so the replica
may have answered them all already: one CI run killed an idle replica that way).
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import requests

from serve.model import Outcome, TaskModel

RECORDER, NAMESPACE = "bigbird-replica-recorder", "bigbird-tests"
KILL_DIR = Path(tempfile.gettempdir()) / "bigbird-test-replica-kills"  # one file per replica told to die


@ray.remote(num_cpus=0)
class Recorder:
    """Replicas report here: ``started`` (id -> pid, node, wall time), requests taken and answered per replica."""

    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self.taken: Counter = Counter()
        self.answered: Counter = Counter()
        self.first_answer: dict[str, float] = {}
        self.killed: dict[str, dict[str, Any]] = {}

    def start(self, replica: str, pid: int, node: str, at: float) -> None:
        self.started[replica] = {"pid": pid, "node": node, "at": at}

    def take(self, replica: str) -> None:
        self.taken[replica] += 1

    def answer(self, replica: str, at: float) -> None:
        self.answered[replica] += 1
        self.first_answer.setdefault(replica, at)

    def kill(self, replica: str, holding: int, at: float) -> None:
        self.killed[replica] = {"holding": holding, "at": at}

    def state(self) -> dict[str, Any]:
        return {"started": dict(self.started), "taken": dict(self.taken), "answered": dict(self.answered),
                "first_answer": dict(self.first_answer), "killed": dict(self.killed)}


class RecordedModel(TaskModel):
    """The real model deployment, reporting to the :class:`Recorder` (fire and forget: calls from one caller
    to one actor run in order, so the recorder's counts are final once the replica is dead)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        from ray import serve

        super().__init__(settings)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.recorder = ray.get_actor(RECORDER, namespace=NAMESPACE)
        self.recorder.start.remote(self.replica, os.getpid(), ray.get_runtime_context().get_node_id(), time.time())
        self.holding = 0  # requests taken, not yet answered

    async def predict(self, request: dict[str, Any]) -> Outcome:
        self.recorder.take.remote(self.replica)
        self.holding += 1
        try:
            self._maybe_die()
            outcome = await super().predict(request)
        finally:
            self.holding -= 1
        self.recorder.answer.remote(self.replica, time.time())
        return outcome

    def _maybe_die(self) -> None:
        """SIGKILL this process if :func:`arm_kill` armed this replica and it holds enough requests. The recorder
        hears first (a blocking call: it has then processed every earlier ``take``/``answer`` of this replica)."""
        order = KILL_DIR / self.replica
        if not order.exists() or self.holding < int(order.read_text()):
            return
        ray.get(self.recorder.kill.remote(self.replica, self.holding, time.time()))
        os.kill(os.getpid(), signal.SIGKILL)


def arm_kill(replica: str, at_least: int) -> Path:
    """Tell ``replica`` (a :class:`RecordedModel` replica id) to SIGKILL itself on the first request that finds
    it holding ``at_least`` requests (that one included). Returns the order file; delete it when done."""
    KILL_DIR.mkdir(exist_ok=True)
    order, part = KILL_DIR / replica, KILL_DIR / f".{replica}.part"
    part.write_text(str(at_least))
    part.replace(order)  # whole, or not there: a replica never reads half of it
    return order


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
    ``(sent, answered, status, body, which)`` in wall-clock seconds (status -1: no HTTP answer; a body that is
    not JSON is kept as text)."""

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
            except requests.RequestException as e:
                status, body = -1, repr(e)
            else:
                try:
                    status, body = r.status_code, r.json()
                except ValueError:  # not JSON (e.g. the Serve proxy's own plain-text errors): keep the text
                    status, body = r.status_code, r.text
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
