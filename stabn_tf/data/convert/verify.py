"""`--verify`: read every shard of a converted directory once and list each problem: an
unreadable or malformed record, a shard the manifest lists but that is gone, and records
that do not match the manifest's settings (frame size, JPEG quality, counts)."""

from __future__ import annotations

import collections
import functools
import glob
import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from stabn_tf.data import tfrecord, video
from stabn_tf.data.convert.items import UsageError
from stabn_tf.data.convert.manifest import MANIFEST_FILE
from stabn_tf.data.convert.output_dir import OutputLock

#: Records named per shard for a settings problem (the rest are counted).
SHOWN_PER_SHARD = 3


def verify_output_dir(output_dir: str) -> list[str]:
    """Problems of a converted directory, one line each: every shard read once
    (`tfrecord.verify_tfrecords`), every shard the manifest lists present, and every
    record as the manifest describes it (`settings_problems`).

    Raises:
      UsageError: `output_dir` is not a directory or holds no shards, or a converter is
        writing it.
    """
    if not os.path.isdir(output_dir):
        raise UsageError(f"output_dir {output_dir} is not a directory")
    files = sorted(glob.glob(os.path.join(glob.escape(output_dir), "*.tfrecord")))
    if not files:
        raise UsageError(f"output_dir {output_dir} holds no .tfrecord shards")
    with OutputLock(output_dir) as lock:
        lock.acquire(shared=True)  # not while a converter writes it
        problems = [str(p) for p in tfrecord.verify_tfrecords(files)]
        try:
            with open(os.path.join(output_dir, MANIFEST_FILE), encoding="utf-8") as f:
                manifest = json.load(f)
            listed = [n for s in manifest["splits"].values() for n in s["shards"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            manifest, listed = None, []
        problems += [f"{os.path.join(output_dir, n)}: missing (listed in {MANIFEST_FILE})"
                     for n in listed if not os.path.exists(os.path.join(output_dir, n))]
        if manifest is not None:
            problems += settings_problems(output_dir, manifest)
    return problems


def settings_problems(output_dir: str, manifest: dict) -> list[str]:
    """Records that are not what the manifest says was written: per split, its count of
    records and frames, and per record the frame size (one size per video, the short side
    within the split's `short_side`, within the split's height and width range) and the
    JPEG quality (from the quantisation tables; not for ssv1, whose small frames are
    stored as they came). Unreadable records are `verify_tfrecords`'s to report (and a
    split with one is not counted)."""
    problems: list[str] = []
    top = manifest.get("settings") or {}
    for split, entry in (manifest.get("splits") or {}).items():
        try:
            encoding = entry.get("encoding") or top
            spans = (entry.get("height"), entry.get("width"))
            quality = encoding.get("jpeg_quality") if manifest.get("dataset") != "ssv1" \
                else None
            expected = {"records": entry["written"], "frames": entry["frames"]["total"]}
            shards = list(entry["shards"])
        except (KeyError, TypeError, AttributeError):
            problems.append(f"{MANIFEST_FILE}: the {split} split's entry is malformed")
            continue
        found: collections.Counter = collections.Counter()
        for name in shards:
            path = os.path.join(output_dir, name)
            if os.path.exists(path):
                problems += _shard_problems(path, encoding.get("short_side"), quality, spans,
                                            found)
        for what, n in expected.items():
            if found[what] != n and not found["unreadable_shards"]:
                problems.append(f"{output_dir}: the {split} shards hold {found[what]} {what}, "
                                f"{MANIFEST_FILE} says {n}")
    return problems


def _shard_problems(path: str, short_side: int | None, quality: int | None,
                    spans: tuple, found: collections.Counter) -> list[str]:
    bad: list[str] = []
    try:
        for n, raw in enumerate(tf.data.TFRecordDataset(path)):
            example = tf.train.SequenceExample.FromString(raw.numpy())
            lists = example.feature_lists.feature_list
            frames = [f.bytes_list.value[0] for f in lists[tfrecord.IMAGE_ENCODED].feature
                      if f.bytes_list.value]
            found["records"] += 1
            found["frames"] += len(frames)
            problem = _record_problem(frames, short_side, quality, spans)
            if problem:
                ids = example.context.feature[tfrecord.CLIP_ID].bytes_list.value
                clip = ids[0].decode(errors="replace") if ids else "?"
                bad.append(f"{path}: record {n} (clip {clip}): {problem}")
    except tf.errors.OpError:
        found["unreadable_shards"] += 1  # reported by verify_tfrecords
    more = len(bad) - SHOWN_PER_SHARD
    return bad[:SHOWN_PER_SHARD] + ([f"{path}: ... and {more} more records like these"]
                                    if more > 0 else [])


def _record_problem(frames: list[bytes], short_side: int | None, quality: int | None,
                    spans: tuple) -> str | None:
    sizes = set()
    for j, data in enumerate(frames):
        try:
            img = Image.open(io.BytesIO(data))
        except (OSError, ValueError) as e:
            return f"frame {j} is not a readable JPEG ({video.image_reason(e)})"
        sizes.add((img.height, img.width))
        if j == 0 and quality is not None and _tables(img) != _quality_tables(quality):
            return (f"JPEG quality {_guess_quality(_tables(img))}, {MANIFEST_FILE} says "
                    f"{quality}")
    if len(sizes) > 1:
        return f"frames of {len(sizes)} sizes ({', '.join(f'{h}×{w}' for h, w in sorted(sizes))})"
    (h, w), = sizes or {(0, 0)}
    if short_side and min(h, w) > short_side:
        return f"frames {h}×{w}, larger than the short side {short_side} it was written at"
    for (lo_hi, value, what) in ((spans[0], h, "height"), (spans[1], w, "width")):
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            return (f"frame {what} {value}, outside the {lo_hi[0]}..{lo_hi[1]} "
                    f"{MANIFEST_FILE} records")
    return None


def _tables(img: Image.Image) -> tuple:
    return tuple(tuple(t) for _, t in sorted(getattr(img, "quantization", {}).items()))


@functools.cache
def _quality_tables(quality: int) -> tuple:
    """The quantisation tables the converter's encoder writes at `quality`."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="JPEG", quality=quality)
    return _tables(Image.open(io.BytesIO(buf.getvalue())))


def _guess_quality(tables: tuple) -> str:
    for q in range(1, 101):
        if _quality_tables(q) == tables:
            return str(q)
    return "unknown (not this encoder's tables)"
