"""What every part of the converter shares: the items to convert, the settings, the
errors, and safe ids."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import video
from stabn_tf.errors import StabnError

DEFAULT_SPLITS = ("train", "validation")
KNOWN_SPLITS = ("train", "validation", "test")


class ConversionError(RuntimeError, StabnError):
    """The conversion cannot produce a usable dataset (bad input layout, nothing written)."""


class UsageError(ConversionError, ValueError):
    """An argument cannot be used as given (e.g. `output_dir` is a file, or holds another
    conversion's shards); raised before anything is written. The CLI exits with code 2."""


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One video to convert: a file (`kind="video"`) or a folder of JPEG frames."""

    split: str
    clip_id: str
    label_index: int
    label_text: str
    source: str
    kind: str = "video"
    gt_active: tuple[int, ...] | None = None
    gt_box: tuple[tuple[float, float, float, float], ...] | None = None
    #: Boxes from the `--boxes` files, as read (fitted to the frames once decoded).
    boxes: boxes_lib.VideoBoxes | None = None
    #: False: `gt_active`/`gt_box` are stored for the explanation metrics only, not as
    #: supervision (`convert_dataset(ground_truth_supervision=False)`).
    gt_supervision: bool = True


@dataclasses.dataclass
class Listing:
    """What a layout reader found: the class list, the items per split, and the
    annotation entries rejected before decoding (each `{"id", "source", "reason"}`)."""

    labels: list[str]
    items: dict[str, list[VideoItem]]
    rejected: dict[str, list[dict]]
    notes: dict[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class EncodeSettings:
    short_side: int | None = video.DEFAULT_SHORT_SIDE
    jpeg_quality: int = 90


# --- ids and paths ---------------------------------------------------------------------

_BAD_ID = re.compile(r"[/\\\x00]")


def validate_id(clip_id: object) -> str:
    """An id that is safe to use as a file or folder name; raises ValueError otherwise."""
    if isinstance(clip_id, int) and not isinstance(clip_id, bool):
        clip_id = str(clip_id)
    if not isinstance(clip_id, str) or not clip_id.strip():
        raise ValueError(f"invalid id {clip_id!r}: must be a non-empty string")
    if clip_id != clip_id.strip() or _BAD_ID.search(clip_id) or clip_id in (".", "..") \
            or clip_id.startswith(".") or os.path.isabs(clip_id):
        raise ValueError(f"invalid id {clip_id!r}: ids may not contain path separators, "
                         "start with '.', or be absolute paths")
    return clip_id


def find_file(input_dir: str, candidates: Sequence[str], what: str, required: bool = True):
    for name in candidates:
        path = os.path.join(input_dir, name)
        if os.path.exists(path):
            return path
    if required:
        raise ConversionError(
            f"{what} not found in {input_dir}: looked for {', '.join(candidates)}")
    return None


def find_dir(input_dir: str, candidates: Sequence[str]) -> str:
    for name in candidates:
        path = os.path.join(input_dir, name)
        if os.path.isdir(path):
            return path
    return input_dir


def _norm_name(name: str) -> str:
    return " ".join(name.lower().split())


class LabelLookup:
    """Exact class-name lookup, falling back to case/whitespace-insensitive matching."""

    def __init__(self, labels: Sequence[str]):
        self.exact = {n: i for i, n in enumerate(labels)}
        self.loose = {_norm_name(n): i for i, n in enumerate(labels)}

    def get(self, name: str) -> int | None:
        i = self.exact.get(name)
        return self.loose.get(_norm_name(name)) if i is None else i
