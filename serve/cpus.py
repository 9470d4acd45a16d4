"""How many CPUs a model replica asks Ray for by default, and how many torch threads it then runs.

The rule (``bigbird serve --help`` and serve/README.md say it too):

- ``num_cpus`` unset, one fixed CPU replica (``replicas: 1``, no ``autoscaling``, ``num_gpus: 0``): the replica
  asks for all the CPUs of the largest node of the cluster (on one machine: the machine's), as a plain FastAPI
  server would use them. The proxy and the ingress ask for none, so they still get scheduled; they share the
  cores with the replica's threads.
- ``num_cpus`` unset otherwise (several replicas, autoscaling, or a GPU replica): 1 CPU per replica, so that
  replicas fit beside each other and a GPU replica does not hold a node's CPUs.
- A replica runs ``floor(its assigned CPUs)`` torch threads (at least 1), but never more than the CPUs its
  process may run on (``os.sched_getaffinity``), as the batch scorer counts them (pipelines/stages.py). Ray
  sets ``OMP_NUM_THREADS`` to the assigned CPUs; the replica sets torch's thread count itself, so the rule holds
  whatever the environment says.
"""

from __future__ import annotations

import math
import os


def default_num_cpus(*, node_cpus: float | None, replicas: int, autoscaling: bool, num_gpus: float) -> float:
    """The ``num_cpus`` of a model replica whose settings leave it unset.

    Args:
        node_cpus: CPUs of the largest node the replica may run on (None: unknown, then 1).
        replicas: Fixed number of replicas.
        autoscaling: Whether the replica count scales.
        num_gpus: GPUs per replica.
    """
    if replicas == 1 and not autoscaling and num_gpus == 0 and node_cpus:
        return float(max(1, math.floor(node_cpus)))
    return 1.0


def replica_threads(assigned_cpus: float | None, usable_cpus: int) -> int:
    """Torch threads of a replica: its assigned CPUs (floored, at least 1), at most the CPUs it may run on."""
    wanted = math.floor(assigned_cpus) if assigned_cpus else 1
    return max(1, min(wanted, usable_cpus))


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def largest_node_cpus() -> float | None:
    """CPUs of the largest live node of the connected Ray cluster; without a connection, this machine's."""
    import ray

    if not ray.is_initialized():
        return float(usable_cpus())
    cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
    return max(cpus) if cpus else None
