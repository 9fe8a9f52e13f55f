"""Stage `boxes` of `benchmarks/scale.py`: the streaming box reader on N videos of
Something-Else's four parts plus a simple-format file of the same videos, keeping every
video's boxes (a converter that lists them all)."""

from __future__ import annotations

import os
import pathlib
import resource
import time

import scale_data


def inputs(workdir: pathlib.Path, n: int) -> list[str]:
    """The box files of N videos (generated once per size)."""
    return [*scale_data.something_else_parts(workdir, n), scale_data.simple_file(workdir, n)]


def prepare(workdir: pathlib.Path, n: int) -> None:
    inputs(workdir, n)


def read(load_box_files, workdir: pathlib.Path, n: int, **kwargs) -> dict:
    """Times `load_box_files` on the N-video files: figures per video."""
    files = inputs(workdir, n)
    size = sum(os.path.getsize(f) for f in files)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # imports: TF
    def children_cpu() -> float:  # worker processes, counted once they have ended
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    t0, cpu0, child0 = time.perf_counter(), time.process_time(), children_cpu()
    table, problems = load_box_files(files, **kwargs)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cpu += children_cpu() - child0
    boxes = sum(len(v.roles) if hasattr(v, "roles") else sum(len(b) for _, b in v.frames)
                for v in table.values())
    if len(table) != n:
        raise SystemExit(f"read {len(table)} videos, expected {n}")
    return {"rss_before_mb": round(before), "videos": len(table), "boxes": boxes,
            "problems": len(problems),
            "files_mb": round(size / 1e6), "seconds_reading": round(seconds, 2),
            "ms_per_video": round(seconds / n * 1e3, 3), "cpu_s_reading": round(cpu, 2),
            "cpu_ms_per_video": round(cpu / n * 1e3, 3),  # workers' included
            "mb_per_s": round(size / 1e6 / seconds, 1)}


def run(workdir: pathlib.Path, n: int) -> dict:
    """Every core (the converter's default), the files read at once."""
    from stabn_tf.data import boxes

    known = [scale_data.clip_id(i) for i in range(n)]
    return read(boxes.load_box_files, workdir, n, known=known)


def run_one_process(workdir: pathlib.Path, n: int) -> dict:
    """The same reading in one process (`workers=1`): the per-core cost (stage
    `boxes_1p`)."""
    from stabn_tf.data import boxes

    known = [scale_data.clip_id(i) for i in range(n)]
    return read(boxes.load_box_files, workdir, n, known=known, workers=1)
