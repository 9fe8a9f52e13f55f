"""Boxes for attention supervision: box files → one in-memory form → per-frame masks.

Two file formats are read (`load_box_files` tells them apart by their shape):

- **Something-Else** (hand and object boxes for Something-Something V2): a JSON object
  `{video id: [frame, ...]}` where each frame has a `name` like `"<id>/0001.jpg"` (frames
  numbered from 1 at 12 fps) and `labels`, each with `box2d` `{x1, y1, x2, y2}` in pixels
  of the original video and a category (`standard_category` `"hand"` for hands, `"0000"`,
  `"0001"`, ... for the objects). The frame numbers are mapped onto the decoded video by
  time, so a video decoded at another rate still gets the right frames.
- **The simple format** for boxes a person draws (documented in `docs/boxes.md`):
  `{video id: {"frames": {frame index: [box, ...]}, "active_frames": [index or [first,
  last], ...]?, "frame_size": [h, w]?, "frame_rate": fps?}}`; a box is `[ymin, xmin,
  ymax, xmax]` (normalised, or pixels when `frame_size` is given) or `{"box": [...],
  "role": "object" | "hand"}`. `active_frames` says when the action happens: the listed
  frames are active, every other frame of the video is not (Mt's labels).

Files are streamed one video at a time (`json_stream`), so memory follows the boxes kept,
not the files (Something-Else's four parts are ~4 GB). Either format becomes a
`VideoBoxes` per video: a few arrays, picklable, so converter workers can take it.
`resolve` then fits it to a decoded video (frame count, frame rate, frame size): frame
indices mapped, pixels normalised, boxes checked; `resolve_active` does the same for the
active frames. Every problem becomes ONE line naming
the file, video, frame and what is wrong; a bad box or frame is dropped, never the video.

This module imports no TensorFlow, so box files are read in worker processes that stay
small; the masks the training pipeline makes of the boxes are in `box_masks`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from stabn_tf.data import _parallel, json_stream

#: Box roles stored in the records.
OBJECT = "object"
HAND = "hand"
ROLES = (OBJECT, HAND)
#: `--box_categories` values → the roles they keep.
CATEGORIES = {"hands": (HAND,), "objects": (OBJECT,), "both": (OBJECT, HAND)}
#: Something-Else numbers its frames from 1, at this rate.
SOMETHING_ELSE_FPS = 12.0
#: Boxes may overshoot the frame by this fraction of its side (annotation tools round up
#: to the border, e.g. x2 = 427.00000000000006 on a 427-wide frame); they are clipped. A
#: box further outside is reported and dropped.
OUTSIDE_TOLERANCE = 0.01
#: The problem line of a frame whose boxes were all invalid: it is left *not annotated*,
#: since storing it with no box would teach Ms to look nowhere on it.
NO_VALID_BOX = "no valid box on this frame: it is left unannotated"
#: The problem line of `active_frames` with a bad item: the video's active frames are
#: left unknown, since dropping the item would teach Mt that its frames are inactive.
NO_VALID_ACTIVE = "the video's active frames are left unknown"

#: Frame numbers with more digits than this are refused (10 million frames are over nine
#: days at 12 fps); a longer number is a malformed name, not a frame.
MAX_FRAME_DIGITS = 7
#: How much of a malformed frame name or key a problem line shows.
SHOWN_CHARS = 80

_FRAME_NAME = re.compile(r"(?:.*/)?([0-9]+)\.\w+$")
_FRAME_KEY = re.compile(r"[0-9]+")
#: A regular Something-Else frame name, one per line of a video's newline-joined names.
_REGULAR_NAME = re.compile(rf"^([^/\n]+)/([0-9]{{1,{MAX_FRAME_DIGITS}}})\.\w+$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Box:
    """One box: `ymin, xmin, ymax, xmax` (pixels or normalised, as its `VideoBoxes` says)
    and its role (`"object"` or `"hand"`)."""

    ymin: float
    xmin: float
    ymax: float
    xmax: float
    role: str = OBJECT


#: A frame's boxes while a file is read: their coordinates, 4 per box (ymin, xmin, ymax,
#: xmax), and their roles (indices into `ROLES`).
FrameBoxes = tuple[list, list[int]]


@dataclasses.dataclass(frozen=True, eq=False)
class VideoBoxes:
    """All boxes known for one video, as read from a file (not yet fitted to the video).

    Frame numbers are as the file counts them; a frame listed with no boxes is annotated
    as "nothing to look at here". `frame_rate` None means the numbers are the decoded
    video's frame indices; otherwise frame `first_frame + k` is at time k / frame_rate.
    `pixels` boxes are normalised by `frame_size` (h, w), or by the video's own size when
    that is None.

    Kept as a few arrays, not an object per box: a converter holds every listed video's
    boxes at once (Something-Else: ~100 boxes a video, ~180,000 videos). `numbers` [F]
    are the annotated frames (ascending), `ends` [F] where each one's boxes end in
    `coords` [B, 4] (ymin, xmin, ymax, xmax as read, float64) and `roles` [B] (indices
    into `ROLES`). `frames` gives them back as `Box`es.
    """

    clip_id: str
    source: str
    numbers: np.ndarray
    ends: np.ndarray
    coords: np.ndarray
    roles: np.ndarray
    pixels: bool = False
    frame_size: tuple[float, float] | None = None
    frame_rate: float | None = None
    first_frame: int = 0
    #: Inclusive (first, last) ranges of active frames, numbered as `frames` are; None:
    #: the file does not say when the action happens (unknown, not "never").
    active: tuple[tuple[int, int], ...] | None = None

    @classmethod
    def pack(cls, clip_id: str, source: str, frames: dict[int, FrameBoxes] | _Arrays,
             **fields) -> VideoBoxes:
        """A video's boxes from `{frame number: (coordinates, roles)}`, or from the arrays
        themselves (numbers, ends, coords, roles)."""
        if isinstance(frames, tuple):
            return cls(clip_id, source, *frames, **fields)
        numbers = sorted(frames)
        coords: list = []
        roles: list[int] = []
        ends = []
        for number in numbers:
            frame_coords, frame_roles = frames[number]
            coords += frame_coords
            roles += frame_roles
            ends.append(len(roles))
        return cls(clip_id, source, np.array(numbers, np.int32), np.array(ends, np.int32),
                   np.array(coords, np.float64).reshape(-1, 4), np.array(roles, np.uint8),
                   **fields)

    @property
    def num_frames(self) -> int:
        """How many frames the file annotates."""
        return len(self.numbers)

    def per_frame(self) -> Iterator[tuple[int, list[tuple[list[float], str]]]]:
        """(frame number, [(ymin, xmin, ymax, xmax), role) per box]) per annotated frame,
        as Python floats (exactly the values read)."""
        coords, roles = self.coords.tolist(), self.roles.tolist()
        start = 0
        for number, end in zip(self.numbers.tolist(), self.ends.tolist()):
            yield number, [(c, ROLES[r]) for c, r in zip(coords[start:end], roles[start:end])]
            start = end

    @property
    def frames(self) -> tuple[tuple[int, tuple[Box, ...]], ...]:
        """`(frame number, (Box, ...))` per annotated frame."""
        return tuple((number, tuple(Box(*c, role=role) for c, role in boxes))
                     for number, boxes in self.per_frame())

    def fields(self) -> dict:
        """The fields as they were when every box was a `Box` (`dataclasses.asdict`), so
        the converter's resume keys (`input_key`) hash the same for the same boxes."""
        frames = [(number, [{"ymin": c[0], "xmin": c[1], "ymax": c[2], "xmax": c[3],
                             "role": role} for c, role in boxes])
                  for number, boxes in self.per_frame()]
        return {"clip_id": self.clip_id, "source": self.source, "frames": frames,
                "pixels": self.pixels, "frame_size": self.frame_size,
                "frame_rate": self.frame_rate, "first_frame": self.first_frame,
                "active": self.active}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VideoBoxes) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash((self.clip_id, self.source, self.numbers.tobytes(),
                     self.coords.tobytes(), self.roles.tobytes()))


