"""A model replica killed under load loses no request: two replicas, 16 closed-loop clients, one replica's process
SIGKILLed while it holds at least 2 requests (it kills itself when told to, :func:`tests.serve.replicas.arm_kill`,
so that the requests it held are known exactly). The ingress retries each request whose replica died once on the
live replica (serve/app.py), so every request is answered 200, with the answer the in-process pipeline gives.

The application (``failover``, two :class:`tests.serve.replicas.RecordedModel` replicas) runs beside the
session's applications on the same Serve. The recovery times (kill -> a new replica RUNNING and the count back at
2; kill -> the new replica's first answer) and the counts are printed (``-s``); they are not asserted.
"""

from __future__ import annotations

import time

import psutil

from tests.serve.common import LONG, assert_close, expected
from tests.serve.replicas import Load, RecordedModel, arm_kill, make_recorder, running_replicas, wait_for

APP, PREFIX = "failover", "/failover"
FAILOVER = dict(replicas=2, num_cpus=0.25, max_batch_size=8, max_ongoing_requests=16, max_queued_requests=64,
                batch_wait_timeout_s=0.02, stride=64, max_tokens=2000, request_timeout_s=60)
TEXTS = ["A short review.", LONG[:700], "Another text, a little longer than the first one.", LONG[700:1500]]


def test_replica_killed_under_load_loses_no_request(urls, references, task_models):
    import ray
    from ray import serve

    from serve.app import build_application
    from serve.settings import make_settings

    recorder = make_recorder()
    settings = make_settings({"model": str(task_models["text-classification"]), **FAILOVER})
    serve.run(build_application(settings, model_class=RecordedModel), name=APP, route_prefix=PREFIX)
    want = [expected(references, "text-classification", text, {}) for text in TEXTS]
    load = Load(f"{urls['text-classification']}{PREFIX}/v1/text-classification", [{"inputs": t} for t in TEXTS])
    try:
        load.start()
        state = lambda: ray.get(recorder.state.remote())  # noqa: E731
        before = state()
        assert len(before["started"]) == 2, before
        wait_for(lambda: min(state()["answered"].get(r, 0) for r in before["started"]) >= 5, 120,
                 "both replicas answering")
        victim = min(before["started"])
        order = arm_kill(victim, at_least=2)  # it dies on a request that finds it holding another one
        try:
            wait_for(lambda: victim in state()["killed"], 120, "the victim killed while holding 2 requests")
        finally:
            order.unlink()
        killed = state()["killed"][victim]["at"]
        wait_for(lambda: not psutil.pid_exists(before["started"][victim]["pid"]), 30, "the victim's process gone")

        def new_replicas() -> list[str]:
            return [r for r in state()["started"] if r not in before["started"]]

        back = wait_for(lambda: new_replicas() and running_replicas(APP) == 2, 300, "a new replica RUNNING")
        wait_for(lambda: any(r in state()["first_answer"] for r in new_replicas()), 300,
                 "the new replica answering")
        time.sleep(2)  # a little more load on the two replicas
    finally:
        load.stop()
        serve.delete(APP)
    final = state()
    (new,) = new_replicas()
    held = final["taken"].get(victim, 0) - final["answered"].get(victim, 0)
    assert held == final["killed"][victim]["holding"] >= 2, final  # the recorder heard everything before the kill
    statuses = load.statuses()
    failed = statuses.total() - statuses[200]
    after_kill = sum(1 for sent, _, _, _, _ in load.log if sent >= killed)
    print(f"\n[replica kill] {statuses.total()} requests from {load.clients} clients ({after_kill} sent after the "
          f"kill), {failed} failed {dict(statuses)}; the killed replica held {held} requests (retried); "
          f"replicas back at 2 RUNNING {back - killed:.1f} s after the kill, new replica's first answer "
          f"{final['first_answer'][new] - killed:.1f} s after the kill")
    assert failed == 0, [entry for entry in load.log if entry[2] != 200][:5]
    for _, _, _, body, which in load.log:
        assert_close(body, want[which])
