"""Stage `boxes_1p` of `benchmarks/scale.py`: stage `boxes` in one process (`workers=1`),
the per-core cost of the streaming reader."""

from __future__ import annotations

import pathlib

import scale_boxes


def prepare(workdir: pathlib.Path, n: int) -> None:
    scale_boxes.prepare(workdir, n)


def run(workdir: pathlib.Path, n: int) -> dict:
    return scale_boxes.run_one_process(workdir, n)
