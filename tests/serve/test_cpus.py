"""The replica's default CPUs and torch threads (serve/cpus.py), as pure functions: no timing."""

from __future__ import annotations

import pytest

from serve.cpus import default_num_cpus, replica_threads
from serve.settings import make_settings


@pytest.mark.parametrize(("node_cpus", "replicas", "autoscaling", "num_gpus", "want"), [
    (16.0, 1, False, 0, 16.0),  # one CPU replica: the node's CPUs
    (2.0, 1, False, 0, 2.0),
    (6.5, 1, False, 0, 6.0),  # whole CPUs
    (0.5, 1, False, 0, 1.0),
    (None, 1, False, 0, 1.0),  # unknown node
    (16.0, 2, False, 0, 1.0),  # several replicas share the nodes
    (16.0, 1, True, 0, 1.0),  # autoscaling
    (16.0, 1, False, 1, 1.0),  # a GPU does the work
])
def test_default_num_cpus(node_cpus, replicas, autoscaling, num_gpus, want):
    got = default_num_cpus(node_cpus=node_cpus, replicas=replicas, autoscaling=autoscaling, num_gpus=num_gpus)
    assert got == want


@pytest.mark.parametrize(("assigned", "usable", "want"), [
    (16.0, 16, 16), (2.0, 16, 2), (16.0, 4, 4), (0.25, 16, 1), (0.0, 16, 1), (None, 16, 1), (2.9, 16, 2)])
def test_replica_threads(assigned, usable, want):
    assert replica_threads(assigned, usable) == want


def test_settings_follow_the_rule_and_an_explicit_value_wins():
    one = make_settings({"model": "m", "num_gpus": 0})
    assert one.num_cpus is None and one.replica_options(node_cpus=8)["ray_actor_options"]["num_cpus"] == 8.0
    assert make_settings({"model": "m", "num_gpus": 0, "num_cpus": 0.5}).replica_cpus(8) == 0.5
    two = make_settings({"model": "m", "num_gpus": 0, "replicas": 2})
    assert two.replica_options(node_cpus=8)["ray_actor_options"]["num_cpus"] == 1.0


def test_help_says_the_rule():
    from serve.cli import parser

    text = " ".join(parser().format_help().split())
    assert "one CPU replica gets all the CPUs of the largest node" in text
    assert "torch threads" in text and "--api-key-file" in text
