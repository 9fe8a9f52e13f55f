"""The Something-Something V1 layout: `<id>/00001.jpg ...` frame folders and `id;class`
CSV files."""

from __future__ import annotations

import os
from collections.abc import Sequence

from stabn_tf.data import labels as labels_lib
from stabn_tf.data import tfrecord
from stabn_tf.data.convert.items import (
    LabelLookup,
    Listing,
    VideoItem,
    find_dir,
    find_file,
    validate_id,
)

SSV1_FILES = {
    "labels": ("something-something-v1-labels.csv",),
    "train": ("something-something-v1-train.csv",),
    "validation": ("something-something-v1-validation.csv",),
    "test": ("something-something-v1-test.csv",),
}
SSV1_FRAME_DIRS = ("20bn-something-something-v1", "frames")


def _read_ssv1_csv(path: str, labelled: bool, lookup: LabelLookup, labels_path: str,
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
    labels_path = find_file(input_dir, SSV1_FILES["labels"], "SSv1 labels file")
    labels = labels_lib.load_ssv1_labels(labels_path)
    lookup = LabelLookup(labels)
    frame_dir = video_dir or find_dir(input_dir, SSV1_FRAME_DIRS)
    items, rejected = {}, {}
    for split in splits:
        path = find_file(input_dir, SSV1_FILES[split], f"SSv1 {split} annotation file")
        items[split], rejected[split] = _read_ssv1_csv(
            path, split != "test", lookup, labels_path, labels, frame_dir, split)
    return Listing(labels, items, rejected, {"labels_file": labels_path, "video_dir": frame_dir})