class Problem(str):
    """One box problem: the line a person reads (`file: video id, frame f: what`), which
    also keeps its parts (`file`, `clip_id`, `frame`, `what`) so the converter can list
    them machine-readably (`to_json`) without parsing its own messages."""

    file: str
    clip_id: str
    frame: int | str | None
    what: str

    def __new__(cls, source: str, clip_id: object, frame: object, what: str) -> Problem:
        file = os.path.basename(source) or source
        where = f"video {clip_id}" + ("" if frame is None else f", frame {frame}")
        self = super().__new__(cls, f"{file}: {where}: {what}")
        self.file, self.clip_id, self.what = file, str(clip_id), what
        self.frame = frame if frame is None or isinstance(frame, int) else str(frame)
        return self

    def __getnewargs__(self) -> tuple:  # pickles (to and from worker processes) whole
        return self.file, self.clip_id, self.frame, self.what

    def to_json(self) -> dict:
        return {"file": self.file, "id": self.clip_id, "frame": self.frame,
                "problem": self.what, "line": str(self)}


def problem(source: str, clip_id: object, frame: object, what: str) -> Problem:
    """The one-line report of a box problem: file, video, frame, what is wrong."""
    return Problem(source, clip_id, frame, what)


def _shown(name: object) -> str:
    """A frame name or key as a problem line shows it: at most `SHOWN_CHARS` characters."""
    text = str(name)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} chars)"


