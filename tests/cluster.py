"""Simulated multi-node clusters for the node-removal tests (``ray.cluster_utils.Cluster``: several raylets on
this machine), and taking a node away as a lost machine would.

A test that makes its own cluster ends the session's local Ray first (tests/conftest.py) and brings it back
afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil


def raylet(node) -> psutil.Process:
    """The raylet process of a ``Cluster`` node."""
    from ray._private import ray_constants

    return psutil.Process(node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid)


def hosts(workers: list, marker: str) -> dict:
    """``node -> [processes]`` for the nodes whose raylet started a process with ``marker`` in its command line
    (e.g. ``"RayTrainWorker"``, ``"MapWorker"``)."""
    found: dict = {}
    for node in workers:
        try:
            procs = [p for p in raylet(node).children(recursive=True) if marker in " ".join(p.cmdline())]
        except psutil.Error:
            continue
        if procs:
            found[node] = procs
    return found


def remove_node(c, node) -> list[psutil.Process]:
    """Take a node away as a lost machine would: its raylet stops (and tells the GCS, so its actors are dead at
    once rather than after the missed-heartbeat threshold) and every process it started is killed. Returns
    those processes."""
    children = raylet(node).children(recursive=True)
    c.remove_node(node, allow_graceful=True)
    for p in children:
        try:
            p.kill()
        except psutil.Error:
            pass
    return children


@contextmanager
def simulated_cluster(head_cpus: float, worker_cpus: list[float], *, object_store_mib: int | None = None,
                      before_shutdown: Callable[[], None] | None = None) -> Iterator[tuple]:
    """``(cluster, worker nodes)`` with this driver connected; the session's local Ray is ended first and
    restarted afterwards (as tests/conftest.py starts it). ``before_shutdown`` runs before Ray is shut down
    (e.g. ``serve.shutdown``)."""
    import ray
    from ray.cluster_utils import Cluster

    had_session_ray = ray.is_initialized()
    if had_session_ray:
        ray.shutdown()
    store = {} if object_store_mib is None else {"object_store_memory": object_store_mib * 2**20}
    # A loaded 2-core machine delays raylet heartbeats: a generous threshold keeps the GCS from declaring a
    # live node dead (the removal in the test is the only node failure it wants).
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": head_cpus, "include_dashboard": False, **store,
                                                      "_system_config": {"health_check_failure_threshold": 20}})
    workers = [c.add_node(num_cpus=n, **store) for n in worker_cpus]
    c.wait_for_nodes(timeout=180)
    ray.init(address=c.address, log_to_driver=False, configure_logging=False)
    try:
        yield c, workers
    finally:
        try:
            if before_shutdown is not None:
                before_shutdown()
        finally:
            ray.shutdown()
            c.shutdown()
            if had_session_ray:  # as tests/conftest.py's session cluster
                ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
