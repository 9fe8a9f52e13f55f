"""Something-Something V1/V2 (or a folder of class sub-folders) → sharded TFRecords.

    python -m stabn_tf.data.convert --dataset=ssv2 --input_dir=/data/ssv2 \\
        --output_dir=/data/ssv2_tfrecords

Writes `<split>-00000-of-000NN.tfrecord` shards (schema: `stabn_tf.data.tfrecord`),
`labels.txt` (index order), `manifest.json` (counts per split and class, frame
statistics, settings), `failures.jsonl` (one line per video that was skipped, with its
reason) and `box_problems.jsonl` (one line per problem in the `--boxes` files).

Boxes for attention supervision (`docs/boxes.md`): `--boxes=a.json[,b.json...]`
(Something-Else's files for SSv2, or the simple format for boxes a person draws) and
`--box_categories=hands|objects|both` (default both). The files are read once; each
listed video's boxes are fitted to its decoded frames (Something-Else's 12 fps frame
numbers mapped by time onto the decoded frame rate, pixels normalised by the original
frame size) and stored per frame with their role. Videos not in the files get no box
lists (unsupervised). A bad box, frame or video entry is one line (file, video, frame,
what is wrong) in the summary and in `box_problems.jsonl`; the video is still written,
without the bad boxes.

Layouts (`--dataset`):
- ssv2: `something-something-v2-{labels,train,validation,test}.json` (or the newer
  `labels/{labels,train,validation,test}.json`) in `input_dir`, videos `<id>.webm` in
  `input_dir/20bn-something-something-v2/` (or `videos/`, or `input_dir` itself, or
  `--video_dir`). The class is the entry's `template` without brackets; test entries are
  written with label -1. An optional `something-something-v2-groundtruth.json` (the
  synthetic set's) adds per-frame `clip/gt/active` and `clip/gt/box`.
- ssv1: `something-something-v1-labels.csv` (one class per line) and
  `something-something-v1-{train,validation,test}.csv` (`id;class name` lines, test: ids),
  frames `20bn-something-something-v1/<id>/00001.jpg ...` (or `frames/`, or `--video_dir`).
  Frames already within the short side are stored byte-for-byte (no re-encoding).
- folder: `<class>/<video>` (mp4/webm/avi/mkv/mov/m4v), or `<split>/<class>/<video>` with
  split folders `train`, `validation` or `val`, `test`; classes are the sorted folder names.
  Videos deeper in a class folder (`<class>/<sub>/.../<video>`) belong to that class; a
  video outside any class folder is a failure; a class folder with no video is refused.

Design points:
- Nothing lost, nothing silent: every annotation entry is either written or listed as a
  failure (with its split); the summary checks `read = written + failed` per split. Bad
  videos never stop the run, nor do duplicate ids (an id listed twice with different
  labels, or in both train and validation, is a failure in each place). Unusable label
  files or an empty result stop it (exit code 1); unusable arguments stop it before
  anything is written (exit code 2): an output_dir that is a file or unwritable, or that
  holds another dataset's conversion (unless `--overwrite`).
- Deterministic: a video's shard depends only on its id (ordered by a hash of the id, so
  classes are mixed across and within shards), and JPEG encoding is deterministic, so the
  same input gives byte-identical shards.
- Resumable: a shard is written under `<name>.tmp` and renamed when complete, with a small
  record in `.shards/`: per video a key of everything its bytes depend on (settings,
  annotation, its boxes, the source file's size and mtime), the shard's byte size,
  statistics. A re-run keeps shards whose keys all match, untouched; in the others it
  converts only the videos whose key changed (fixed, replaced, added, relabelled, or
  given other boxes: editing a box file re-converts exactly the videos whose boxes
  changed) and copies the rest's records, so the result is byte-identical to a fresh
  conversion. Adding or
  removing annotation entries re-deals the videos after them (in hash order) over the
  shards, which keeps shards balanced but converts those videos again.
- Checkable: `--verify --output_dir=DIR` reads every shard once and lists each corrupt,
  truncated or malformed one (`tfrecord.verify_tfrecords`).
- Parallel: videos are decoded/encoded in `workers` processes (spawned, so it is safe to
  call from a process that already runs TensorFlow); the parent only writes bytes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import hashlib
import io
import json
import math
import multiprocessing.pool
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf
from absl import flags, logging
from PIL import Image

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import labels as labels_lib
from stabn_tf.data import tfrecord, video
from stabn_tf.data._parallel import default_workers, worker_pool

DATASETS = ("ssv2", "ssv1", "folder")
DEFAULT_SPLITS = ("train", "validation")
KNOWN_SPLITS = ("train", "validation", "test")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")
FRAME_EXTENSIONS = (".jpg", ".jpeg")
#: Auto shard count: about this many videos per shard (~100-200 MB of SSv2 at 256 px)...
VIDEOS_PER_SHARD = 256
#: ...but at least this many shards (when there are enough videos), so up to 8 workers
#: can shard by file.
MIN_SHARDS = 8
LABELS_FILE = "labels.txt"
MANIFEST_FILE = "manifest.json"
FAILURES_FILE = "failures.jsonl"
#: One JSON line per problem found in the `--boxes` files (see `docs/boxes.md`).
BOX_PROBLEMS_FILE = "box_problems.jsonl"
#: Box problem lines repeated in the manifest and the end-of-run summary (all are in
#: BOX_PROBLEMS_FILE).
BOX_PROBLEMS_SHOWN = 20
STATE_DIR = ".shards"
#: In STATE_DIR: which dataset the directory holds (so another one is not mixed in).
ORIGIN_FILE = "origin.json"
#: Every file name the converter writes at the top of output_dir (shards: _SHARD_FILE).
OWN_FILES = (LABELS_FILE, MANIFEST_FILE, FAILURES_FILE, BOX_PROBLEMS_FILE)
#: Bump when the bytes written for the same input change, so old shards are rewritten.
#: (Boxes from `--boxes` did not need a bump: they enter the input key of just the videos
#: that have them; a video without boxes keeps its key and its bytes.)
FORMAT_VERSION = 1

SSV2_FILES = {  # official names, and the newer "labels/" layout
    "labels": ("something-something-v2-labels.json", "labels/labels.json"),
    "train": ("something-something-v2-train.json", "labels/train.json"),
    "validation": ("something-something-v2-validation.json", "labels/validation.json"),
    "test": ("something-something-v2-test.json", "labels/test.json"),
}
#: Optional per-frame ground truth (written by the synthetic generator):
#: `{id: {"active": [0/1 per frame], "box": [[ymin, xmin, ymax, xmax] per frame]}}`.
SSV2_GROUND_TRUTH = "something-something-v2-groundtruth.json"
SSV2_VIDEO_DIRS = ("20bn-something-something-v2", "videos")
SSV1_FILES = {
    "labels": ("something-something-v1-labels.csv",),
    "train": ("something-something-v1-train.csv",),
    "validation": ("something-something-v1-validation.csv",),
    "test": ("something-something-v1-test.csv",),
}
SSV1_FRAME_DIRS = ("20bn-something-something-v1", "frames")
FOLDER_SPLIT_DIRS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


class ConversionError(RuntimeError):
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


def _find(input_dir: str, candidates: Sequence[str], what: str, required: bool = True):
    for name in candidates:
        path = os.path.join(input_dir, name)
        if os.path.exists(path):
            return path
    if required:
        raise ConversionError(
            f"{what} not found in {input_dir}: looked for {', '.join(candidates)}")
    return None


def _find_dir(input_dir: str, candidates: Sequence[str]) -> str:
    for name in candidates:
        path = os.path.join(input_dir, name)
        if os.path.isdir(path):
            return path
    return input_dir


def _norm_name(name: str) -> str:
    return " ".join(name.lower().split())


class _LabelLookup:
    """Exact class-name lookup, falling back to case/whitespace-insensitive matching."""

    def __init__(self, labels: Sequence[str]):
        self.exact = {n: i for i, n in enumerate(labels)}
        self.loose = {_norm_name(n): i for i, n in enumerate(labels)}

    def get(self, name: str) -> int | None:
        i = self.exact.get(name)
        return self.loose.get(_norm_name(name)) if i is None else i


# --- layout readers --------------------------------------------------------------------


def _load_ground_truth(path: str) -> dict[str, dict]:
    data = labels_lib.load_json(path)
    if not isinstance(data, dict):
        raise labels_lib.LabelFileError(path, "expected an object {id: {active, box}}")
    return data


def _gt_fields(entry: object, clip_id: str) -> tuple[tuple, tuple]:
    if not isinstance(entry, dict) or "active" not in entry or "box" not in entry:
        raise ValueError(f"ground truth for {clip_id!r} needs 'active' and 'box' lists")
    active = tuple(int(a) for a in entry["active"])
    box = tuple(tuple(float(v) for v in b) for b in entry["box"])
    if len(active) != len(box) or any(len(b) != 4 for b in box):
        raise ValueError(f"ground truth for {clip_id!r}: 'active' and 'box' must have one "
                         "entry per frame, boxes of 4 numbers")
    return active, box


def list_ssv2(input_dir: str, splits: Sequence[str], video_dir: str | None = None) -> Listing:
    """The official SSv2 layout: `<id>.webm` videos + labels/train/validation/test JSON."""
    labels_path = _find(input_dir, SSV2_FILES["labels"], "SSv2 labels file")
    labels = labels_lib.load_ssv2_labels(labels_path)
    lookup = _LabelLookup(labels)
    video_dir = video_dir or _find_dir(input_dir, SSV2_VIDEO_DIRS)
    gt_path = _find(input_dir, (SSV2_GROUND_TRUTH,), "", required=False)
    ground_truth = _load_ground_truth(gt_path) if gt_path else None
    items: dict[str, list[VideoItem]] = {}
    rejected: dict[str, list[dict]] = {}
    for split in splits:
        path = _find(input_dir, SSV2_FILES[split], f"SSv2 {split} annotation file")
        entries = labels_lib.load_json(path)
        if not isinstance(entries, list):
            raise labels_lib.LabelFileError(path, "expected a JSON list of {id, template, ...}")
        items[split], rejected[split] = [], []
        for n, entry in enumerate(entries):
            raw_id = entry.get("id") if isinstance(entry, dict) else None
            where = f"{os.path.basename(path)} entry {n}"
            try:
                if not isinstance(entry, dict):
                    raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
                clip_id = validate_id(raw_id)
                if split == "test":
                    index, text = tfrecord.NO_LABEL, ""
                else:
                    template = entry.get("template")
                    if not isinstance(template, str):
                        raise ValueError(f"{where}: no 'template' field")
                    text = labels_lib.ssv2_template_to_label(template)
                    index = lookup.get(text)
                    if index is None:
                        raise ValueError(f"label {text!r} is not in {labels_path}")
                    text = labels[index]
                gt_active = gt_box = None
                if ground_truth is not None:
                    if clip_id not in ground_truth:
                        raise ValueError(f"no ground truth for this id in {gt_path}")
                    gt_active, gt_box = _gt_fields(ground_truth[clip_id], clip_id)
                source = os.path.join(video_dir, f"{clip_id}.webm")
                items[split].append(VideoItem(split, clip_id, index, text, source, "video",
                                              gt_active, gt_box))
            except ValueError as e:
                rejected[split].append({"id": str(raw_id), "source": path, "reason": str(e)})
    return Listing(labels, items, rejected, {"labels_file": labels_path, "video_dir": video_dir})


def _read_ssv1_csv(path: str, labelled: bool, lookup: _LabelLookup, labels_path: str,
                   labels: Sequence[str], frame_dir: str, split: str):
    items, rejected = [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise labels_lib.LabelFileError(path, f"not UTF-8 text ({e.reason})") from e
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{os.path.basename(path)}:{lineno}"
        parts = line.split(";", 1)
        raw_id = parts[0].strip()
        try:
            clip_id = validate_id(raw_id)
            if labelled:
                if len(parts) != 2 or not parts[1].strip():
                    raise ValueError(f"{where}: expected 'id;class name'")
                index = lookup.get(parts[1].strip())
                if index is None:
                    raise ValueError(f"{where}: label {parts[1].strip()!r} is not in "
                                     f"{labels_path}")
                text = labels[index]
            else:
                index, text = tfrecord.NO_LABEL, ""
            items.append(VideoItem(split, clip_id, index, text,
                                   os.path.join(frame_dir, clip_id), "frames"))
        except ValueError as e:
            rejected.append({"id": raw_id, "source": f"{path}:{lineno}", "reason": str(e)})
    return items, rejected


def list_ssv1(input_dir: str, splits: Sequence[str], video_dir: str | None = None) -> Listing:
    """The official SSv1 layout: `<id>/00001.jpg ...` frame folders + `id;class` CSVs."""
    labels_path = _find(input_dir, SSV1_FILES["labels"], "SSv1 labels file")
    labels = labels_lib.load_ssv1_labels(labels_path)
    lookup = _LabelLookup(labels)
    frame_dir = video_dir or _find_dir(input_dir, SSV1_FRAME_DIRS)
    items, rejected = {}, {}
    for split in splits:
        path = _find(input_dir, SSV1_FILES[split], f"SSv1 {split} annotation file")
        items[split], rejected[split] = _read_ssv1_csv(
            path, split != "test", lookup, labels_path, labels, frame_dir, split)
    return Listing(labels, items, rejected, {"labels_file": labels_path, "video_dir": frame_dir})


def _hash_fraction(text: str) -> float:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16) / 16**12


def _walk_videos(class_dir: str) -> Iterator[tuple[str, str]]:
    """(path, path relative to `class_dir`) of every non-hidden file below `class_dir`, at
    any depth, sorted; symlinked folders are followed once (a link loop cannot recurse)."""
    seen: set[str] = set()
    for top, dirs, files in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                path = os.path.join(top, name)
                yield path, os.path.relpath(path, class_dir).replace(os.sep, "/")


def list_folder(input_dir: str, splits: Sequence[str], validation_fraction: float = 0.0
                ) -> Listing:
    """Users' own data: `<class>/<video>` (or `<split>/<class>/<video>` with split folders
    `train`, `validation`/`val`, `test`). Classes are the sorted class folder names across
    all splits. Without split folders everything is `train`, except a deterministic
    `validation_fraction` (by hash of the file path) that goes to `validation`.

    Videos in sub-folders of a class folder (`<class>/<sub>/.../<video>`, e.g. one folder
    per subject or session) belong to that class; their id is the path below the split
    root. A video directly in a root (outside any class folder) is listed as a failure. A
    class folder without a single video is refused (ConversionError): it would get a class
    index the model can never learn, and shift nothing visibly.
    """
    split_roots: dict[str, str] = {}
    for split, names in FOLDER_SPLIT_DIRS.items():
        for name in names:
            if os.path.isdir(os.path.join(input_dir, name)):
                split_roots[split] = os.path.join(input_dir, name)
                break
    if split_roots and validation_fraction:
        raise ConversionError(f"{input_dir} has split folders; validation_fraction only "
                              "applies to a single folder of classes")
    roots = split_roots or {"all": input_dir}
    if split_roots:
        used = {os.path.basename(r) for r in split_roots.values()}
        for name in sorted(os.listdir(input_dir)):
            if name not in used and not name.startswith("."):
                logging.warning("ignoring %s: next to split folders %s, only those are read",
                                os.path.join(input_dir, name), sorted(used))

    def class_dirs(root: str) -> list[str]:
        return sorted(d for d in os.listdir(root)
                      if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))

    labels = sorted({c for root in roots.values() for c in class_dirs(root)})
    if not labels:
        raise ConversionError(f"no class folders found in {input_dir}")
    label_index = {c: i for i, c in enumerate(labels)}
    items = {s: [] for s in splits}
    rejected = {s: [] for s in splits}
    ignored = nested = 0
    videos_per_class: collections.Counter = collections.Counter()
    empty_dirs: list[str] = []

    def split_of(root_split: str, clip_id: str) -> str:
        if root_split != "all":
            return root_split
        return "validation" if _hash_fraction(clip_id) < validation_fraction else "train"

    for root_split, root in roots.items():
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(path) \
                    and not name.startswith("."):
                split = split_of(root_split, name)
                if split in rejected:
                    rejected[split].append({
                        "id": name, "source": path,
                        "reason": f"not inside a class folder (expected {root}/<class>/"
                                  f"{name})"})
        for cls in class_dirs(root):
            cls_dir = os.path.join(root, cls)
            found = 0
            for path, rel in _walk_videos(cls_dir):
                if not rel.lower().endswith(VIDEO_EXTENSIONS):
                    ignored += 1
                    logging.info("ignoring %s: not a video extension %s", path, VIDEO_EXTENSIONS)
                    continue
                found += 1
                nested += "/" in rel
                clip_id = f"{cls}/{rel}"
                split = split_of(root_split, clip_id)
                if split not in items:
                    continue
                items[split].append(VideoItem(split, clip_id, label_index[cls], cls, path))
            videos_per_class[cls] += found
            if not found:
                empty_dirs.append(cls_dir)
    empty = [d for d in empty_dirs if not videos_per_class[os.path.basename(d)]]
    if empty:
        raise ConversionError(
            f"class folder{'s' if len(empty) > 1 else ''} with no videos "
            f"{VIDEO_EXTENSIONS}: {', '.join(empty)}; every class folder becomes a class, so "
            "add videos or remove the folder")
    for d in empty_dirs:
        logging.warning("%s has no videos: class %r is learnt from the other splits only", d,
                        os.path.basename(d))
    return Listing(labels, items, rejected, {"ignored_non_video_files": ignored,
                                             "videos_in_class_sub_folders": nested})


# --- per-video work (runs in worker processes) ------------------------------------------


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _frames_from_video(item: VideoItem, settings: EncodeSettings):
    decoded = video.decode_video(item.source, short_side=settings.short_side, threads=1)
    jpegs = [_jpeg(f, settings.jpeg_quality) for f in decoded.frames]
    h, w = decoded.frames.shape[1:3]
    return jpegs, decoded.fps, (h, w), decoded.source_size


def _frames_from_folder(item: VideoItem, settings: EncodeSettings):
    if not os.path.isdir(item.source):
        raise video.VideoReadError(item.source, "frame folder missing")
    names = sorted(n for n in os.listdir(item.source) if n.lower().endswith(FRAME_EXTENSIONS))
    if not names:
        raise video.VideoReadError(item.source, "frame folder has no .jpg frames")
    jpegs, size, source_size = [], None, None
    for name in names:
        path = os.path.join(item.source, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
            img = Image.open(io.BytesIO(data))
            img.load()
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise video.VideoReadError(path, f"unreadable frame ({e})") from e
        if source_size is None:
            source_size = (img.height, img.width)
            size = video.scaled_size(img.height, img.width, settings.short_side)
        passthrough = (img.format == "JPEG" and img.mode in ("RGB", "L")
                       and (img.height, img.width) == size)
        if passthrough:  # already small enough: keep the original bytes, no re-encoding loss
            jpegs.append(data)
            continue
        img = img.convert("RGB")
        if (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.Resampling.BOX)
        jpegs.append(_jpeg(np.asarray(img), settings.jpeg_quality))
    return jpegs, None, size, source_size


def _fit_boxes(item: VideoItem, num_frames: int, fps: float | None,
               source_size: tuple[int, int] | None) -> tuple[list | None, list | None, list]:
    """(per-frame boxes, annotated flags, problems) to store for one decoded video.

    The file's boxes are fitted to the decoded frames (`boxes.resolve`). On a clip that
    also has a synthetic object box, the frames the file annotates take its boxes and the
    other frames keep the object box, so a person can correct a few frames.
    """
    if item.boxes is None:
        return None, None, []
    per_frame, annotated, problems = boxes_lib.resolve(item.boxes, num_frames, fps,
                                                        source_size)
    if item.gt_box is not None and len(item.gt_box) == num_frames:
        gt = [[(b, boxes_lib.OBJECT)] if b[2] > b[0] and b[3] > b[1] else []
              for b in item.gt_box]
        per_frame = [mine if a else g for mine, a, g in zip(per_frame, annotated, gt)]
        annotated = [1] * num_frames
    return per_frame, annotated, problems


def convert_item(item: VideoItem, settings: EncodeSettings) -> dict:
    """Decodes and encodes one video. Never raises: failures come back as
    `{"ok": False, "reason": ...}` so one bad file cannot stop a conversion. Problems
    with the video's boxes come back as `box_problems` (dicts, `Problem.to_json`); the
    video is written without the bad boxes."""
    try:
        if item.kind == "frames":
            jpegs, fps, (h, w), source_size = _frames_from_folder(item, settings)
        else:
            jpegs, fps, (h, w), source_size = _frames_from_video(item, settings)
        if item.gt_active is not None and len(item.gt_active) != len(jpegs):
            raise ValueError(f"ground truth has {len(item.gt_active)} frames, the video "
                             f"{len(jpegs)}")
        boxes, annotated, problems = _fit_boxes(item, len(jpegs), fps, source_size)
        data = tfrecord.make_sequence_example(
            item.clip_id, item.label_index, item.label_text, jpegs, frame_rate=fps,
            gt_active=item.gt_active, gt_box=item.gt_box, boxes=boxes,
            box_annotated=annotated)
        result = {"ok": True, "data": data, "num_frames": len(jpegs), "height": h,
                  "width": w, "fps": fps,
                  "kept_size": min(source_size) <= (settings.short_side or 1 << 30)}
        if item.boxes is not None:  # absent otherwise: results of box-less videos unchanged
            result["box_frames"] = sum(annotated)
            result["box_problems"] = [p.to_json() for p in problems]
        return result
    except video.VideoReadError as e:
        return {"ok": False, "reason": e.reason if e.path == item.source else str(e)}
    except Exception as e:  # noqa: BLE001 - any per-video error is recorded, not fatal
        return {"ok": False, "reason": f"{type(e).__name__}: {e}"}


def _convert_task(task: tuple[VideoItem, EncodeSettings]) -> dict:
    return convert_item(*task)


# --- shards ------------------------------------------------------------------------------


def auto_num_shards(num_videos: int) -> int:
    """~VIDEOS_PER_SHARD videos per shard, at least MIN_SHARDS (never more than videos)."""
    if num_videos <= 0:
        return 1
    return max(min(num_videos, MIN_SHARDS), math.ceil(num_videos / VIDEOS_PER_SHARD))


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def assign_shards(items: Sequence[VideoItem], num_shards: int) -> list[list[VideoItem]]:
    """Deterministic: order by a hash of the id (mixing classes), then deal round-robin."""
    ordered = sorted(items, key=lambda it: (hashlib.sha1(it.clip_id.encode()).hexdigest(),
                                            it.clip_id))
    return [ordered[i::num_shards] for i in range(num_shards)]


def _source_stamp(item: VideoItem) -> object:
    """Size and modification time of a video file (of each frame, for a frame folder), or
    why it cannot be read: a fixed, replaced or added file changes its stamp."""
    try:
        if item.kind == "frames":
            with os.scandir(item.source) as entries:
                frames = [e for e in entries if e.name.lower().endswith(FRAME_EXTENSIONS)]
                return sorted([e.name, e.stat().st_size, e.stat().st_mtime_ns] for e in frames)
        st = os.stat(item.source)
        return [st.st_size, st.st_mtime_ns]
    except OSError as e:
        return type(e).__name__


def _input_key(item: VideoItem, settings: EncodeSettings) -> str:
    """Everything the bytes of one video's record depend on: the format, the settings, the
    annotation (id, label, ground truth), its boxes and the source's stamp.

    The boxes enter with the name (not the folder) of their file, as their problem lines
    do; a video without boxes has no `boxes` entry, so its key is what it was before
    boxes existed and adding a box file re-converts only the videos it lists.
    """
    annotation = dataclasses.asdict(dataclasses.replace(item, boxes=None))
    del annotation["boxes"]
    if item.boxes is not None:
        annotation["boxes"] = dataclasses.asdict(dataclasses.replace(
            item.boxes, source=os.path.basename(item.boxes.source)))
    return hashlib.sha256(json.dumps(
        [FORMAT_VERSION, dataclasses.asdict(settings), annotation,
         _source_stamp(item)], sort_keys=True).encode()).hexdigest()


def _fingerprint(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def _state_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, STATE_DIR, name + ".json")


def _read_state(output_dir: str, name: str, fingerprint: str) -> dict | None:
    """The saved record of a complete shard, or None if it must be (re)written."""
    path = os.path.join(output_dir, name)
    try:
        with open(_state_path(output_dir, name), encoding="utf-8") as f:
            state = json.load(f)
        size = os.path.getsize(path)
    except (OSError, ValueError):
        return None
    if state.get("fingerprint") != fingerprint or state.get("bytes") != size:
        return None
    return state


def _previous_videos(output_dir: str, name: str) -> dict[str, dict]:
    """{input key: result without data} of the shard an earlier run left under `name`
    (when it is intact), so that a shard with a few changed inputs only redoes those."""
    try:
        with open(_state_path(output_dir, name), encoding="utf-8") as f:
            state = json.load(f)
        if state.get("bytes") != os.path.getsize(os.path.join(output_dir, name)):
            return {}
        return {key: result for key, result in state.get("videos", [])}
    except (OSError, ValueError, TypeError):
        return {}


def _reusable_records(output_dir: str, name: str, previous: dict[str, dict],
                      wanted: set[str]) -> dict[str, dict]:
    """{key: result with its record bytes} for the `wanted` keys of the earlier shard.
    Records are in the order of its written videos. Empty if the shard cannot be read:
    the caller then converts those videos again."""
    out: dict[str, dict] = {}
    ok_keys = [k for k, r in previous.items() if r.get("ok")]
    try:
        records = tf.data.TFRecordDataset(os.path.join(output_dir, name))
        for key, record in zip(ok_keys, records):
            if key in wanted:
                out[key] = {**previous[key], "data": record.numpy()}
    except tf.errors.OpError as e:
        logging.warning("cannot reuse records of %s (%s): converting its videos again",
                        name, e.message.splitlines()[0])
        return {}
    out.update((k, r) for k, r in previous.items() if k in wanted and not r.get("ok"))
    return out


def _atomic_write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class _Stats:
    """Per-shard statistics, JSON-serialisable and mergeable."""

    def __init__(self):
        self.videos: list[list] = []  # [input key, result without data], in shard order
        self.converted = 0  # videos decoded this run (not saved: the rest were reused)
        self.written = 0
        self.failures: list[dict] = []
        self.per_class: collections.Counter = collections.Counter()
        self.frames: list[int] = []
        self.heights: list[int] = []
        self.widths: list[int] = []
        self.kept_size = 0
        self.boxed = 0  # written videos with boxes from a box file
        self.box_problems: list[dict] = []

    def add(self, item: VideoItem, key: str, result: dict) -> None:
        self.videos.append([key, {k: v for k, v in result.items() if k != "data"}])
        if result["ok"]:
            self.written += 1
            self.per_class[item.label_text or "<unlabelled>"] += 1
            self.frames.append(result["num_frames"])
            self.heights.append(result["height"])
            self.widths.append(result["width"])
            self.kept_size += int(result["kept_size"])
            self.boxed += "box_frames" in result
            self.box_problems += [{"split": item.split, **p}
                                  for p in result.get("box_problems", [])]
        else:
            self.failures.append({"split": item.split, "id": item.clip_id,
                                  "source": item.source, "reason": result["reason"]})

    def to_json(self) -> dict:
        def span(v):
            return [min(v), max(v)] if v else None
        return {"written": self.written, "failures": self.failures, "videos": self.videos,
                "per_class": dict(sorted(self.per_class.items())),
                "frames_total": sum(self.frames), "frames_span": span(self.frames),
                "height_span": span(self.heights), "width_span": span(self.widths),
                "kept_size": self.kept_size, "boxed": self.boxed,
                "box_problems": self.box_problems}


def _write_shard(path: str, items: Sequence[VideoItem], keys: Sequence[str],
                 results: Iterator[dict], skipped: set[str], reuse: dict[str, dict],
                 settings: EncodeSettings, on_done) -> _Stats:
    """Writes one shard: videos whose key is in `skipped` were left out of `results`; they
    take their earlier record from `reuse`, or are converted here if it was unreadable."""
    stats = _Stats()
    tmp = path + ".tmp"
    with tf.io.TFRecordWriter(tmp) as writer:
        for item, key in zip(items, keys):
            if key in reuse:
                result = reuse[key]
            elif key in skipped:
                result = convert_item(item, settings)
            else:
                result = next(results)
            stats.add(item, key, result)
            if result["ok"]:
                writer.write(result["data"])
            else:
                logging.warning("skipped %s %s (%s): %s", item.split, item.clip_id,
                                item.source, result["reason"])
            if key not in reuse:
                stats.converted += 1
                on_done()
    return stats


_SHARD_FILE = re.compile(rf"({'|'.join(KNOWN_SPLITS)})-\d{{5}}-of-\d{{5}}\.tfrecord(\.tmp)?")


def _check_output_dir(output_dir: str) -> None:
    """Refuses, before anything is written, an output_dir that is a file or that cannot be
    created or written."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"output_dir {output_dir} is a file, not a directory")
    existing = os.path.abspath(output_dir)
    while not os.path.exists(existing):  # the part of the path that is already there
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"output_dir {output_dir} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"output_dir {output_dir} is not writable (no write permission on "
                         f"{existing})")


