"""Stage `convert` of `benchmarks/scale.py`: `convert_dataset` of an SSv2 layout of tiny
videos with the N-video box files (Something-Else's four parts and a simple-format file).

The layout lists `listed(n)` of the N videos (all of them up to `LISTED`): the box files
always hold all N, so reading them is measured at full size while the decoding of
tiny videos (tens of ms each on a shared 2-core machine) stays affordable."""

from __future__ import annotations

import pathlib
import time

import scale_boxes
import scale_data

#: The most videos a layout lists.
LISTED = 1800
#: In this process: its peak RSS is the whole conversion's (each spawned worker adds its
#: own TensorFlow import, ~0.7 GB, whatever the box files).
WORKERS = 1


def listed(n: int) -> int:
    return min(n, LISTED)


def convert(workdir: pathlib.Path, n: int) -> dict:
    from stabn_tf.data import convert as convert_lib

    raw = scale_data.tiny_videos(workdir, n, listed(n))
    t0 = time.perf_counter()
    manifest = convert_lib.convert_dataset(
        "ssv2", raw, str(workdir / f"records_{listed(n)}"), workers=WORKERS, progress=False,
        boxes=scale_boxes.inputs(workdir, n))
    seconds = time.perf_counter() - t0
    done = manifest["videos_processed_this_run"]
    return {"videos_listed": listed(n), "box_videos": n, "converted": done,
            "videos_with_boxes": manifest["boxes"]["videos_with_boxes"],
            "box_problems": manifest["boxes"]["problems"], "workers": WORKERS,
            "videos_per_s": round(listed(n) / seconds, 1)}


def prepare(workdir: pathlib.Path, n: int) -> None:
    scale_boxes.prepare(workdir, n)
    scale_data.tiny_videos(workdir, n, listed(n))


def run(workdir: pathlib.Path, n: int) -> dict:
    return convert(workdir, n)
