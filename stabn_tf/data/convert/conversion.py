"""`convert_dataset`: one conversion from annotations to shards, manifest and summary
files, resuming what an earlier run left."""

from __future__ import annotations

import json
import multiprocessing.pool
import os
import time
from collections.abc import Sequence

from absl import logging

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import labels as labels_lib
from stabn_tf.data import video
from stabn_tf.data._parallel import default_workers, worker_pool
from stabn_tf.data.convert.items import DEFAULT_SPLITS, ConversionError, EncodeSettings, UsageError
from stabn_tf.data.convert.listing import attach_boxes, list_dataset
from stabn_tf.data.convert.manifest import (
    BOX_PROBLEMS_FILE,
    BOX_PROBLEMS_SHOWN,
    FAILURES_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    merge_split,
    records_schema,
)
from stabn_tf.data.convert.output_dir import ORIGIN_FILE, check_output_dir, claim_output_dir
from stabn_tf.data.convert.shards import (
    FORMAT_VERSION,
    STATE_DIR,
    assign_shards,
    atomic_write_text,
    auto_num_shards,
    convert_all,
    input_key,
    previous_videos,
    read_state,
    remove_stale_shards,
    reusable_records,
    shard_fingerprint,
    shard_name,
    state_path,
    write_shard,
)


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
    check_output_dir(output_dir)
    listing = list_dataset(dataset, input_dir, splits, video_dir=video_dir,
                           validation_fraction=validation_fraction)
    box_problems = attach_boxes(listing, box_files, box_categories)
    origin = {"dataset": dataset, "input_dir": os.path.realpath(input_dir),
              "videos": os.path.realpath(listing.notes.get("video_dir") or video_dir
                                         or input_dir)}
    claim_output_dir(output_dir, origin, overwrite)
    settings = EncodeSettings(short_side=short_side or None, jpeg_quality=jpeg_quality)
    try:
        os.makedirs(os.path.join(output_dir, STATE_DIR), exist_ok=True)
    except OSError as e:
        raise UsageError(f"output_dir {output_dir} cannot be created: {e.strerror}") from None
    atomic_write_text(os.path.join(output_dir, STATE_DIR, ORIGIN_FILE), json.dumps(origin))
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
            remove_stale_shards(output_dir, split, set(names))
            keys = [[input_key(it, settings) for it in shard] for shard in shards]
            fingerprints = [shard_fingerprint(k) for k in keys]
            states = [read_state(output_dir, n, f) for n, f in zip(names, fingerprints)]
            pending = [i for i, s in enumerate(states) if s is None]
            # In a shard to redo, videos whose inputs did not change keep their record.
            previous = {i: previous_videos(output_dir, names[i]) for i in pending}
            skipped = {i: {k for k in keys[i] if k in previous[i]} for i in pending}
            todo = sum(len(shards[i]) - len(skipped[i]) for i in pending)
            if len(pending) < count:
                logging.info("%s: %d of %d shards already complete, skipping them", split,
                             count - len(pending), count)
            tasks = ((item, settings) for i in pending
                     for item, key in zip(shards[i], keys[i]) if key not in skipped[i])
            results = convert_all(pool, tasks)
            with tqdm(total=todo, desc=f"{split}", unit="video", disable=not progress,
                      dynamic_ncols=True) as bar:
                for i in pending:
                    path = os.path.join(output_dir, names[i])
                    reuse = reusable_records(output_dir, names[i], previous[i], skipped[i]) \
                        if skipped[i] else {}
                    stats = write_shard(path, shards[i], keys[i], results, skipped[i], reuse,
                                         settings, lambda: bar.update(1))
                    state = {"fingerprint": fingerprints[i], **stats.to_json(),
                             "bytes": os.path.getsize(path + ".tmp")}
                    atomic_write_text(state_path(output_dir, names[i]), json.dumps(state))
                    os.replace(path + ".tmp", path)
                    states[i] = state
                    processed += stats.converted
            read = len(items) + len(rejected)
            split_summaries[split] = merge_split(states, rejected, read, names)

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
        "schema": records_schema(listing),
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
    atomic_write_text(os.path.join(output_dir, FAILURES_FILE),
                       "".join(json.dumps(failure) + "\n" for failure in failures))
    atomic_write_text(os.path.join(output_dir, BOX_PROBLEMS_FILE),
                       "".join(json.dumps(p) + "\n" for p in box_problems))
    atomic_write_text(os.path.join(output_dir, MANIFEST_FILE),
                       json.dumps(manifest, indent=2) + "\n")
    if sum(s["written"] for s in split_summaries.values()) == 0:
        raise ConversionError(
            f"no video could be written from {input_dir} (see "
            f"{os.path.join(output_dir, FAILURES_FILE)})")
    return manifest
