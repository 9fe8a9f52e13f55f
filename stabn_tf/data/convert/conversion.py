"""`convert_dataset`: one conversion from annotations to shards, manifest and summary
files, resuming what an earlier run left."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing.pool
import os
import time
from collections.abc import Sequence

import tensorflow as tf
from absl import logging

from stabn_tf import disk
from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import labels as labels_lib
from stabn_tf.data import video
from stabn_tf.data._parallel import default_workers, worker_pool
from stabn_tf.data.convert.items import (
    DEFAULT_SPLITS,
    KNOWN_SPLITS,
    ConversionError,
    EncodeSettings,
    Listing,
    UsageError,
)
from stabn_tf.data.convert.listing import attach_boxes, list_dataset
from stabn_tf.data.convert.manifest import (
    BOX_PROBLEMS_FILE,
    BOX_PROBLEMS_SHOWN,
    FAILURES_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    earlier_splits,
    merge_split,
    records_schema,
)
from stabn_tf.data.convert.output_dir import (
    ORIGIN_FILE,
    OutputLock,
    check_output_dir,
    claim_output_dir,
)
from stabn_tf.data.convert.shards import (
    FORMAT_VERSION,
    STATE_DIR,
    SourceFingerprints,
    assign_shards,
    auto_num_shards,
    convert_all,
    file_sha256,
    input_key,
    intact_state,
    previous_videos,
    remove_stale_shards,
    reusable_records,
    shard_fingerprint,
    shard_name,
    state_path,
    write_shard,
)
from stabn_tf.disk import DiskFullError, publish, write_atomic


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
    ground_truth_supervision: bool = True,
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
      ground_truth_supervision: the synthetic set's ground truth (its object box and
        active frames) also supervises attention, as it always did. False: it is stored
        for the explanation metrics only (`clip/gt/*`), so only the `boxes` files
        supervise, e.g. to measure what a few corrected clips teach.

    Raises:
      UsageError: an argument is unusable (output_dir a file, unwritable, or another
        dataset's; unknown split; a box file that is missing or not a JSON object; ...),
        raised before anything is written.
      LabelFileError: a label/annotation file is malformed (message names file and line).
      DiskFullError: the disk filled up while writing (one line: the file, the space
        needed); complete shards are kept, and a re-run resumes.
      ConversionError: missing annotation files, or not a single video could be written.
        A second converter writing `output_dir` is a UsageError, raised at once.
    """
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
    with OutputLock(output_dir) as lock:
        if os.path.isdir(output_dir):
            lock.acquire()  # at once, before the annotations are read
        listing = list_dataset(dataset, input_dir, splits, video_dir=video_dir,
                               validation_fraction=validation_fraction)
        box_problems = attach_boxes(listing, box_files, box_categories, workers)
        if not ground_truth_supervision:
            listing.items = {split: [dataclasses.replace(it, gt_supervision=False)
                                     for it in items]
                             for split, items in listing.items.items()}
        origin = {"dataset": dataset, "input_dir": os.path.realpath(input_dir),
                  "videos": os.path.realpath(listing.notes.get("video_dir") or video_dir
                                             or input_dir)}
        try:
            lock.acquire()
        except OSError as e:
            raise UsageError(f"output_dir {output_dir} cannot be created: {e.strerror}"
                             ) from None
        claim_output_dir(output_dir, origin, overwrite)
        settings = EncodeSettings(short_side=short_side or None, jpeg_quality=jpeg_quality)
        written = _Written()
        try:
            return _write(dataset, input_dir, output_dir, listing, origin, box_problems,
                          settings, splits, num_shards, workers, pool, progress,
                          validation_fraction, box_files, box_categories, t0, written)
        except (OSError, tf.errors.OpError) as e:
            raise _write_error(e, output_dir, written) from None


@dataclasses.dataclass
class _Written:
    """How far the writing got, for the one line a full disk gives."""

    file: str | None = None  # being written
    bytes: int = 0  # in shards this run completed
    videos: int = 0  # ... holding this many videos
    videos_left: int = 0  # still to write this run


def _write_error(e: OSError | tf.errors.OpError, output_dir: str,
                 written: _Written) -> ConversionError | DiskFullError:
    """One line for an error while writing (a full disk above all): the file, and what
    is needed. The partial file is removed (space back; complete shards are kept)."""
    file = getattr(e, "filename", None) or written.file or output_dir
    if written.file and written.file.endswith(".tmp"):
        with contextlib.suppress(OSError):
            os.remove(written.file)
    message = e.strerror if isinstance(e, OSError) else e.message.splitlines()[0]
    if not disk.is_disk_full(e):
        return ConversionError(f"cannot write {file}: {message}")
    if not written.videos_left:  # every video is in its shard: the summary files are left
        need = "a little more room for the summary files (every video is written)"
    elif written.videos:
        per_video = written.bytes / written.videos
        need = (f"about {per_video * written.videos_left / 1e6:.0f} MB more for the "
                f"{written.videos_left} videos still to write ({per_video / 1e3:.0f} KB per "
                "video so far)")
    else:
        need = f"space for {written.videos_left} videos (no shard completed yet to size them)"
    return DiskFullError(file, need, disk.free_bytes(output_dir),
                         resumes="the complete shards are kept and it resumes from them")


