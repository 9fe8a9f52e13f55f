"""Stage `boxes_main` of `benchmarks/scale.py`: the box reader before streaming
(`json.load` of each whole file, an object per box) on the same files as stage `boxes`,
for the per-video ratio. Taken from git at run time (`git show <BASELINE>:...`)."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import scale_boxes

#: Main's reader holds the whole files as Python objects: ~0.12 GB per 1,000 videos.
MAX_N = 20000
#: The last commit with the json.load reader (main before the streaming reader landed).
BASELINE = "a384790"


def prepare(workdir: pathlib.Path, n: int) -> None:
    scale_boxes.prepare(workdir, n)


def run(workdir: pathlib.Path, n: int) -> dict:
    repo = pathlib.Path(__file__).resolve().parent.parent
    source = subprocess.run(["git", "show", f"{BASELINE}:stabn_tf/data/boxes.py"], cwd=repo,
                            check=True, capture_output=True, text=True).stdout
    path = workdir / "boxes_main.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("boxes_main", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["boxes_main"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return scale_boxes.read(module.load_box_files, workdir, n)
