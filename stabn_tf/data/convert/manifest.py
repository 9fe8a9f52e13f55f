"""The files that describe a conversion: `manifest.json` (per split counts, statistics,
settings), `failures.jsonl`, `box_problems.jsonl`, and the end-of-run summary."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Sequence

from absl import logging

from stabn_tf.data import tfrecord, video
from stabn_tf.data.convert.items import Listing

LABELS_FILE = "labels.txt"
MANIFEST_FILE = "manifest.json"
FAILURES_FILE = "failures.jsonl"
#: One JSON line per problem found in the `--boxes` files (see `docs/boxes.md`).
BOX_PROBLEMS_FILE = "box_problems.jsonl"
#: Box problem lines repeated in the manifest and the end-of-run summary (all are in
#: BOX_PROBLEMS_FILE).
BOX_PROBLEMS_SHOWN = 20


def merge_split(states: Sequence[dict], rejected: Sequence[dict], read: int,
                 shard_names: Sequence[str]) -> dict:
    per_class: collections.Counter = collections.Counter()
    failures = list(rejected)
    written = frames_total = kept = boxed = clipped = 0
    durations: collections.Counter = collections.Counter()
    box_problems: list[dict] = []
    spans: dict[str, list[int]] = {}
    for s in states:
        written += s["written"]
        boxed += s.get("boxed", 0)  # .get: states written before boxes existed
        clipped += s.get("box_clipped", 0)
        durations.update(s.get("durations", {}))
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
        "boxes_clipped": clipped,
        "videos_shorter_than_header": durations[video.SHORTER_THAN_HEADER],
        "videos_without_duration": durations[video.NO_DURATION],
        "_failures": failures,
        "_box_problems": box_problems,
    }


def records_schema(listing: Listing) -> dict:
    """The manifest's list of the features the records can hold."""
    items = [it for v in listing.items.values() for it in v]
    lists = [tfrecord.IMAGE_ENCODED]
    if any(it.gt_active is not None for it in items):
        lists.append(tfrecord.GT_ACTIVE)
    if any((it.gt_box is not None and it.gt_supervision) or
           (it.boxes is not None and it.boxes.num_frames) for it in items):
        lists += [*tfrecord.BOX_COORDS, tfrecord.BOX_ROLE, tfrecord.BOX_ANNOTATED]
    if any(it.gt_box is not None and (it.boxes is not None or not it.gt_supervision)
           for it in items):
        lists.append(tfrecord.GT_BOX)  # kept beside a person's boxes, or for metrics only
    if any(it.boxes is not None and it.boxes.active is not None for it in items):
        lists.append(tfrecord.ACTIVE)
    context = [tfrecord.CLIP_ID, tfrecord.LABEL_INDEX, tfrecord.LABEL_TEXT,
               tfrecord.NUM_FRAMES, tfrecord.FRAME_RATE]
    if any(it.gt_active is not None and not it.gt_supervision for it in items):
        context.append(tfrecord.GT_SUPERVISION)
    return {"context": context, "feature_lists": lists}


def format_summary(manifest: dict) -> str:
    """The end-of-run summary: `read = written + failed` per split, speed, failures file."""
    lines = []
    for split, s in manifest["splits"].items():
        ok = "ok" if s["read"] == s["written"] + s["failed"] else "MISMATCH"
        earlier = "" if split in manifest["settings"]["splits"] else " (an earlier run's)"
        lines.append(f"{split:>10}: read {s['read']} = written {s['written']} + failed "
                     f"{s['failed']} [{ok}], {s['num_shards']} shards, frames/video "
                     f"{s['frames']['min']}..{s['frames']['max']} (mean {s['frames']['mean']})"
                     + earlier)
        if s["videos_not_downscaled"] and manifest["settings"]["short_side"]:
            lines.append(f"{'':>12}{s['videos_not_downscaled']} videos already at or below "
                         f"short side {manifest['settings']['short_side']}: kept their size "
                         "(never upscaled)")
    short = sum(s.get("videos_shorter_than_header", 0) for s in manifest["splits"].values())
    undated = sum(s.get("videos_without_duration", 0) for s in manifest["splits"].values())
    if short or undated:
        lines.append(f"{short} videos shorter than their header / {undated} without a "
                     "duration: written with the frames that decode (see the warnings)")
    lines.append(f"{manifest['videos_processed_this_run']} videos converted in "
                 f"{manifest['elapsed_s']:.1f}s ({manifest['videos_per_s']} videos/s)")
    failed = sum(s["failed"] for s in manifest["splits"].values())
    if failed:
        lines.append(f"{failed} failures listed in {manifest['failures_file']}")
    boxes = manifest.get("boxes") or {}
    if boxes.get("files"):
        lines.append(f"boxes ({boxes['categories']}) from {len(boxes['files'])} file(s): "
                     f"{boxes['videos_with_boxes']} videos with boxes, "
                     f"{boxes.get('clipped', 0)} boxes clipped to the frame, {boxes['problems']} "
                     f"problems" + (f" listed in {boxes['problems_file']}:"
                                    if boxes["problems"] else ""))
        lines += [f"  {line}" for line in boxes["first_problems"]]
        if boxes["problems"] > len(boxes["first_problems"]):
            lines.append(f"  ... and {boxes['problems'] - len(boxes['first_problems'])} "
                         f"more in {boxes['problems_file']}")
    return "\n".join(lines)


def earlier_splits(output_dir: str, converting: Sequence[str]
                   ) -> tuple[dict[str, dict], list[dict], list[dict]]:
    """What an earlier run's manifest says of the splits this run does not convert (e.g.
    train and validation, when only `--splits=test` is converted now), with their lines of
    the failure and box problem files, so the manifest keeps describing every split in the
    directory. A split some of whose shards are gone is dropped (with a warning)."""
    try:
        with open(os.path.join(output_dir, MANIFEST_FILE), encoding="utf-8") as f:
            before = json.load(f)
        settings, entries = before.get("settings") or {}, dict(before["splits"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, [], []
    kept: dict[str, dict] = {}
    for split, entry in entries.items():
        if split in converting or not isinstance(entry, dict):
            continue
        shards = entry.get("shards") or []
        missing = [n for n in shards if not os.path.exists(os.path.join(output_dir, n))]
        if missing or not shards:
            logging.warning("%s: the earlier %s split lacks %s; convert it again to list it",
                            output_dir, split, ", ".join(missing) or "its shards")
            continue
        entry.setdefault("encoding", {k: settings.get(k) for k in
                                      ("short_side", "jpeg_quality", "format_version")})
        kept[split] = entry
    return kept, _lines_of(output_dir, FAILURES_FILE, kept), \
        _lines_of(output_dir, BOX_PROBLEMS_FILE, kept)


def _lines_of(output_dir: str, name: str, splits: Sequence[str]) -> list[dict]:
    """The JSON lines of `name` (a failure or problem file) that belong to `splits`."""
    if not splits:
        return []
    try:
        with open(os.path.join(output_dir, name), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []
    return [r for r in rows if isinstance(r, dict) and r.get("split") in splits]
