"""Stage `convert_all` of `benchmarks/scale.py`: the converter's command over an SSv2
layout listing all N videos, with the N-video box files, stopped (Ctrl-C) once it has
written `SHARDS` shards, then run again (it resumes) and stopped the same way.

Converting every listed tiny video would take hours at N = 180,000, so this measures what
grows with the listing: each run's set-up (reading the box files, listing, attaching
boxes, and on the rerun checking what is already written) up to its first written shard,
and each run's peak memory, which writing further shards leaves flat (the `convert`
stage: the same peak at 1,800 and 18,000 listed videos)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import scale_boxes
import scale_data

#: Shards each run writes before it is stopped.
SHARDS = 2
#: The most seconds a run may take before it is stopped anyway (then the stage fails).
LIMIT_S = 3600


def _shards(out: pathlib.Path) -> set[str]:
    return {p.name for p in out.glob("*-of-*.tfrecord")} if out.exists() else set()


def _run_until_shards(command: list[str], out: pathlib.Path) -> dict:
    """Runs `command` until `SHARDS` more shards are in `out`, then sends SIGINT; its set-up
    time (to its first new shard), its peak RSS (`os.wait4`) and exit status."""
    before = _shards(out)
    start = time.perf_counter()
    # Ctrl-C's default action in the child even where this process was started with it
    # ignored (a background job of a shell), so the converter stops as a user's would.
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = None
    while time.perf_counter() - start < LIMIT_S and child.poll() is None:
        new = _shards(out) - before
        if new and first is None:
            first = time.perf_counter() - start
        if len(new) >= SHARDS:
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    tail = child.stderr.read().decode(errors="replace").strip().splitlines()[-1:]
    if first is None:
        raise SystemExit(f"no shard written in {seconds:.0f} s: {tail}")
    return {"seconds_to_first_shard": round(first, 1), "seconds": round(seconds, 1),
            "shards_written": len(_shards(out) - before), "exit": child.returncode,
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "cpu_s": round(
                usage.ru_utime + usage.ru_stime, 1), "last_line": tail[0] if tail else ""}


def prepare(workdir: pathlib.Path, n: int) -> None:
    scale_boxes.prepare(workdir, n)
    scale_data.tiny_videos(workdir, n, n)


def run(workdir: pathlib.Path, n: int) -> dict:
    raw = scale_data.tiny_videos(workdir, n, n)
    out = workdir / f"records_all_{n}"
    command = [sys.executable, "-m", "stabn_tf.data.convert", "--dataset=ssv2",
               f"--input_dir={raw}", f"--output_dir={out}", "--workers=1",
               "--noprogress", f"--boxes={','.join(scale_boxes.inputs(workdir, n))}"]
    figures = {"videos_listed": n}
    for name in ("first", "rerun"):
        for key, value in _run_until_shards(command, out).items():
            figures[f"{name}_{key}"] = value
    return figures