def _own_files(output_dir: str) -> list[str]:
    """The files an earlier conversion left in output_dir (all splits), and nothing else."""
    if not os.path.isdir(output_dir):
        return []
    found = [os.path.join(output_dir, n) for n in sorted(os.listdir(output_dir))
             if n in OWN_FILES or _SHARD_FILE.fullmatch(n)]
    state_dir = os.path.join(output_dir, STATE_DIR)
    if os.path.isdir(state_dir):
        found += [os.path.join(state_dir, n) for n in sorted(os.listdir(state_dir))
                  if n.endswith((".json", ".json.tmp"))]
    return found


def _recorded_origin(output_dir: str) -> dict | None:
    """Which dataset output_dir holds: the origin file, or an older run's manifest."""
    for path in (os.path.join(output_dir, STATE_DIR, ORIGIN_FILE),
                 os.path.join(output_dir, MANIFEST_FILE)):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return {"dataset": data["dataset"],
                    "input_dir": os.path.realpath(data["input_dir"]),
                    "videos": data.get("videos")}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def _claim_output_dir(output_dir: str, origin: dict, overwrite: bool) -> None:
    """Makes output_dir this conversion's: refuses (UsageError) when it holds another
    dataset's files (the stale-shard clean-up would delete them with an INFO line), unless
    `overwrite`, which removes every converter file there first (all splits, so no old
    shard is read with the new ones). A re-run of the same dataset (resume) passes."""
    own = _own_files(output_dir)
    if not own:
        return
    before = _recorded_origin(output_dir)
    if before is not None and before["dataset"] == origin["dataset"] \
            and before["input_dir"] == origin["input_dir"] \
            and before["videos"] in (None, origin["videos"]):
        return
    shards = sum(bool(_SHARD_FILE.fullmatch(os.path.basename(p))) for p in own)
    what = (f"the {before['dataset']} conversion of {before['input_dir']} ({shards} shards)"
            if before else "files of an unknown conversion ("
            + ", ".join(os.path.relpath(p, output_dir) for p in own[:3])
            + (", ..." if len(own) > 3 else "") + ")")
    if not overwrite:
        raise UsageError(f"output_dir {output_dir} holds {what}; refusing to replace them: "
                         "pass --overwrite, or choose another --output_dir")
    logging.warning("--overwrite: removing %d files of %s from %s", len(own), what,
                    output_dir)
    for path in own:
        os.remove(path)


