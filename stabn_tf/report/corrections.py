"""Corrections drawn in the report's editor: the box file it exports (the simple format of
docs/boxes.md plus each video's `active_frames`) read back with `--corrections`, so a
later session continues where an earlier one exported."""

from __future__ import annotations

import json
import os

from stabn_tf.evaluate.errors import EvaluationError


def load_corrections(path: str | os.PathLike) -> dict:
    """The box file at `path` as `{video id: {"frames": {...}, "active_frames": [...]}}`;
    one-line `EvaluationError` when it is missing or not that shape (the editor checks each
    box as it draws it; the converter reports bad boxes one by one)."""
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
    for video, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("frames", {}), dict) \
                or not isinstance(entry.get("active_frames", []), list):
            raise EvaluationError(f"--corrections: {path!r}, video {video!r}: expected "
                                  "{\"frames\": {frame index: [boxes]}, \"active_frames\": "
                                  "[...]}")
    return data
