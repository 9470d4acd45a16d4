"""Session fixtures: tiny task models on disk and one shared local Ray cluster."""

from __future__ import annotations

import os

import pytest

from tests.helpers import TASK_CLASSES, build_task_model

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def task_models(tmp_path_factory) -> dict:
    """``task -> folder`` of a random-weight model with the real SentencePiece test tokenizer."""
    root = tmp_path_factory.mktemp("task_models")
    return {task: build_task_model(root / task, task) for task in TASK_CLASSES}


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session; 4 logical CPUs so read tasks never starve actors."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