def _write(dataset: str, input_dir: str, output_dir: str, listing: Listing, origin: dict,
           box_problems: list[dict], settings: EncodeSettings, splits: tuple[str, ...],
           num_shards: int | dict[str, int] | None, workers: int | None,
           pool: multiprocessing.pool.Pool | None, progress: bool,
           validation_fraction: float, box_files: list[str], box_categories: str,
           t0: float, written: _Written) -> dict:
    """The writing half of `convert_dataset` (output_dir claimed and locked)."""
    from tqdm import tqdm  # local: only conversions need it

    # Counted first: a full disk on the very first file still says what is to be written.
    written.videos_left = sum(len(listing.items[s]) for s in splits)
    os.makedirs(os.path.join(output_dir, STATE_DIR), exist_ok=True)
    written.file = os.path.join(output_dir, STATE_DIR, ORIGIN_FILE)
    write_atomic(written.file, json.dumps(origin))
    written.file = os.path.join(output_dir, LABELS_FILE)
    labels_lib.write_labels(written.file, listing.labels)
    earlier, earlier_failures, earlier_problems = earlier_splits(output_dir, splits)

    if workers is None:
        workers = default_workers()
    split_summaries: dict[str, dict] = {}
    processed = 0
    sources = SourceFingerprints(output_dir)
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
            keys = [[input_key(it, settings, sources(it)) for it in shard] for shard in shards]
            fingerprints = [shard_fingerprint(k) for k in keys]
            saved = [intact_state(output_dir, n) for n in names]
            states = [s if s is not None and s.get("fingerprint") == f else None
                      for s, f in zip(saved, fingerprints)]
            pending = [i for i, s in enumerate(states) if s is None]
            # In a shard to redo, videos whose inputs did not change keep their record.
            previous = {i: previous_videos(saved[i]) for i in pending}
            skipped = {i: {k for k in keys[i] if k in previous[i]} for i in pending}
            todo = sum(len(shards[i]) - len(skipped[i]) for i in pending)
            written.videos_left -= sum(len(shards[i]) for i in range(count) if i not in pending)
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
                    written.file = path + ".tmp"
                    stats = write_shard(path, shards[i], keys[i], results, skipped[i], reuse,
                                        settings, lambda: bar.update(1))
                    size = os.path.getsize(path + ".tmp")
                    state = {"fingerprint": fingerprints[i], **stats.to_json(),
                             "bytes": size, "sha256": file_sha256(path + ".tmp"),
                             "sources": sources.of(shards[i])}
                    written.file = state_path(output_dir, names[i])
                    write_atomic(written.file, json.dumps(state))
                    publish(path + ".tmp", path)
                    states[i] = state
                    processed += stats.converted
                    written.bytes += size
                    written.videos += len(shards[i])
                    written.videos_left -= len(shards[i])
            read = len(items) + len(rejected)
            split_summaries[split] = merge_split(states, rejected, read, names)
            split_summaries[split]["encoding"] = {
                "short_side": settings.short_side, "jpeg_quality": settings.jpeg_quality,
                "format_version": FORMAT_VERSION}

    failures = [f for s in split_summaries.values() for f in s.pop("_failures")]
    box_problems += [p for s in split_summaries.values() for p in s.pop("_box_problems")]
    for p in box_problems:
        logging.warning("box problem: %s", p["line"])
    # Splits an earlier run converted into this directory stay described (and listed).
    split_summaries.update(earlier)
    split_summaries = {s: split_summaries[s] for s in KNOWN_SPLITS if s in split_summaries}
    failures += earlier_failures
    box_problems += earlier_problems
    elapsed = time.time() - t0
    manifest = {
        "dataset": dataset,
        "input_dir": os.path.abspath(input_dir),
        "num_classes": len(listing.labels),
        "labels_file": LABELS_FILE,
        "failures_file": FAILURES_FILE,
        "schema": records_schema(listing),
        "settings": {"short_side": settings.short_side, "jpeg_quality": settings.jpeg_quality,
                     "workers": workers, "splits": list(splits),
                     "video_dir": listing.notes.get("video_dir"),
                     "validation_fraction": validation_fraction,
                     "format_version": FORMAT_VERSION},
        "splits": split_summaries,
        "boxes": {"files": [os.path.abspath(b) for b in box_files],
                  "categories": box_categories if box_files else None,
                  "videos_with_boxes": sum(s["videos_with_boxes"]
                                           for s in split_summaries.values()),
                  "clipped": sum(s.get("boxes_clipped", 0) for s in split_summaries.values()),
                  "problems": len(box_problems), "problems_file": BOX_PROBLEMS_FILE,
                  "first_problems": [p["line"] for p in box_problems[:BOX_PROBLEMS_SHOWN]],
                  # Listed only when off: manifests of default runs stay as they were.
                  **({"ground_truth_supervision": False} if any(
                      not it.gt_supervision for its in listing.items.values() for it in its)
                     else {})},
        "notes": {k: v for k, v in listing.notes.items() if k != "video_dir"},
        "elapsed_s": round(elapsed, 2),
        "videos_processed_this_run": processed,
        "videos_per_s": round(processed / elapsed, 2) if elapsed > 0 else None,
    }
    for name, text in (
            (FAILURES_FILE, "".join(json.dumps(failure) + "\n" for failure in failures)),
            (BOX_PROBLEMS_FILE, "".join(json.dumps(p) + "\n" for p in box_problems)),
            (MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")):
        written.file = os.path.join(output_dir, name)
        write_atomic(written.file, text)
    written.file = None
    if sum(s["written"] for s in split_summaries.values()) == 0:
        raise ConversionError(
            f"no video could be written from {input_dir} (see "
            f"{os.path.join(output_dir, FAILURES_FILE)})")
    return manifest