def _remove_stale_shards(output_dir: str, split: str, keep: set[str]) -> None:
    """Deletes this split's leftovers: partial `.tmp` shards, and shards of an earlier run
    with another shard count (a glob like `train-*.tfrecord` would read them twice)."""
    pattern = re.compile(rf"{re.escape(split)}-\d{{5}}-of-\d{{5}}\.tfrecord(\.tmp)?")
    for path in glob.glob(os.path.join(output_dir, f"{split}-*-of-*.tfrecord*")):
        name = os.path.basename(path)
        if name in keep or not pattern.fullmatch(name):
            continue
        logging.info("removing %s (partial, or not part of this conversion)", path)
        os.remove(path)
        base = name.removesuffix(".tmp")
        if base not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.remove(_state_path(output_dir, base))


def _merge_split(states: Sequence[dict], rejected: Sequence[dict], read: int,
                 shard_names: Sequence[str]) -> dict:
    per_class: collections.Counter = collections.Counter()
    failures = list(rejected)
    written = frames_total = kept = boxed = 0
    box_problems: list[dict] = []
    spans: dict[str, list[int]] = {}
    for s in states:
        written += s["written"]
        boxed += s.get("boxed", 0)  # .get: states written before boxes existed
        box_problems += s.get("box_problems", [])
        failures += s["failures"]
        per_class.update(s["per_class"])
        frames_total += s["frames_total"]
        kept += s["kept_size"]
        for key in ("frames_span", "height_span", "width_span"):
            if s[key]:
                lo, hi = spans.get(key, s[key])
                spans[key] = [min(lo, s[key][0]), max(hi, s[key][1])]
    frames = spans.get("frames_span")
    return {
        "read": read, "written": written, "failed": len(failures),
        "num_shards": len(shard_names), "shards": list(shard_names),
        "per_class": dict(sorted(per_class.items())),
        "frames": {"total": frames_total, "min": frames[0] if frames else None,
                   "max": frames[1] if frames else None,
                   "mean": round(frames_total / written, 2) if written else None},
        "height": spans.get("height_span"), "width": spans.get("width_span"),
        "videos_not_downscaled": kept,
        "videos_with_boxes": boxed,
        "_failures": failures,
        "_box_problems": box_problems,
    }


