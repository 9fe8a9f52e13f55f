"""The Something-Something V2 layout: `<id>.webm` videos and the four JSON files (plus the
synthetic set's optional ground truth)."""

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
    labels_path = find_file(input_dir, SSV2_FILES["labels"], "SSv2 labels file")
    labels = labels_lib.load_ssv2_labels(labels_path)
    lookup = LabelLookup(labels)
    video_dir = video_dir or find_dir(input_dir, SSV2_VIDEO_DIRS)
    gt_path = find_file(input_dir, (SSV2_GROUND_TRUTH,), "", required=False)
    ground_truth = _load_ground_truth(gt_path) if gt_path else None
    items: dict[str, list[VideoItem]] = {}
    rejected: dict[str, list[dict]] = {}
    for split in splits:
        path = find_file(input_dir, SSV2_FILES[split], f"SSv2 {split} annotation file")
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