def _frame_number(digits: str) -> int | None:
    """`digits` (ASCII) as a frame number, or None when it has too many digits to be one."""
    return int(digits) if len(digits) <= MAX_FRAME_DIGITS else None


def _number(value: object) -> bool:
    """Whether `value` is a finite number a float can hold (not a bool)."""
    kind = type(value)
    if kind is float:
        return value - value == 0.0  # False for NaN and ±inf
    if kind is not int and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


#: A video's boxes as `VideoBoxes` keeps them: (numbers, ends, coords, roles).
_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: A video's parsed boxes before they are kept: (`{frame number: FrameBoxes}` or the
#: arrays, the other `VideoBoxes` fields); None when the entry gives nothing to keep.
_Parsed = tuple[dict[int, FrameBoxes] | _Arrays, dict] | None
_SOMETHING_ELSE_FIELDS = {"pixels": True, "frame_rate": SOMETHING_ELSE_FPS, "first_frame": 1}
_HAND_CODE = ROLES.index(HAND)
_OBJECT_CODE = ROLES.index(OBJECT)


# --- Something-Else --------------------------------------------------------------------


def _something_else_regular(clip_id: str, frames: list, keep: set[int]) -> _Arrays | None:
    """The arrays of a video entry with nothing to report (every frame named
    `<id>/<number>.<ext>` once, in ascending order, every label a `box2d` of four finite
    floats), checked a whole video at a time (one regular expression over all its frame
    names, one type check over all its values) instead of value by value; None for any
    other entry, which `_something_else_video` then reads value by value (and reports)."""
    if not frames or "/" in clip_id:
        return None
    try:
        names = "\n".join([frame["name"] for frame in frames])
        label_lists = [frame.get("labels", []) for frame in frames]
        labels = [label for frame_labels in label_lists for label in frame_labels]
        boxes = [label["box2d"] for label in labels]
        values = [v for b in boxes for v in (b["y1"], b["x1"], b["y2"], b["x2"])]
        codes = [_HAND_CODE if label.get("standard_category", label.get("category")) == HAND
                 else _OBJECT_CODE for label in labels]
    except (KeyError, TypeError, AttributeError):
        return None
    # One line per frame, each `<id>/<digits>.<ext>`: a name holding a newline or any
    # other shape leaves the video to the value-by-value reading.
    numbers = _regular_numbers(clip_id, names, len(frames))
    if numbers is None or set(map(type, label_lists)) != {list} \
            or not set(map(type, values)) <= {float}:
        return None
    coords = np.array(values, np.float64).reshape(-1, 4)
    if not np.isfinite(coords).all():
        return None
    roles = np.array(codes, np.uint8)
    counts = np.array([len(frame_labels) for frame_labels in label_lists], np.int64)
    if len(keep) < len(ROLES):
        chosen = np.isin(roles, list(keep))
        frame_of = np.repeat(np.arange(len(frames)), counts)
        counts = np.bincount(frame_of[chosen], minlength=len(frames))
        coords, roles = coords[chosen], roles[chosen]
    return numbers, np.cumsum(counts).astype(np.int32), coords, roles


def _regular_numbers(clip_id: str, names: str, count: int) -> np.ndarray | None:
    """The frame numbers of `count` newline-joined names when each is
    `<clip_id>/<1 to MAX_FRAME_DIGITS digits>.<ext>` and they strictly ascend from 1 or
    more; None otherwise."""
    if names.count("\n") != count - 1:
        return None
    found = _REGULAR_NAME.findall(names)
    if len(found) != count or {video for video, _ in found} != {clip_id}:
        return None
    numbers = np.array([int(digits) for _, digits in found], np.int32)
    if numbers[0] < 1 or (count > 1 and not (numbers[1:] > numbers[:-1]).all()):
        return None
    return numbers


