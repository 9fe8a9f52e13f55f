"""Stage `resume` of `benchmarks/scale.py`: the `convert` stage's command run again over
its finished output: nothing to convert, every record kept (the box files are still
read and every video's input key computed)."""

from __future__ import annotations

import pathlib

import scale_convert


def prepare(workdir: pathlib.Path, n: int) -> None:
    scale_convert.prepare(workdir, n)
    if not (workdir / f"records_{scale_convert.listed(n)}" / "manifest.json").exists():
        scale_convert.convert(workdir, n)


def run(workdir: pathlib.Path, n: int) -> dict:
    out = scale_convert.convert(workdir, n)
    if out["converted"]:
        raise SystemExit(f"resume converted {out['converted']} videos; expected none")
    return out
