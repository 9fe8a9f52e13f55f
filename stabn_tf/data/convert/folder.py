"""Users' own data: a folder of class folders (optionally inside split folders)."""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Iterator, Sequence

from absl import logging

from stabn_tf.data.convert.items import ConversionError, Listing, VideoItem

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v")
FOLDER_SPLIT_DIRS = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


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
