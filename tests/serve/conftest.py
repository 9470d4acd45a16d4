"""Session fixtures of the HTTP service tests: the applications, started once on the shared Ray cluster."""

from __future__ import annotations

from typing import Any

import pytest

from tests.serve.common import BODIES, COMMON, FAULTY, PREFIX, TASKS, FaultyModel, free_port


@pytest.fixture(scope="session")
def urls(ray_cluster, task_models) -> dict[str, str]:
    """Base URL of each application."""
    from ray import serve
    from ray.serve import RunTarget

    from serve.app import build_application
    from serve.settings import make_settings

    port = free_port()
    serve.shutdown()  # a clean Serve on our port, whatever ran before
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        targets = [RunTarget(build_application(make_settings({"model": str(task_models[t]), "task": t, **COMMON})),
                             name=t, route_prefix=PREFIX[t] or "/") for t in TASKS]
        faulty = make_settings({"model": str(task_models["text-classification"]), **FAULTY})
        targets.append(RunTarget(build_application(faulty, model_class=FaultyModel), name="faulty",
                                 route_prefix=PREFIX["faulty"]))
        bodies = make_settings({"model": str(task_models["text-classification"]), **BODIES})
        targets.append(RunTarget(build_application(bodies), name="bodies", route_prefix=PREFIX["bodies"]))
        serve.run_many(targets)
        yield {name: f"http://127.0.0.1:{port}{prefix}" for name, prefix in PREFIX.items()}
    finally:
        serve.shutdown()


@pytest.fixture(scope="session")
def references(task_models) -> dict[str, Any]:
    """The in-process task pipelines on the same folders and window settings."""
    from bigbird.tasks import pipeline

    return {t: pipeline(t, task_models[t], stride=COMMON["stride"]) for t in TASKS}