def list_dataset(dataset: str, input_dir: str, splits: Sequence[str], *,
                 video_dir: str | None = None, validation_fraction: float = 0.0) -> Listing:
    """Reads a layout's annotation files (no decoding). See the module doc for layouts."""
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if not os.path.isdir(input_dir):
        raise UsageError(f"input_dir {input_dir} is not a directory")
    for split in splits:
        if split not in KNOWN_SPLITS:
            raise UsageError(f"unknown split {split!r}; expected some of {KNOWN_SPLITS}")
    if dataset == "ssv2":
        listing = list_ssv2(input_dir, splits, video_dir)
    elif dataset == "ssv1":
        listing = list_ssv1(input_dir, splits, video_dir)
    else:
        listing = list_folder(video_dir or input_dir, splits, validation_fraction)
    # Every failure line says its split, whichever reader rejected it.
    listing.rejected = {split: [{"split": split, **r} for r in rs]
                        for split, rs in listing.rejected.items()}
    _reject_duplicates(listing)
    return listing


def _reject_duplicates(listing: Listing) -> None:
    """Moves videos listed more than once (same source file) to the failures.

    Written twice they would count twice in training, or leak from train into validation;
    which copy is right cannot be guessed. Same split and same label: kept once, the
    repeats are failures. Different labels, or both train and validation: every entry is
    a failure, so the user fixes the annotation files. The unlabelled test split is only
    checked against itself (a test id may also be annotated elsewhere).
    """
    by_source: dict[tuple[str, bool], list[VideoItem]] = collections.defaultdict(list)
    for split, split_items in listing.items.items():
        for item in split_items:
            by_source[os.path.normpath(item.source), split == "test"].append(item)
    drop: dict[int, str] = {}
    for group in by_source.values():
        if len(group) < 2:
            continue
        cid = group[0].clip_id
        splits = sorted({it.split for it in group}, key=KNOWN_SPLITS.index)
        labels = sorted({it.label_text for it in group})
        if len(splits) > 1:
            reason = (f"id {cid!r} is in both {' and '.join(splits)}: a video may be in one "
                      "split only (fix the annotation files)")
            drop.update((id(it), reason) for it in group)
        elif len(labels) > 1:
            reason = (f"id {cid!r} is listed {len(group)} times in {splits[0]} with different "
                      f"labels {labels}: fix the annotation file")
            drop.update((id(it), reason) for it in group)
        else:
            reason = (f"duplicate entry for id {cid!r} in {splits[0]} (same label): written "
                      "once")
            drop.update((id(it), reason) for it in group[1:])
    if not drop:
        return
    for split, split_items in listing.items.items():
        listing.items[split] = [it for it in split_items if id(it) not in drop]
        listing.rejected[split] += [
            {"split": split, "id": it.clip_id, "source": it.source, "reason": drop[id(it)]}
            for it in split_items if id(it) in drop]