def _something_else_video(clip_id: str, frames: object, source: str, roles: Sequence[str],
                          problems: list[Problem]) -> _Parsed:
    """One video's entry of a Something-Else file: `[frame, ...]`."""
    if not isinstance(frames, list):
        problems.append(problem(source, clip_id, None, "expected a list of frames, got "
                                f"{type(frames).__name__}"))
        return None
    keep = {ROLES.index(role) for role in roles}
    regular = _something_else_regular(str(clip_id), frames, keep)
    if regular is not None:
        return regular, _SOMETHING_ELSE_FIELDS
    kept: dict[int, FrameBoxes] = {}
    unannotated: set[int] = set()  # listed, but with no valid box: not annotated
    for n, frame in enumerate(frames):
        name = frame.get("name") if isinstance(frame, dict) else None
        match = _FRAME_NAME.match(name) if isinstance(name, str) else None
        if match is None:
            problems.append(problem(source, clip_id, f"#{n}", "a frame needs a 'name' "
                                    f"like '{clip_id}/0001.jpg', got {_shown(repr(name))}"))
            continue
        number = _frame_number(match.group(1))
        shown = _shown(name)
        if number is None:
            problems.append(problem(source, clip_id, shown, "the frame number has "
                                    f"{len(match.group(1))} digits; a frame number has "
                                    f"at most {MAX_FRAME_DIGITS}"))
            continue
        if "/" in name and name.split("/")[-2] != str(clip_id):
            problems.append(problem(source, clip_id, shown, "frame belongs to video "
                                    f"{_shown(name.split('/')[-2])!r}"))
            continue
        if number < 1:
            problems.append(problem(source, clip_id, shown, "frame numbers start at 1"))
            continue
        labels = frame.get("labels", [])
        if not isinstance(labels, list):
            problems.append(problem(source, clip_id, shown, "'labels' must be a list"))
            continue
        coords: list[float] = []
        codes: list[int] = []
        invalid = 0
        for label in labels:
            b = code = None
            if isinstance(label, dict):
                b = label.get("box2d")
                category = label.get("standard_category", label.get("category"))
                code = _HAND_CODE if category == HAND else _OBJECT_CODE
                if isinstance(b, dict):
                    box = y1, x1, y2, x2 = b.get("y1"), b.get("x1"), b.get("y2"), b.get("x2")
                    # The usual case first (four finite floats: v - v is 0 unless ±inf or
                    # NaN), then `_number`'s full check.
                    if (type(y1) is float and type(x1) is float and type(y2) is float
                            and type(x2) is float and y1 - y1 + x1 - x1 + y2 - y2 + x2 - x2
                            == 0.0) or all(map(_number, box)):
                        if code in keep:
                            coords += box
                            codes.append(code)
                        continue
            problems.append(problem(source, clip_id, shown, "a label needs 'box2d' with "
                                    f"numbers x1, y1, x2, y2, got {_shown(b)}"))
            invalid += code is None or code in keep
        if number in kept or number in unannotated:
            problems.append(problem(source, clip_id, shown, "frame listed twice; keeping "
                                    "the first"))
            continue
        if invalid and not codes:
            unannotated.add(number)
            problems.append(problem(source, clip_id, shown, NO_VALID_BOX))
            continue
        kept[number] = (coords, codes)
    return (kept, _SOMETHING_ELSE_FIELDS) if kept else None


def parse_something_else(data: dict, source: str, roles: Sequence[str] = ROLES
                         ) -> tuple[dict[str, VideoBoxes], list[Problem]]:
    """`{id: [frame, ...]}` (Something-Else) → (`{id: VideoBoxes}`, problem lines)."""
    return _parse_all(_something_else_video, data, source, roles)


# --- the simple format -----------------------------------------------------------------


def _simple_box(value: object) -> tuple[list, str] | str:
    """One box of the simple format as (coordinates, role), or what is wrong with it."""
    role = OBJECT
    if isinstance(value, dict):
        role = value.get("role", OBJECT)
        if role not in ROLES:
            return f"unknown role {role!r} (expected one of {', '.join(ROLES)})"
        value = value.get("box")
    if not isinstance(value, list) or len(value) != 4 or not all(_number(v) for v in value):
        return f"a box must be 4 numbers [ymin, xmin, ymax, xmax], got {value!r}"
    return value, role
def _frame_index(value: object) -> bool:
    """Whether `value` is a frame index of `active_frames`: an int, 0 ≤ value, at most
    `MAX_FRAME_DIGITS` digits."""
    return isinstance(value, int) and not isinstance(value, bool) \
        and 0 <= value < 10 ** MAX_FRAME_DIGITS


