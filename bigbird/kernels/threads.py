"""The calling thread's OpenMP team size, for the block-sparse kernel's memory-bound glue.

Why (measured on 2 cores, benchmarks/README.md): every ATen op above ~32k elements is an OpenMP parallel
region that ends only when all its threads have run their share. Beside busy processes one of those threads
is often off its core, and a 1 ms copy then waits for it: in one layer's forward + backward beside two
spinning processes, a dozen tiny ``cat``\\s took 97 ms and one ``logsumexp`` ~40 ms. The kernel therefore runs
its gathers, merges and gradient sums on the calling thread alone and gives the fused attention calls (the
compute, where the threads pay for themselves) the full team.

How: ``omp_set_num_threads`` of the OpenMP runtime that PyTorch itself loaded sets the team size of the
*calling* thread only (an OpenMP per-thread setting), and ATen's ``parallel_for`` reads it
(``torch.get_num_threads()`` is ``omp_get_max_threads()``). ``torch.set_num_threads`` would also change
process-wide state (the count new threads start with), so it is not used. Where PyTorch's OpenMP runtime is
not found (another build), :func:`team` does nothing and the glue stays parallel.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Iterator

import torch


def _runtime() -> ctypes.CDLL | None:
    """PyTorch's own OpenMP runtime, checked to drive ``torch.get_num_threads()`` on this thread; or None."""
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    names = ("libgomp*.so*", "libiomp5*.so*", "libomp*.so*", "libomp*.dylib", "libiomp5*.dylib")
    for path in sorted(p for n in names for p in glob.glob(os.path.join(lib_dir, n))):
        try:
            lib = ctypes.CDLL(path)
            get, put = lib.omp_get_max_threads, lib.omp_set_num_threads
        except (OSError, AttributeError):
            continue
        before = torch.get_num_threads()
        if get() != before:
            continue  # a runtime torch does not use (its own one answers torch.get_num_threads())
        put(1 if before > 1 else 2)
        drives_torch = torch.get_num_threads() != before
        put(before)
        if drives_torch:
            return lib
    return None


_OMP = _runtime()


@contextlib.contextmanager
def team(n: int) -> Iterator[None]:
    """Run the ops inside with ``n`` threads on the calling thread; the previous count is restored on exit
    (also on an error). Other threads are not affected. A no-op without PyTorch's OpenMP runtime.

    Raises:
        ValueError: If ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"a thread team needs at least 1 thread, got {n}")
    if _OMP is None:
        yield
        return
    before = _OMP.omp_get_max_threads()
    _OMP.omp_set_num_threads(n)
    try:
        yield
    finally:
        _OMP.omp_set_num_threads(before)