def _attach_boxes(listing: Listing, files: Sequence[str], categories: str) -> list[dict]:
    """Reads the box files once and gives each listed video its boxes (in place).

    Returns the problems found before decoding (malformed entries, videos the files name
    that are not in the converted splits), as `box_problems.jsonl` rows (split None).
    Raises UsageError for a file that cannot be read at all: nothing in it can be used.
    """
    if not files:
        return []
    try:
        table, problems = boxes_lib.load_box_files(files, categories)
    except ValueError as e:
        raise UsageError(str(e)) from None
    known = {it.clip_id for items in listing.items.values() for it in items}
    # A rejected entry (bad video id, duplicate) is a failure already, not "no such video".
    known |= {str(r["id"]) for rs in listing.rejected.values() for r in rs}
    problems += boxes_lib.unknown_ids(table, known)
    for split, items in listing.items.items():
        listing.items[split] = [dataclasses.replace(it, boxes=table[it.clip_id])
                                if it.clip_id in table else it for it in items]
    return [{"split": None, **p.to_json()} for p in problems]


def _schema(listing: Listing) -> dict:
    """The manifest's list of the features the records can hold."""
    items = [it for v in listing.items.values() for it in v]
    lists = [tfrecord.IMAGE_ENCODED]
    if any(it.gt_active is not None for it in items):
        lists.append(tfrecord.GT_ACTIVE)
    if any(it.gt_box is not None or it.boxes is not None for it in items):
        lists += [*tfrecord.BOX_COORDS, tfrecord.BOX_ROLE, tfrecord.BOX_ANNOTATED]
    if any(it.gt_box is not None and it.boxes is not None for it in items):
        lists.append(tfrecord.GT_BOX)  # kept beside a person's boxes on a synthetic clip
    return {"context": [tfrecord.CLIP_ID, tfrecord.LABEL_INDEX, tfrecord.LABEL_TEXT,
                        tfrecord.NUM_FRAMES, tfrecord.FRAME_RATE],
            "feature_lists": lists}