def parse_active_frames(value: object) -> tuple[tuple[tuple[int, int], ...] | None,
                                                list[str]]:
    """`active_frames` of the simple format → (inclusive (first, last) ranges, what is
    wrong). Any bad item leaves the labels unknown (None): with an item dropped, the
    frames it meant would be taught as inactive. An empty list is known: nothing active.
    """
    if not isinstance(value, list):
        return None, ["'active_frames' must be a list of frame indices and [first, last] "
                      f"ranges, got {type(value).__name__}"]
    ranges, wrong = [], []
    for item in value:
        if _frame_index(item):
            ranges.append((item, item))
        elif isinstance(item, list) and len(item) == 2 and all(map(_frame_index, item)):
            if item[0] > item[1]:
                wrong.append(f"'active_frames' range {item!r} is inverted (needs first ≤ "
                             "last)")
            else:
                ranges.append((item[0], item[1]))
        else:
            wrong.append(f"'active_frames' item {_shown(json.dumps(item))} is neither a "
                         "frame index (0, 1, ...) nor an inclusive [first, last] range")
    if wrong:
        return None, [*wrong, NO_VALID_ACTIVE]
    return tuple(sorted(set(ranges))), []


def _simple_video(clip_id: str, entry: object, source: str, roles: Sequence[str],
                  problems: list[Problem]) -> _Parsed:
    """One video's entry of the simple format (see the module doc)."""
    def bad(frame, what):
        problems.append(problem(source, clip_id, frame, what))

    if not isinstance(entry, dict) or not (
            isinstance(entry.get("frames"), dict)
            or ("active_frames" in entry and "frames" not in entry)):
        bad(None, "expected an object with 'frames': {frame index: [boxes]} and/or "
                  "'active_frames': [frame index or [first, last], ...]")
        return None
    active = None
    if "active_frames" in entry:
        active, wrong = parse_active_frames(entry["active_frames"])
        for what in wrong:
            bad(None, what)
    size = entry.get("frame_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            _number(v) and v > 0 for v in size)):
        bad(None, f"'frame_size' must be [height, width] in pixels, got {size!r}")
        return None
    rate = entry.get("frame_rate")
    if rate is not None and not (_number(rate) and rate > 0):
        bad(None, f"'frame_rate' must be a positive number, got {rate!r}")
        return None
    kept: dict[int, FrameBoxes] = {}
    for key, boxes in entry.get("frames", {}).items():
        if not _FRAME_KEY.fullmatch(key):  # ASCII digits only: "²".isdigit() is True
            bad(_shown(key), "frame keys must be frame indices (0, 1, ...)")
            continue
        number = _frame_number(key)
        if number is None:
            bad(_shown(key), f"the frame index has {len(key)} digits; a frame index has "
                             f"at most {MAX_FRAME_DIGITS}")
            continue
        if not isinstance(boxes, list):
            bad(number, f"expected a list of boxes, got {type(boxes).__name__}")
            continue
        coords: list = []
        codes: list[int] = []
        invalid = 0
        for value in boxes:
            box = _simple_box(value)
            if isinstance(box, str):
                bad(number, box)
                role = value.get("role", OBJECT) if isinstance(value, dict) else OBJECT
                invalid += role not in ROLES or role in roles
            elif box[1] in roles:
                coords += box[0]
                codes.append(ROLES.index(box[1]))
        if invalid and not codes:
            bad(number, NO_VALID_BOX)
            continue
        kept[number] = (coords, codes)
    if not kept and active is None:
        return None
    return kept, {"pixels": size is not None,
                  "frame_size": tuple(float(v) for v in size) if size is not None else None,
                  "frame_rate": float(rate) if rate is not None else None, "active": active}


def parse_simple(data: dict, source: str, roles: Sequence[str] = ROLES
                 ) -> tuple[dict[str, VideoBoxes], list[Problem]]:
    """The simple format (see the module doc) → (`{id: VideoBoxes}`, problem lines)."""
    return _parse_all(_simple_video, data, source, roles)


def _parse_all(parse, data: dict, source: str, roles: Sequence[str]
               ) -> tuple[dict[str, VideoBoxes], list[Problem]]:
    out: dict[str, VideoBoxes] = {}
    problems: list[Problem] = []
    for clip_id, entry in data.items():
        parsed = parse(clip_id, entry, source, roles, problems)
        if parsed is not None:
            out[str(clip_id)] = VideoBoxes.pack(str(clip_id), source, parsed[0],
                                                **parsed[1])
    return out, problems


# --- files -----------------------------------------------------------------------------


#: The problem line of a video the files give boxes for that is not being converted.
UNKNOWN_VIDEO = "no such video in the converted splits"


class _SomethingElseAfterAll(Exception):
    """A file read as the simple format has a list value: it is Something-Else's."""


def _entries(path: str) -> Iterator[tuple[str, object]]:
    """The (video id, entry) pairs of a box file, streamed; ValueError (one line naming
    the file) when it cannot be read, is not JSON, is cut short or is not an object."""
    try:
        yield from json_stream.iter_object(path)
    except json_stream.NotAnObject as e:
        raise ValueError(f"box file {path}: expected a JSON object keyed by video id, got "
                         f"{e.type_name}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"box file {path}: cannot read it as JSON ({e})") from None


def _read_file(path: str, roles: Sequence[str], known: set[str] | None,
               something_else: bool | None = None
               ) -> tuple[dict[str, VideoBoxes | None], list[Problem]]:
    """One box file → (`{id: VideoBoxes}`, problem lines), None for the videos not in
    `known` (parsed for their problems, not kept).

    The file is Something-Else's when any entry is a list: the first entry usually says;
    a list after simple-format entries reads the file again as Something-Else's.
    """
    found: dict[str, VideoBoxes | None] = {}
    seen: set[str] = set()
    problems: list[Problem] = []
    for clip_id, entry in _entries(path):
        if something_else is None:
            something_else = isinstance(entry, list)
        elif not something_else and isinstance(entry, list):
            raise _SomethingElseAfterAll
        if clip_id in seen:
            problems.append(problem(path, clip_id, None, "listed twice in this file; "
                                    "keeping the first"))
            continue
        seen.add(clip_id)
        parse = _something_else_video if something_else else _simple_video
        parsed = parse(clip_id, entry, path, roles, problems)
        if parsed is not None:
            found[clip_id] = (VideoBoxes.pack(clip_id, path, parsed[0], **parsed[1])
                              if known is None or clip_id in known else None)
    return found, problems


def _read_any(task: tuple[str, Sequence[str], set[str] | None]
              ) -> tuple[dict[str, VideoBoxes | None], list[Problem]]:
    """`_read_file` of (path, roles, known), told the format by the file itself (a worker
    process's task)."""
    path, roles, known = task
    try:
        return _read_file(path, roles, known)
    except _SomethingElseAfterAll:
        return _read_file(path, roles, known, something_else=True)


def _read_packed(task: tuple[str, Sequence[str], set[str] | None]) -> tuple[tuple, list]:
    """`_read_any` in a worker process, its boxes sent back packed (`_packed`)."""
    found, problems = _read_any(task)
    return _packed(found), problems


def _packed(found: dict[str, VideoBoxes | None]) -> tuple:
    """A file's boxes as a few long arrays (numbers, ends, coords, roles of every kept
    video end to end) and per-video lists: sent between processes as a few buffers, and
    held as them, rather than as four small arrays a video (which costs the receiving
    process about twice the boxes' size)."""
    kept = [boxes for boxes in found.values() if boxes is not None]
    def joined(name: str, dtype) -> np.ndarray:
        return (np.concatenate([getattr(b, name) for b in kept]) if kept
                else np.zeros([0, 4] if name == "coords" else [0], dtype))

    return (list(found), [boxes is not None for boxes in found.values()],
            joined("numbers", np.int32), joined("ends", np.int32),
            joined("coords", np.float64), joined("roles", np.uint8),
            np.array([b.num_frames for b in kept], np.int64),
            np.array([len(b.roles) for b in kept], np.int64),
            [(b.clip_id, b.source, b.pixels, b.frame_size, b.frame_rate, b.first_frame,
              b.active) for b in kept])


def _unpacked(packed: tuple) -> dict[str, VideoBoxes | None]:
    """`_packed`'s boxes back as `{id: VideoBoxes}`, each video's arrays views of the long
    ones."""
    ids, is_kept, numbers, ends, coords, roles, frame_counts, box_counts, rest = packed
    frame_at = np.concatenate([[0], np.cumsum(frame_counts)]).tolist()
    box_at = np.concatenate([[0], np.cumsum(box_counts)]).tolist()
    videos = iter([VideoBoxes(clip_id, source, numbers[f0:f1], ends[f0:f1], coords[b0:b1],
                              roles[b0:b1], pixels, frame_size, frame_rate, first, active)
                   for (clip_id, source, pixels, frame_size, frame_rate, first, active), f0,
                   f1, b0, b1 in zip(rest, frame_at, frame_at[1:], box_at, box_at[1:])])
    return {clip_id: next(videos) if kept else None for clip_id, kept in zip(ids, is_kept)}


#: Files smaller than this in all are read in this process: starting worker processes
#: costs more than reading them (the tests' and the demo's files).
PARALLEL_MIN_BYTES = 16 << 20


def _read_all(paths: list[str], roles: Sequence[str], known: set[str] | None,
              workers: int | None) -> Iterator[tuple[dict[str, VideoBoxes | None],
                                                     list[Problem]]]:
    """Each file's `_read_any`, in the files' order: several files at once in spawned
    worker processes (this module imports no TensorFlow, so they stay small), one at a
    time here when there is one file, one core or little to read."""
    workers = min(len(paths), _parallel.default_workers() if workers is None else workers)
    tasks = [(path, roles, known) for path in paths]
    if workers > 1:
        try:
            size = sum(os.path.getsize(path) for path in paths)
        except OSError:  # a missing file: read in order, so its error comes in order
            size = 0
        if size >= PARALLEL_MIN_BYTES:
            with _parallel.worker_pool(workers) as pool:
                for packed, problems in pool.imap(_read_packed, tasks):
                    yield _unpacked(packed), problems
            return
    yield from map(_read_any, tasks)


def load_box_files(paths: str | Iterable[str], categories: str = "both",
                   known: Iterable[str] | None = None, workers: int | None = None
                   ) -> tuple[dict[str, VideoBoxes], list[Problem]]:
    """Reads box files (Something-Else or the simple format, told apart per file) →
    (`{id: VideoBoxes}`, problem lines). `categories` ("hands", "objects", "both") picks
    the roles kept. A video in two files keeps the first file's boxes (and is reported).

    Each file is streamed, one video at a time (`json_stream`): memory grows with the
    boxes kept, not with the files. With `known` (the ids being converted) only those
    videos' boxes are kept; every other video the files give boxes for is one problem
    line (`unknown_ids`' line, sorted by id, after the files' own problems).

    Several files (Something-Else's four parts) are read at once by up to `workers`
    processes (None = every core; 0 or 1 = in this process); the result is the same.

    Raises ValueError for a file that cannot be read at all (missing, not JSON, cut
    short, not an object): nothing sensible can be converted from it.
    """
    if categories not in CATEGORIES:
        raise ValueError(f"box categories must be one of {', '.join(CATEGORIES)}, got "
                         f"{categories!r}")
    roles = CATEGORIES[categories]
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    known = None if known is None else set(known)
    table: dict[str, VideoBoxes] = {}
    first_file: dict[str, str] = {}  # every video given boxes → the file that gave them
    problems: list[Problem] = []
    paths = [os.fspath(path) for path in paths]
    for path, (found, found_problems) in zip(paths, _read_all(paths, roles, known, workers)):
        problems += found_problems
        for clip_id, boxes in found.items():
            if clip_id in first_file:
                problems.append(problem(path, clip_id, None, "boxes already given in "
                                        f"{os.path.basename(first_file[clip_id])}; "
                                        "keeping those"))
                continue
            first_file[clip_id] = path
            if boxes is not None:
                table[clip_id] = boxes
    if known is not None:
        problems += [problem(first_file[clip_id], clip_id, None, UNKNOWN_VIDEO)
                     for clip_id in sorted(first_file) if clip_id not in known]
    return table, problems


def unknown_ids(table: dict[str, VideoBoxes], known: Iterable[str]) -> list[Problem]:
    """One problem line per video in `table` that is not among the `known` ids."""
    known = set(known)
    return [problem(v.source, clip_id, None, UNKNOWN_VIDEO)
            for clip_id, v in sorted(table.items()) if clip_id not in known]


# --- fitting boxes to a decoded video ---------------------------------------------------


class FittedBoxes(NamedTuple):
    """A video's boxes fitted to its decoded frames (`resolve`).

    `per_frame`: for each decoded frame a list of `((ymin, xmin, ymax, xmax) normalised,
    role)`; `annotated`: a 0/1 flag per frame, 1 where the frame's boxes are known (even
    if it has none: listed with an empty list, or only boxes of other roles); `problems`:
    problem lines; `clipped`: how many boxes overshot the frame a little and were clipped.
    """

    per_frame: list[list[tuple[tuple[float, float, float, float], str]]]
    annotated: list[int]
    problems: list[Problem]
    clipped: int


def resolve(
    boxes: VideoBoxes,
    num_frames: int,
    fps: float | None,
    frame_size: tuple[int, int] | None,
) -> FittedBoxes:
    """Fits a video's boxes to its decoded frames.

    Args:
      boxes: the video's boxes as read.
      num_frames: frames the decoded video has.
      fps: its frame rate (None when unknown: indices are then taken as they are).
      frame_size: (height, width) of the ORIGINAL video, which pixel boxes refer to.

    Returns a `FittedBoxes`. A frame whose boxes are all invalid here (outside the frame,
    empty) is *not* annotated, like one beyond the video: "no box" would teach Ms to look
    nowhere on it. Several annotated frames landing on one decoded frame: the one nearest
    in time wins.
    """
    per_frame: list[list] = [[] for _ in range(num_frames)]
    annotated = [0] * num_frames
    distance = [math.inf] * num_frames
    problems: list[Problem] = []
    clipped = 0
    size = boxes.frame_size if boxes.frame_size is not None else frame_size
    if boxes.pixels and size is None:
        return FittedBoxes(per_frame, annotated, [problem(
            boxes.source, boxes.clip_id, None, "boxes in pixels but the frame size is "
            "unknown")], 0)
    for number, frame_boxes in boxes.per_frame():
        index, gap = _decoded_index(boxes, number, fps)
        if not 0 <= index < num_frames:
            problems.append(problem(boxes.source, boxes.clip_id, number, "beyond the video "
                                    f"(it would be decoded frame {index}; the video has "
                                    f"{num_frames})"))
            continue
        if gap >= distance[index]:
            continue
        good, overshoots = [], 0
        for box, role in frame_boxes:
            fitted = fit_box(box, size if boxes.pixels else None)
            if isinstance(fitted, str):
                problems.append(problem(boxes.source, boxes.clip_id, number, fitted))
                continue
            overshoots += fitted[1]
            good.append((fitted[0], role))
        if frame_boxes and not good:
            problems.append(problem(boxes.source, boxes.clip_id, number, NO_VALID_BOX))
            continue
        clipped += overshoots
        per_frame[index], annotated[index], distance[index] = good, 1, gap
    return FittedBoxes(per_frame, annotated, problems, clipped)


def fit_box(box: Sequence[float], size: tuple[float, float] | None = None
            ) -> tuple[tuple[float, float, float, float], bool] | str:
    """One box (normalised, or pixels of a frame of `size` (h, w)) → (normalised and
    clipped to the frame, whether it overshot a little and was clipped), or what is wrong
    with it: outside the frame by more than `OUTSIDE_TOLERANCE`, or empty. The one rule
    for every reader of boxes (the converter, the report's `--corrections`)."""
    coords = tuple(box)
    if size is not None:
        h, w = size
        coords = (coords[0] / h, coords[1] / w, coords[2] / h, coords[3] / w)
    if min(coords) < -OUTSIDE_TOLERANCE or max(coords) > 1 + OUTSIDE_TOLERANCE:
        extent = f"the {size[1]:g}x{size[0]:g} frame" if size else "the frame [0, 1]"
        return f"box {_show(box)} lies outside {extent}"
    inside = tuple(min(max(c, 0.0), 1.0) for c in coords)
    if inside[2] <= inside[0] or inside[3] <= inside[1]:
        return f"box {_show(box)} is empty (needs ymin < ymax and xmin < xmax)"
    return inside, inside != coords


def _decoded_index(boxes: VideoBoxes, number: int, fps: float | None) -> tuple[int, float]:
    """(decoded frame index, time gap in seconds) of frame `number` as the file counts."""
    k = number - boxes.first_frame
    if boxes.frame_rate is None or not fps:
        return k, 0.0
    t = k / boxes.frame_rate
    index = round(t * fps)
    return index, abs(index / fps - t)


def resolve_active(boxes: VideoBoxes, num_frames: int, fps: float | None
                   ) -> tuple[list[int] | None, list[Problem]]:
    """A video's `active_frames` fitted to its decoded frames: (0/1 per frame, or None
    when the file does not say, problem lines).

    Each inclusive range maps its ends like `resolve` maps frame indices (by time when
    the file gives `frame_rate`); the decoded frames between them are active. A range
    running past the end of the video is cut at its last frame (reported: the file and
    the video disagree); one lying wholly beyond it is reported and leaves the video's
    active frames unknown (None), as any bad item does: without it, the frames it meant
    would be taught as inactive.
    """
    if boxes.active is None:
        return None, []
    labels = [0] * num_frames
    problems: list[Problem] = []
    for first, last in boxes.active:
        lo, hi = _decoded_index(boxes, first, fps)[0], _decoded_index(boxes, last, fps)[0]
        shown = str(first) if first == last else f"[{first}, {last}]"
        if lo >= num_frames:
            problems.append(problem(boxes.source, boxes.clip_id, None, "'active_frames' "
                                    f"item {shown} lies beyond the video (it would start at "
                                    f"decoded frame {lo}; the video has {num_frames})"))
            labels = None
            continue
        if hi >= num_frames:
            problems.append(problem(boxes.source, boxes.clip_id, None, "'active_frames' "
                                    f"item {shown} runs past the end of the video (it would "
                                    f"end at decoded frame {hi}; the video has {num_frames}):"
                                    " cut at its last frame"))
            hi = num_frames - 1
        if labels is not None:
            labels[lo:hi + 1] = [1] * (hi + 1 - lo)
    if labels is None:
        problems.append(problem(boxes.source, boxes.clip_id, None, NO_VALID_ACTIVE))
    return labels, problems


def _show(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{c:g}" for c in box) + "]"
