"""Worker processes for the converter and the synthetic generator."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.pool
import os
from collections.abc import Iterator


def default_workers() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def worker_pool(workers: int | None, pool: multiprocessing.pool.Pool | None = None
                ) -> Iterator[multiprocessing.pool.Pool | None]:
    """`pool` itself when given (left open: the caller owns it); otherwise a new pool of
    `workers` spawned processes (None = all cores), or None for `workers` <= 1 (work in
    this process). Spawned, not forked: forking a process that already runs TensorFlow
    threads can deadlock the child."""
    if pool is not None:
        yield pool
        return
    workers = default_workers() if workers is None else workers
    if workers <= 1:
        yield None
        return
    new = multiprocessing.get_context("spawn").Pool(workers)
    try:
        yield new
    finally:
        new.terminate()
        new.join()