def _results(pool, tasks: Iterable[tuple[VideoItem, EncodeSettings]]) -> Iterator[dict]:
    if pool is None:
        return map(_convert_task, tasks)
    return pool.imap(_convert_task, tasks, chunksize=2)


def convert_dataset(
    dataset: str,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    short_side: int | None = video.DEFAULT_SHORT_SIDE,
    num_shards: int | dict[str, int] | None = None,
    workers: int | None = None,
    splits: Sequence[str] = DEFAULT_SPLITS,
    jpeg_quality: int = 90,
    video_dir: str | os.PathLike | None = None,
    validation_fraction: float = 0.0,
    progress: bool = True,
    pool: multiprocessing.pool.Pool | None = None,
    overwrite: bool = False,
    boxes: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    box_categories: str = "both",
) -> dict:
    """Converts a dataset to TFRecords in `output_dir`; returns the manifest (a dict).

    Args:
      dataset: "ssv2", "ssv1" or "folder" (layouts in the module doc).
      input_dir: the dataset root (annotation files; videos in the usual sub-folder).
      output_dir: where shards, `labels.txt`, `manifest.json`, `failures.jsonl` go.
      short_side: frames larger than this are shrunk to it; smaller ones are kept as they
        are (never upscaled; counted as `videos_not_downscaled`). None keeps every size.
      num_shards: shards per split (int, or {split: int}); None = `auto_num_shards`.
      workers: decoding processes; None = all cores, 0 or 1 = in this process. Workers are
        spawned (safe next to a running TensorFlow), so a script calling this with
        workers > 1 needs the usual `if __name__ == "__main__":` guard.
      splits: which splits to convert ("train", "validation", "test").
      jpeg_quality: JPEG quality of the stored frames.
      video_dir: where the videos / frame folders are, if not in the usual place.
      validation_fraction: `folder` without split folders: share put in "validation".
      progress: show a tqdm progress bar per split.
      pool: an existing process pool to use (then `workers` is ignored); e.g. one pool
        shared by generation and conversion saves a start-up.
      overwrite: replace the files of another dataset's conversion in `output_dir`
        (without it, that is refused). A re-run of the same dataset resumes either way.
      boxes: box files (Something-Else or the simple format, `docs/boxes.md`); each listed
        video's boxes are fitted to its decoded frames and stored in its record. Problems
        in them never stop the run: each is one line in the summary and in
        `box_problems.jsonl`, and the video is written without the bad boxes.
      box_categories: which boxes of the files count: "hands", "objects" or "both".

    Raises:
      UsageError: an argument is unusable (output_dir a file, unwritable, or another
        dataset's; unknown split; a box file that is missing or not a JSON object; ...),
        raised before anything is written.
      LabelFileError: a label/annotation file is malformed (message names file and line).
      ConversionError: missing annotation files, or not a single video could be written.
    """
    from tqdm import tqdm  # local: only conversions need it

    t0 = time.time()
    input_dir, output_dir = os.fspath(input_dir), os.fspath(output_dir)
    video_dir = os.fspath(video_dir) if video_dir is not None else None
    splits = tuple(splits)
    # Every argument is checked, and the annotations read, before anything is written.
    if not 1 <= jpeg_quality <= 100:
        raise UsageError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if not splits:
        raise UsageError("no splits to convert")
    if not 0 <= validation_fraction < 1:
        raise UsageError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if short_side is not None and short_side < 0:
        raise UsageError(f"short_side must be positive (0 or None: keep sizes), got "
                         f"{short_side}")
    counts = num_shards.values() if isinstance(num_shards, dict) else [num_shards]
    if any(c is not None and c < 0 for c in counts):
        raise UsageError(f"num_shards must be positive (or 0 for automatic), got {num_shards}")
    if box_categories not in boxes_lib.CATEGORIES:
        raise UsageError(f"box_categories must be one of {', '.join(boxes_lib.CATEGORIES)}, "
                         f"got {box_categories!r}")
    box_files = ([os.fspath(boxes)] if isinstance(boxes, (str, os.PathLike))
                 else [os.fspath(b) for b in boxes or ()])
    _check_output_dir(output_dir)
    listing = list_dataset(dataset, input_dir, splits, video_dir=video_dir,
                           validation_fraction=validation_fraction)
    box_problems = _attach_boxes(listing, box_files, box_categories)
    origin = {"dataset": dataset, "input_dir": os.path.realpath(input_dir),
              "videos": os.path.realpath(listing.notes.get("video_dir") or video_dir
                                         or input_dir)}
    _claim_output_dir(output_dir, origin, overwrite)
    settings = EncodeSettings(short_side=short_side or None, jpeg_quality=jpeg_quality)
    try:
        os.makedirs(os.path.join(output_dir, STATE_DIR), exist_ok=True)
    except OSError as e:
        raise UsageError(f"output_dir {output_dir} cannot be created: {e.strerror}") from None
    _atomic_write_text(os.path.join(output_dir, STATE_DIR, ORIGIN_FILE), json.dumps(origin))
    labels_lib.write_labels(os.path.join(output_dir, LABELS_FILE), listing.labels)

    if workers is None:
        workers = default_workers()
    split_summaries: dict[str, dict] = {}
    processed = 0
    with worker_pool(workers, pool) as pool:
        for split in splits:
            items = listing.items[split]
            rejected = listing.rejected[split]
            for r in rejected:
                logging.warning("skipped %s %s (%s): %s", split, r["id"], r["source"],
                                r["reason"])
            count = (num_shards.get(split) if isinstance(num_shards, dict) else num_shards)
            count = count or auto_num_shards(len(items))
            shards = assign_shards(items, count)
            names = [shard_name(split, i, count) for i in range(count)]
            _remove_stale_shards(output_dir, split, set(names))
            keys = [[_input_key(it, settings) for it in shard] for shard in shards]
            fingerprints = [_fingerprint(k) for k in keys]
            states = [_read_state(output_dir, n, f) for n, f in zip(names, fingerprints)]
            pending = [i for i, s in enumerate(states) if s is None]
            # In a shard to redo, videos whose inputs did not change keep their record.
            previous = {i: _previous_videos(output_dir, names[i]) for i in pending}
            skipped = {i: {k for k in keys[i] if k in previous[i]} for i in pending}
            todo = sum(len(shards[i]) - len(skipped[i]) for i in pending)
            if len(pending) < count:
                logging.info("%s: %d of %d shards already complete, skipping them", split,
                             count - len(pending), count)
            tasks = ((item, settings) for i in pending
                     for item, key in zip(shards[i], keys[i]) if key not in skipped[i])
            results = _results(pool, tasks)
            with tqdm(total=todo, desc=f"{split}", unit="video", disable=not progress,
                      dynamic_ncols=True) as bar:
                for i in pending:
                    path = os.path.join(output_dir, names[i])
                    reuse = _reusable_records(output_dir, names[i], previous[i], skipped[i]) \
                        if skipped[i] else {}
                    stats = _write_shard(path, shards[i], keys[i], results, skipped[i], reuse,
                                         settings, lambda: bar.update(1))
                    state = {"fingerprint": fingerprints[i], **stats.to_json(),
                             "bytes": os.path.getsize(path + ".tmp")}
                    _atomic_write_text(_state_path(output_dir, names[i]), json.dumps(state))
                    os.replace(path + ".tmp", path)
                    states[i] = state
                    processed += stats.converted
            read = len(items) + len(rejected)
            split_summaries[split] = _merge_split(states, rejected, read, names)

    failures = [f for s in split_summaries.values() for f in s.pop("_failures")]
    box_problems += [p for s in split_summaries.values() for p in s.pop("_box_problems")]
    for p in box_problems:
        logging.warning("box problem: %s", p["line"])
    elapsed = time.time() - t0
    manifest = {
        "dataset": dataset,
        "input_dir": os.path.abspath(input_dir),
        "num_classes": len(listing.labels),
        "labels_file": LABELS_FILE,
        "failures_file": FAILURES_FILE,
        "schema": _schema(listing),
        "settings": {"short_side": settings.short_side, "jpeg_quality": jpeg_quality,
                     "workers": workers, "splits": list(splits),
                     "video_dir": listing.notes.get("video_dir"),
                     "validation_fraction": validation_fraction,
                     "format_version": FORMAT_VERSION},
        "splits": split_summaries,
        "boxes": {"files": [os.path.abspath(b) for b in box_files],
                  "categories": box_categories if box_files else None,
                  "videos_with_boxes": sum(s["videos_with_boxes"]
                                           for s in split_summaries.values()),
                  "problems": len(box_problems), "problems_file": BOX_PROBLEMS_FILE,
                  "first_problems": [p["line"] for p in box_problems[:BOX_PROBLEMS_SHOWN]]},
        "notes": {k: v for k, v in listing.notes.items() if k != "video_dir"},
        "elapsed_s": round(elapsed, 2),
        "videos_processed_this_run": processed,
        "videos_per_s": round(processed / elapsed, 2) if elapsed > 0 else None,
    }
    _atomic_write_text(os.path.join(output_dir, FAILURES_FILE),
                       "".join(json.dumps(failure) + "\n" for failure in failures))
    _atomic_write_text(os.path.join(output_dir, BOX_PROBLEMS_FILE),
                       "".join(json.dumps(p) + "\n" for p in box_problems))
    _atomic_write_text(os.path.join(output_dir, MANIFEST_FILE),
                       json.dumps(manifest, indent=2) + "\n")
    if sum(s["written"] for s in split_summaries.values()) == 0:
        raise ConversionError(
            f"no video could be written from {input_dir} (see "
            f"{os.path.join(output_dir, FAILURES_FILE)})")
    return manifest


