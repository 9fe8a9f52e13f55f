"""Drawing the clips on every core: `Drawer` hands each clip's `Drawing` to a pool of
processes (the models stay in the calling process, which feeds them) and gives the records
back in the order the clips were given, so the site is the same for any number of workers.

The processes start from a fork server that has already imported the drawing code, so a
worker costs a fork, not a fresh Python and TensorFlow import.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os

from stabn_tf.report.clips import Drawing, draw_clip


def default_workers() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Drawer:
    """`submit(drawing)` → a future of its record; with `workers=1` the drawing happens
    at once in this process (nothing to start). The pool starts with the first clip that
    needs drawing, so a re-run that draws nothing starts none."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def submit(self, drawing: Drawing) -> concurrent.futures.Future:
        if self.workers == 1:
            done = concurrent.futures.Future()
            try:
                done.set_result(draw_clip(drawing))
            except Exception as e:  # handed to whoever reads the result, as a pool does
                done.set_exception(e)
            return done
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["stabn_tf.report.clips"])
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers,
                                                                mp_context=context)
        return self._pool.submit(draw_clip, drawing)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Drawer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
