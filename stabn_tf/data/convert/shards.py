"""Sharding and resume: which video goes in which shard, the per-shard records in
`.shards/` that let a re-run keep what is still valid, and the shard writer."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence

import tensorflow as tf
from absl import logging

from stabn_tf.data import video
from stabn_tf.data.convert import encode
from stabn_tf.data.convert.encode import FRAME_EXTENSIONS, convert_task
from stabn_tf.data.convert.items import KNOWN_SPLITS, EncodeSettings, VideoItem

#: Auto shard count: about this many videos per shard (~100-200 MB of SSv2 at 256 px)...
VIDEOS_PER_SHARD = 256
#: ...but at least this many shards (when there are enough videos), so up to 8 workers
#: can shard by file.
MIN_SHARDS = 8
STATE_DIR = ".shards"
#: Bump when the bytes written for the same input change, so old shards are rewritten.
#: (Boxes from `--boxes` did not need a bump: they enter the input key of just the videos
#: that have them; a video without boxes keeps its key and its bytes.)
FORMAT_VERSION = 1


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


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _stat_stamp(item: VideoItem) -> str:
    """A digest of what `stat` says of a video file (each frame, for a frame folder): size,
    modification and change time, inode. `cp -p` keeps a replaced file's size and mtime,
    not its change time or inode; a moved dataset changes them all (then the content is
    read again, and found unchanged)."""
    if item.kind == "frames":
        with os.scandir(item.source) as entries:
            stats = sorted([e.name, *_stat_fields(e.stat())] for e in entries
                           if e.name.lower().endswith(FRAME_EXTENSIONS))
    else:
        stats = _stat_fields(os.stat(item.source))
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:32]


def _stat_fields(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _content_digest(item: VideoItem) -> str:
    if item.kind != "frames":
        return file_sha256(item.source)
    names = sorted(n for n in os.listdir(item.source) if n.lower().endswith(FRAME_EXTENSIONS))
    return hashlib.sha256(json.dumps(
        [[n, file_sha256(os.path.join(item.source, n))] for n in names]).encode()).hexdigest()


class SourceFingerprints:
    """Content fingerprints (SHA-256) of the source videos, so a video replaced by another
    of the same size and modification time is converted again.

    Reading every video on every re-run would cost as much as reading the dataset, so each
    fingerprint is kept in its shard's record with the video's `stat` stamp, and a source
    is read again only when its stamp changed (new, edited, replaced, copied, moved).
    """

    def __init__(self, output_dir: str):
        self._known: dict[str, list[str]] = {}  # source → [stat stamp, digest], last run
        self._now: dict[str, list[str]] = {}
        for path in glob.glob(os.path.join(glob.escape(output_dir), STATE_DIR,
                                           "*.tfrecord.json")):
            try:
                with open(path, encoding="utf-8") as f:
                    sources = json.load(f).get("sources", {})
                self._known.update((k, v) for k, v in sources.items()
                                   if isinstance(v, list) and len(v) == 2)
            except (OSError, ValueError, AttributeError):
                continue

    def __call__(self, item: VideoItem) -> str:
        """The content digest of `item`'s source, or why it cannot be read."""
        try:
            stamp = _stat_stamp(item)
            known = self._known.get(item.source)
            digest = known[1] if known and known[0] == stamp else _content_digest(item)
        except OSError as e:
            return type(e).__name__
        self._now[item.source] = [stamp, digest]
        return digest

    def of(self, items: Sequence[VideoItem]) -> dict[str, list[str]]:
        """{source: [stamp, digest]} of `items`, for their shard's record."""
        return {it.source: self._now[it.source] for it in items if it.source in self._now}