def format_summary(manifest: dict) -> str:
    """The end-of-run summary: `read = written + failed` per split, speed, failures file."""
    lines = []
    for split, s in manifest["splits"].items():
        ok = "ok" if s["read"] == s["written"] + s["failed"] else "MISMATCH"
        lines.append(f"{split:>10}: read {s['read']} = written {s['written']} + failed "
                     f"{s['failed']} [{ok}], {s['num_shards']} shards, frames/video "
                     f"{s['frames']['min']}..{s['frames']['max']} (mean {s['frames']['mean']})")
        if s["videos_not_downscaled"] and manifest["settings"]["short_side"]:
            lines.append(f"{'':>12}{s['videos_not_downscaled']} videos already at or below "
                         f"short side {manifest['settings']['short_side']}: kept their size "
                         "(never upscaled)")
    lines.append(f"{manifest['videos_processed_this_run']} videos converted in "
                 f"{manifest['elapsed_s']:.1f}s ({manifest['videos_per_s']} videos/s)")
    failed = sum(s["failed"] for s in manifest["splits"].values())
    if failed:
        lines.append(f"{failed} failures listed in {manifest['failures_file']}")
    boxes = manifest.get("boxes") or {}
    if boxes.get("files"):
        lines.append(f"boxes ({boxes['categories']}) from {len(boxes['files'])} file(s): "
                     f"{boxes['videos_with_boxes']} videos with boxes, {boxes['problems']} "
                     f"problems" + (f" listed in {boxes['problems_file']}:"
                                    if boxes["problems"] else ""))
        lines += [f"  {line}" for line in boxes["first_problems"]]
        if boxes["problems"] > len(boxes["first_problems"]):
            lines.append(f"  ... and {boxes['problems'] - len(boxes['first_problems'])} "
                         f"more in {boxes['problems_file']}")
    return "\n".join(lines)


