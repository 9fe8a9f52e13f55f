"""Cheap inputs at Something-Something size for `benchmarks/scale.py`: box files in both
formats, and an SSv2 layout of tiny videos.

Something-Else's files are generated in their published shape: `{id: [frame, ...]}`,
45 frames a video (`"<id>/0001.jpg"`, at 12 fps), each with a hand and one or two
objects (`box2d` x1, y1, x2, y2 as floats in pixels, `category`, `standard_category`
"hand" / "0000" / "0001"), `gt_placeholders` and `nr_instances`: about 22 KB a video,
near the real parts' 25 KB. The pixels are those of the tiny videos (16×16, 45 frames
at 12 fps), so every box fits its video and the converter stores them all (the numbers
have as many digits as a 427×240 frame's would). Text is written with format strings, not
`json.dump` of a whole structure, so generating 180,000 videos stays within a few
hundred MB.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

#: Something-Else's four parts share the ~180,000 annotated videos.
PARTS = 4
FRAMES_PER_VIDEO = 45
#: The tiny videos' size: conversion stays cheap, so the box files and the bookkeeping
#: dominate what is measured. Something-Else's frames map one to one onto theirs.
VIDEO_SIZE, VIDEO_FRAMES, VIDEO_FPS = 16, FRAMES_PER_VIDEO, 12
LABELS = ["Holding something", "Pushing something"]


def clip_id(i: int) -> str:
    return str(100000 + i)


def _label(rng_row, category: str, standard: str) -> str:
    x1, y1, w, h = rng_row
    x2, y2 = min(x1 + w, float(VIDEO_SIZE)), min(y1 + h, float(VIDEO_SIZE))
    return (f'{{"box2d": {{"x1": {x1!r}, "x2": {x2!r}, "y1": {y1!r}, "y2": {y2!r}}}, '
            f'"category": "{category}", "standard_category": "{standard}"}}')


def _something_else_video(rng: np.random.Generator, cid: str) -> str:
    side = VIDEO_SIZE
    boxes = rng.uniform([0, 0, 1, 1], [0.8 * side, 0.8 * side, side / 2, side / 2],
                        size=(FRAMES_PER_VIDEO, 3, 4))
    two = rng.random(FRAMES_PER_VIDEO) < 0.5  # a second object on about half the frames
    frames = []
    for f in range(FRAMES_PER_VIDEO):
        rows = boxes[f].tolist()
        labels = [_label(rows[0], "hand", "hand"), _label(rows[1], "cup", "0000")]
        placeholders = '"cup"'
        if two[f]:
            labels.append(_label(rows[2], "table", "0001"))
            placeholders += ', "table"'
        frames.append(f'{{"gt_placeholders": [{placeholders}], "labels": [{", ".join(labels)}], '
                      f'"name": "{cid}/{f + 1:04d}.jpg", "nr_instances": {len(labels)}}}')
    return "[" + ", ".join(frames) + "]"


def something_else_parts(folder: pathlib.Path, n: int, seed: int = 0) -> list[str]:
    """Writes Something-Else's format for videos 0..n-1, split into `PARTS` files; returns
    their paths (existing files of the same size are reused)."""
    paths = [folder / f"bounding_box_smthsmth_part{p + 1}.json" for p in range(PARTS)]
    done = folder / "something_else.done"
    if done.exists() and done.read_text() == str(n):
        return [str(p) for p in paths]
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, n, PARTS + 1).astype(int)
    for p, path in enumerate(paths):
        with open(path, "w", encoding="utf-8") as f:
            f.write("{")
            for i in range(bounds[p], bounds[p + 1]):
                cid = clip_id(i)
                f.write(("" if i == bounds[p] else ", ") + f'"{cid}": '
                        + _something_else_video(rng, cid))
            f.write("}")
    done.write_text(str(n))
    return [str(p) for p in paths]


def simple_file(folder: pathlib.Path, n: int, seed: int = 1) -> str:
    """Writes the simple format for videos 0..n-1: a few normalised boxes on a few frames
    and `active_frames`, as a person's corrections look."""
    path = folder / "simple.json"
    done = folder / "simple.done"
    if done.exists() and done.read_text() == str(n):
        return str(path)
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("{")
        for i in range(n):
            lo = rng.uniform(0, 0.5, size=(3, 2))
            frames = {str(k): [[*lo[k].tolist(), *(lo[k] + 0.3).tolist()]] for k in range(3)}
            frames["1"].append({"box": [0.1, 0.1, 0.4, 0.4], "role": "hand"})
            entry = {"frames": frames, "active_frames": [[1, 2]]}
            f.write(("" if i == 0 else ", ") + f'"{clip_id(i)}": ' + json.dumps(entry))
        f.write("}")
    done.write_text(str(n))
    return str(path)


def tiny_videos(folder: pathlib.Path, n: int, listed: int | None = None) -> str:
    """An SSv2 layout: the labels files list `listed` videos (default n; training and
    validation alternate), all symbolic links to one tiny webm (the converter decodes
    each; the disk holds one). Returns the dataset's folder."""
    import av

    listed = n if listed is None else listed
    root = folder / f"ssv2_{listed}"
    done = root / "done"
    if done.exists():
        return str(root)
    videos = root / "20bn-something-something-v2"
    videos.mkdir(parents=True, exist_ok=True)
    one = root / "one.webm"
    with av.open(str(one), "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=VIDEO_FPS)
        stream.height = stream.width = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for t in range(VIDEO_FRAMES):
            img = np.full((VIDEO_SIZE, VIDEO_SIZE, 3), 5 * t, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    entries: dict[str, list] = {"train": [], "validation": []}
    for i in range(listed):
        link = videos / f"{clip_id(i)}.webm"
        if not link.exists():
            os.symlink(os.path.join("..", one.name), link)
        entries["train" if i % 5 else "validation"].append(
            {"id": clip_id(i), "template": LABELS[i % 2].replace("something", "[something]")})
    (root / "something-something-v2-labels.json").write_text(
        json.dumps({name: str(k) for k, name in enumerate(LABELS)}))
    for split, items in entries.items():
        (root / f"something-something-v2-{split}.json").write_text(json.dumps(items))
    done.write_text("")
    return str(root)
