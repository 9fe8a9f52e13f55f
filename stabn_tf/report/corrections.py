"""Corrections drawn in the report's editor: the box file it exports (the simple format of
docs/boxes.md plus each video's `active_frames`) read back with `--corrections`, so a
later session continues where an earlier one exported."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.evaluate.errors import EvaluationError

#: How many unknown video ids the line about them names.
SHOWN_IDS = 3


def load_corrections(path: str | os.PathLike, log: Callable[[str], None] = print) -> dict:
    """The box file at `path` as `{video id: {"frames": {...}, "active_frames": [...]}}`
    (boxes normalised). It passes the converter's checks (`boxes.parse_simple`,
    `boxes.fit_box`: the same rules and lines): each problem is one line to `log`, then
    one `EvaluationError` before anything is drawn, as for a file that is missing or not
    a JSON object."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise EvaluationError(f"--corrections: cannot read {path!r} ({e.strerror or e})"
                              ) from None
    except ValueError as e:
        raise EvaluationError(f"--corrections: {path!r} is not JSON ({e})") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"--corrections: {path!r} must hold a JSON object keyed by "
                              f"video id, got {type(data).__name__}")
    table, problems = boxes_lib.parse_simple(data, path)
    loaded = {}
    for clip_id, video in table.items():
        entry, found = _checked(video)
        problems += found
        loaded[clip_id] = entry
    # The whole file is refused, so no frame is "left unannotated": those lines go.
    problems = [p for p in problems if p.what != boxes_lib.NO_VALID_BOX]
    for line in problems:
        log(line)
    if problems:
        raise EvaluationError(f"--corrections: {path!r} has {len(problems)} problem(s), the "
                              f"first: {problems[0]} (each listed above; the rules are "
                              "the converter's, docs/boxes.md)")
    return loaded


def _checked(video: boxes_lib.VideoBoxes) -> tuple[dict, list[boxes_lib.Problem]]:
    """A video's entry with normalised boxes in the editor's form, and its boxes'
    problems (outside the frame, empty)."""
    size = video.frame_size if video.pixels else None
    frames, problems = {}, []
    for number, boxes in video.per_frame():
        kept = []
        for box, role in boxes:
            fitted = boxes_lib.fit_box(box, size)
            if isinstance(fitted, str):
                problems.append(boxes_lib.problem(video.source, video.clip_id, number, fitted))
                continue
            coords = list(fitted[0])
            kept.append(coords if role == boxes_lib.OBJECT else {"box": coords, "role": role})
        frames[str(number)] = kept
    entry: dict = {"frames": frames}
    if video.active is not None:
        entry["active_frames"] = [first if first == last else [first, last]
                                  for first, last in video.active]
    return entry, problems


def known_corrections(loaded: dict, clip_ids: Collection[str], path: str,
                      log: Callable[[str], None] = print) -> dict:
    """The corrections of the clips in `clip_ids`; the others (videos not among the
    report's files) are left out in one line naming how many and a few of them."""
    known = set(clip_ids)
    unknown = sorted(clip for clip in loaded if clip not in known)
    if unknown:
        shown = ", ".join(repr(clip) for clip in unknown[:SHOWN_IDS])
        more = f" and {len(unknown) - SHOWN_IDS} more" if len(unknown) > SHOWN_IDS else ""
        log(f"--corrections: {len(unknown)} of the {len(loaded)} videos in "
            f"{os.path.basename(path)} are not among the clips of --files ({shown}{more}): "
            "left out")
    return {clip: entry for clip, entry in loaded.items() if clip in known}