# --- CLI ----------------------------------------------------------------------------------


def _define_flags() -> None:
    # Defined only when run as a program, so importing this module (e.g. from the trainer)
    # never clashes with the importer's own flags.
    flags.DEFINE_enum("dataset", None, list(DATASETS), "Input layout (required unless "
                      "--verify).")
    flags.DEFINE_string("input_dir", None, "Dataset root directory (required unless --verify).")
    flags.DEFINE_string("output_dir", None, "Where to write TFRecords.", required=True)
    flags.DEFINE_bool("overwrite", False, "Replace another dataset's conversion in "
                      "--output_dir (refused without it; re-runs of the same dataset resume).")
    flags.DEFINE_bool("verify", False, "Convert nothing: read every shard in --output_dir "
                      "once and list each corrupt, truncated or malformed one (exit 1).")
    flags.DEFINE_string("video_dir", None, "Videos / frame folders, if not in the usual "
                        "sub-folder of input_dir.")
    flags.DEFINE_integer("short_side", video.DEFAULT_SHORT_SIDE,
                         "Shrink frames to this short side (never upscales); 0 keeps sizes.")
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.")
    flags.DEFINE_integer("num_shards", 0, "Shards per split; 0 = about "
                         f"{VIDEOS_PER_SHARD} videos per shard, at least {MIN_SHARDS}.")
    flags.DEFINE_integer("workers", 0, "Decoding processes; 0 = all cores, 1 = no pool.")
    flags.DEFINE_list("splits", list(DEFAULT_SPLITS), "Splits to convert.")
    flags.DEFINE_float("validation_fraction", 0.0, "folder layout without split folders: "
                       "fraction of videos put in the validation split.")
    flags.DEFINE_bool("progress", True, "Show progress bars.")
    flags.DEFINE_list("boxes", [], "Box files (Something-Else JSON or the simple format of "
                      "docs/boxes.md), comma-separated: the listed videos' boxes go into "
                      "their records for attention supervision.")
    flags.DEFINE_enum("box_categories", "both", list(boxes_lib.CATEGORIES),
                      "Which boxes of --boxes count: hands, objects or both.")


def verify_output_dir(output_dir: str) -> list[str]:
    """Problems of a converted directory, one line each: every shard read once
    (`tfrecord.verify_tfrecords`), and every shard the manifest lists present.

    Raises:
      UsageError: `output_dir` is not a directory or holds no shards.
    """
    if not os.path.isdir(output_dir):
        raise UsageError(f"output_dir {output_dir} is not a directory")
    files = sorted(glob.glob(os.path.join(glob.escape(output_dir), "*.tfrecord")))
    if not files:
        raise UsageError(f"output_dir {output_dir} holds no .tfrecord shards")
    problems = [str(p) for p in tfrecord.verify_tfrecords(files)]
    try:
        with open(os.path.join(output_dir, MANIFEST_FILE), encoding="utf-8") as f:
            listed = [n for s in json.load(f)["splits"].values() for n in s["shards"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = []
    problems += [f"{os.path.join(output_dir, n)}: missing (listed in {MANIFEST_FILE})"
                 for n in listed if not os.path.exists(os.path.join(output_dir, n))]
    return problems


def _verify_main(output_dir: str) -> None:
    problems = verify_output_dir(output_dir)
    for line in problems:
        print(line, file=sys.stderr)
    n = len(glob.glob(os.path.join(glob.escape(output_dir), "*.tfrecord")))
    if problems:
        print(f"{len(problems)} problems in {n} shards; delete the bad shards and re-run the "
              "same convert command to rewrite them")
        raise SystemExit(1)
    print(f"{n} shards verified: every record readable")


def main(argv: Sequence[str]) -> None:
    f = flags.FLAGS
    try:
        if len(argv) > 1:
            raise UsageError(f"unexpected arguments {argv[1:]}")
        if f.verify:
            _verify_main(f.output_dir)
            return
        for name in ("dataset", "input_dir"):
            if getattr(f, name) is None:
                raise UsageError(f"--{name} is required (unless --verify)")
        manifest = convert_dataset(
            f.dataset, f.input_dir, f.output_dir, short_side=f.short_side or None,
            num_shards=f.num_shards or None, workers=f.workers or None, splits=f.splits,
            jpeg_quality=f.jpeg_quality, video_dir=f.video_dir,
            validation_fraction=f.validation_fraction, progress=f.progress,
            overwrite=f.overwrite, boxes=f.boxes, box_categories=f.box_categories)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except (labels_lib.LabelFileError, ConversionError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print(format_summary(manifest))
    print(f"wrote {os.path.join(f.output_dir, MANIFEST_FILE)}")


if __name__ == "__main__":
    from absl import app

    # Run the importable copy of this module (not __main__), so the tasks sent to worker
    # processes pickle as `stabn_tf.data.convert.*`.
    from stabn_tf.data import convert as _module

    _module._define_flags()
    app.run(_module.main)
