"""What the inference front ends read: video files, frame folders and TFRecord clips, all
turned into `Clip`s by the model's own `ClipPreprocessor`; and the one rule that names
their output files."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Sequence

import numpy as np

from stabn_tf.data import make_dataset
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.data.video import SHORTER_THAN_HEADER, read_frames
from stabn_tf.outputs import PERCEPTION


@dataclasses.dataclass
class Clip:
    """One input, ready for a model and for pictures.

    clips: float32 `[n, T, S, S, 3]`, normalised; frames: uint8 `[n, T, S, S, 3]`, the same
    pixels; frame_indices `[n, T]`: positions in the source; frame_size: the source frame's
    (height, width), which places the model's centre crop in it. true_label, boxes (`[T, 4]`,
    normalised) and active (`[T]` bool: the action happens) of clip 0 where the source
    has ground truth.
    """

    name: str
    clips: np.ndarray
    frames: np.ndarray
    frame_indices: np.ndarray
    source: str | None = None
    true_label: int | None = None
    boxes: np.ndarray | None = None
    fps: float | None = None
    active: np.ndarray | None = None
    frame_size: tuple[int, int] | None = None
    #: Something the user should know about the input (a video cut short), in words.
    note: str | None = None


def is_tfrecord_input(path: str) -> bool:
    return ".tfrecord" in os.path.basename(os.fspath(path))


def input_name(path: str | os.PathLike) -> str:
    """A file's or folder's name without the video extension: `a/clip.webm` → `clip`."""
    name = os.path.basename(os.path.normpath(os.fspath(path)))
    if not os.path.isdir(path):
        name = os.path.splitext(name)[0] or name
    return name


def load_clip(path: str | os.PathLike, preprocessor: ClipPreprocessor,
              num_clips: int = 1) -> Clip:
    """A video file or frame folder → `Clip`. Raises `VideoReadError` naming the input."""
    decoded = read_frames(path)
    clips, frames, indices = preprocessor.from_frames(decoded.frames, num_clips)
    note = (f"the video ends early: {decoded.duration_detail}; predicted from what decodes"
            if decoded.duration_note == SHORTER_THAN_HEADER else None)
    return Clip(input_name(path), clips, frames, indices, source=os.fspath(path),
                fps=decoded.fps, frame_size=tuple(int(v) for v in decoded.frames.shape[1:3]),
                note=note)


def tfrecord_clips(pattern: str | Sequence[str], preprocessor: ClipPreprocessor, *,
                   max_clips: int | None = 4, clip_ids: Sequence[str] = (),
                   num_clips: int = 1) -> Iterator[Clip]:
    """Clips of TFRecord shards as evaluation sees them, with their labels and (where the
    records have them) ground-truth boxes. With `clip_ids`, only those clips (in record
    order, the others never decoded); else the first `max_clips` (None: all)."""
    wanted = set(clip_ids)
    ds = make_dataset(pattern, preprocessor=preprocessor, training=False, batch_size=1,
                      num_clips=num_clips, with_metadata=True, clip_ids=clip_ids)
    count = 0
    for clips, targets in ds:
        clip_id = targets["clip_id"].numpy()[0].decode("utf-8")
        if wanted and clip_id not in wanted:
            continue
        batch = clips.numpy()[0]
        indices = targets["frame_indices"].numpy()[0]
        if num_clips == 1:
            batch, indices = batch[None], indices[None]
        boxes = targets["gt_box"].numpy()[0] if "gt_box" in targets else None
        active = targets["gt_active"].numpy()[0].astype(bool) if "gt_active" in targets \
            else None
        if boxes is not None and num_clips > 1:
            boxes, active = boxes[0], active[0]
        yield Clip(clip_id, batch, preprocessor.denormalize(batch), indices,
                   true_label=int(targets[PERCEPTION].numpy()[0]), boxes=boxes,
                   active=active,
                   frame_size=tuple(int(v) for v in targets["frame_size"].numpy()[0]))
        count += 1
        if (wanted and count == len(wanted)) or (not wanted and max_clips
                                                  and count >= max_clips):
            return


def safe_name(name: str) -> str:
    """A file-name-safe version of an input's name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "clip"


class OutputNames:
    """The naming rule for per-input output files, shared by every writer: the input's
    safe name, with `_2`, `_3`, ... for later inputs that would take the same name
    (`a/clip.webm`, `b/clip.webm`, `a/clip.mp4` → `clip`, `clip_2`, `clip_3`)."""

    def __init__(self, taken: Sequence[str] = ()):
        self._taken = set(taken)

    def claim(self, name: str) -> str:
        base = safe_name(name)
        stem, k = base, 1
        while stem in self._taken:
            k += 1
            stem = f"{base}_{k}"
        self._taken.add(stem)
        return stem