def input_key(item: VideoItem, settings: EncodeSettings, content: str) -> str:
    """Everything the bytes of one video's record depend on: the format, the settings, the
    annotation (id, label, ground truth), its boxes and the source's `content` digest
    (`SourceFingerprints`).

    The boxes enter with the name (not the folder) of their file, as their problem lines
    do; a video without boxes has no `boxes` entry, so its key is what it was before
    boxes existed and adding a box file re-converts only the videos it lists.
    """
    annotation = dataclasses.asdict(dataclasses.replace(item, boxes=None))
    del annotation["boxes"]
    if item.gt_supervision:  # the default leaves the key as it was before the option
        del annotation["gt_supervision"]
    if item.boxes is not None:
        annotation["boxes"] = {**item.boxes.fields(),
                               "source": os.path.basename(item.boxes.source)}
        if item.boxes.active is None:  # likewise for box files without active_frames
            del annotation["boxes"]["active"]
    return hashlib.sha256(json.dumps(
        [FORMAT_VERSION, dataclasses.asdict(settings), annotation, content],
        sort_keys=True).encode()).hexdigest()


def shard_fingerprint(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def state_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, STATE_DIR, name + ".json")


def intact_state(output_dir: str, name: str) -> dict | None:
    """The record an earlier run left of shard `name` when the shard is still exactly what
    it wrote (same size and SHA-256); None when there is none, or the shard is missing,
    changed, corrupt or truncated (even at the same size): then it is rewritten."""
    path = os.path.join(output_dir, name)
    try:
        with open(state_path(output_dir, name), encoding="utf-8") as f:
            state = json.load(f)
        if not isinstance(state, dict):
            return None
        size = os.path.getsize(path)
        if state.get("bytes") == size and state.get("sha256") == file_sha256(path):
            return state
    except (OSError, ValueError):
        return None
    why = ("other size" if state.get("bytes") != size else "other contents"
           if "sha256" in state else "recorded before shards had checksums")
    logging.warning("%s is not the shard the converter wrote (%s): rewriting it", path, why)
    return None


def previous_videos(state: dict | None) -> dict[str, dict]:
    """{input key: result without data} of an intact earlier shard (`intact_state`), so
    that a shard with a few changed inputs only redoes those."""
    try:
        return {key: result for key, result in (state or {}).get("videos", [])}
    except (TypeError, ValueError):
        return {}


def reusable_records(output_dir: str, name: str, previous: dict[str, dict],
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


#: What a `duration` note on a written video means (a warning, and the summary).
DURATION_NOTES = {
    video.SHORTER_THAN_HEADER: "ends before the duration its container declares: written "
                               "with the frames that decode",
    video.NO_DURATION: "its container declares no duration (a cut-off file cannot be told): "
                       "written with the frames that decode",
}


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
        self.box_clipped = 0  # their boxes that overshot the frame a little, clipped
        self.durations: collections.Counter = collections.Counter()  # video.NO_DURATION...
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
            self.box_clipped += result.get("box_clipped", 0)
            if "duration" in result:
                self.durations[result["duration"]] += 1
                detail = f" ({result['duration_detail']})" if "duration_detail" in result else ""
                logging.warning("%s %s (%s): %s%s", item.split, item.clip_id, item.source,
                                DURATION_NOTES[result["duration"]], detail)
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
                "box_clipped": self.box_clipped,
                "box_problems": self.box_problems, "durations": dict(self.durations)}


def write_shard(path: str, items: Sequence[VideoItem], keys: Sequence[str],
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
                result = encode.convert_item(item, settings)
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


SHARD_FILE = re.compile(rf"({'|'.join(KNOWN_SPLITS)})-\d{{5}}-of-\d{{5}}\.tfrecord(\.tmp)?")


def remove_stale_shards(output_dir: str, split: str, keep: set[str]) -> None:
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
                os.remove(state_path(output_dir, base))


def convert_all(pool, tasks: Iterable[tuple[VideoItem, EncodeSettings]]) -> Iterator[dict]:
    if pool is None:
        return map(convert_task, tasks)
    return pool.imap(convert_task, tasks, chunksize=2)
