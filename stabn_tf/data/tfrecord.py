"""The TFRecord schema: one `tf.train.SequenceExample` per video, one JPEG per frame.

This module is the single place the feature keys live, so the converter that writes
records and the pipeline that reads them cannot drift apart. The keys follow TF Model
Garden / DMVR video readers, so records written here can be read by those
tools too; the optional `clip/gt/*` feature lists carry the synthetic dataset's ground
truth for explanation metrics.

Boxes (optional; only in records of videos whose boxes are known) are five feature lists
with one entry per frame, each entry holding as many values as the frame has boxes
(0, 1 or several), in the same order in all five:

- `clip/box/ymin`, `clip/box/xmin`, `clip/box/ymax`, `clip/box/xmax`: floats, normalised
  to the full stored frame (0..1; resizing the frames keeps them valid);
- `clip/box/role`: bytes, `object` or `hand`;
- `clip/box/annotated`: one int64: 1 where the frame's boxes are known (a frame may be
  annotated with no box: nothing to look at), 0 where nobody annotated it.

The synthetic set's acting object is stored this way (role `object`, every frame
annotated); `clip/gt/box` is written only when other boxes replace it (a person's boxes
on a synthetic clip) and still read from older records, and
`parse_sequence_example(with_ground_truth=True)` derives it from the boxes otherwise
(the first `object` box of each frame), so readers see one layout.

When the action happens, as supervision labels for Mt: `clip/active` (int64 per frame,
1 where the action happens), written only for videos whose box file gives
`active_frames`. Without it, the synthetic set's `clip/gt/active` supervises Mt as well,
unless the context's `clip/gt/supervision` is 0: the converter's
`ground_truth_supervision=False` keeps the synthetic ground truth (`clip/gt/active` and
`clip/gt/box`, no `clip/box/*`) for the explanation metrics only, so that only the box
files supervise. Ground truth and supervision stay apart: the metrics always read
`clip/gt/*`, never a person's labels.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

import tensorflow as tf

from stabn_tf.errors import StabnError

# Context (one value per video).
CLIP_ID = "clip/id"
LABEL_INDEX = "clip/label/index"
LABEL_TEXT = "clip/label/text"
NUM_FRAMES = "clip/num_frames"
FRAME_RATE = "clip/frame_rate"
GT_SUPERVISION = "clip/gt/supervision"  # int64 0: clip/gt/* are for the metrics only
# Feature lists (one entry per frame, in order).
IMAGE_ENCODED = "image/encoded"
GT_ACTIVE = "clip/gt/active"  # int64: 1 where the action happens in this frame
GT_BOX = "clip/gt/box"  # 4 floats: normalised ymin, xmin, ymax, xmax of the acting object
BOX_YMIN = "clip/box/ymin"  # per frame: one float per box (normalised)
BOX_XMIN = "clip/box/xmin"
BOX_YMAX = "clip/box/ymax"
BOX_XMAX = "clip/box/xmax"
BOX_COORDS = (BOX_YMIN, BOX_XMIN, BOX_YMAX, BOX_XMAX)
BOX_ROLE = "clip/box/role"  # per frame: one bytes value per box, b"object" or b"hand"
BOX_ANNOTATED = "clip/box/annotated"  # per frame: int64 1 where the boxes are known
ACTIVE = "clip/active"  # per frame: int64 1 where the action happens (a box file's labels)

#: Label index stored for unlabelled videos (e.g. the SSv2 test split).
NO_LABEL = -1


def make_sequence_example(
    clip_id: str,
    label_index: int,
    label_text: str,
    frames_jpeg: Sequence[bytes],
    *,
    frame_rate: float | None = None,
    gt_active: Sequence[int] | None = None,
    gt_box: Sequence[Sequence[float]] | None = None,
    boxes: Sequence[Sequence[tuple[Sequence[float], str]]] | None = None,
    box_annotated: Sequence[int] | None = None,
    active: Sequence[int] | None = None,
    ground_truth_supervision: bool = True,
) -> bytes:
    """Serialises one video. `gt_active`/`gt_box`, when given, need one entry per frame
    (`gt_box` only with `gt_active`; `gt_active` alone is fine).

    `boxes`: per frame, a list of `((ymin, xmin, ymax, xmax) normalised, role)`, with
    `box_annotated` (0/1 per frame; default: all 1). `gt_box` (one box per frame, all
    zeros where not visible) is stored as role-`object` boxes on every frame; when `boxes`
    are also given (e.g. a person's boxes on a synthetic clip), they are the boxes and
    `gt_box` is kept as `clip/gt/box`, so the ground truth the metrics read is unchanged.

    `active`: 0/1 per frame, the supervision labels of when the action happens (a box
    file's `active_frames`), stored as `clip/active` beside any `gt_active`.
    `ground_truth_supervision` False: `gt_box` is stored as `clip/gt/box` only (no boxes
    derived from it) and the record says that `clip/gt/*` must not supervise.
    """
    n = len(frames_jpeg)
    if n == 0:
        raise ValueError(f"clip {clip_id!r}: a record needs at least one frame")
    for name, values in (("gt_active", gt_active), ("gt_box", gt_box), ("active", active)):
        if values is not None and len(values) != n:
            raise ValueError(
                f"clip {clip_id!r}: {name} has {len(values)} entries for {n} frames"
            )
    if gt_box is not None and gt_active is None:
        raise ValueError(f"clip {clip_id!r}: gt_box comes with gt_active")
    for box in gt_box or ():
        if len(box) != 4:
            raise ValueError(f"clip {clip_id!r}: a gt box needs 4 values, got {box!r}")
    keep_gt_box = gt_box is not None and (boxes is not None or not ground_truth_supervision)
    if boxes is None and gt_box is not None and ground_truth_supervision:
        visible = [box[2] > box[0] and box[3] > box[1] for box in gt_box]
        boxes = [[(box, "object")] if v else [] for box, v in zip(gt_box, visible)]
    if boxes is not None:
        if box_annotated is None:
            box_annotated = [1] * len(boxes)
        for name, values in (("boxes", boxes), ("box_annotated", box_annotated)):
            if len(values) != n:
                raise ValueError(
                    f"clip {clip_id!r}: {name} has {len(values)} entries for {n} frames")

    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    ctx[CLIP_ID].bytes_list.value.append(clip_id.encode("utf-8"))
    ctx[LABEL_INDEX].int64_list.value.append(int(label_index))
    ctx[LABEL_TEXT].bytes_list.value.append(label_text.encode("utf-8"))
    ctx[NUM_FRAMES].int64_list.value.append(n)
    if frame_rate is not None:
        ctx[FRAME_RATE].float_list.value.append(float(frame_rate))
    if not ground_truth_supervision and gt_active is not None:
        ctx[GT_SUPERVISION].int64_list.value.append(0)
    lists = ex.feature_lists.feature_list
    images = lists[IMAGE_ENCODED].feature
    for jpeg in frames_jpeg:
        images.add().bytes_list.value.append(jpeg)
    if gt_active is not None:
        truth = lists[GT_ACTIVE].feature
        for a in gt_active:
            truth.add().int64_list.value.append(int(a))
    if active is not None:
        labels = lists[ACTIVE].feature
        for a in active:
            labels.add().int64_list.value.append(int(a))
    if keep_gt_box:
        gt = lists[GT_BOX].feature
        for box in gt_box:
            gt.add().float_list.value.extend(float(v) for v in box)
    if boxes is not None:
        coords = [lists[key].feature for key in BOX_COORDS]
        roles = lists[BOX_ROLE].feature
        for frame in boxes:
            # SetInParent: a frame with no box still gets a (empty) list of the right type.
            values = [c.add().float_list for c in coords]
            for v in values:
                v.SetInParent()
            role_values = roles.add().bytes_list
            role_values.SetInParent()
            for box, role in frame:
                if len(box) != 4:
                    raise ValueError(f"clip {clip_id!r}: a box needs 4 values, got {box!r}")
                if role not in ("object", "hand"):
                    raise ValueError(f"clip {clip_id!r}: unknown box role {role!r}")
                for value, v in zip(values, box):
                    value.value.append(float(v))
                role_values.value.append(role.encode("utf-8"))
        annotated = lists[BOX_ANNOTATED].feature
        for a in box_annotated:
            annotated.add().int64_list.value.append(int(a))
    # deterministic=True sorts the map keys: same input, byte-identical records in any process.
    return ex.SerializeToString(deterministic=True)


def parse_sequence_example(serialized: tf.Tensor, *, with_ground_truth: bool = False,
                           with_boxes: bool = False) -> dict:
    """Parses one serialized record into a flat dict keyed by the schema keys above.

    `image/encoded` comes back as a `[N]` string tensor (still JPEG): the pipeline decodes
    only the frames it samples. With `with_ground_truth`, `clip/gt/active` is `[N]` int64
    and `clip/gt/box` `[N, 4]` float32 (read, or derived from the boxes).

    With `with_boxes`, the `clip/box/*` coordinates and roles come back as ragged
    `[N, None]` tensors, `clip/box/annotated`, `clip/active` and `clip/gt/active` as `[N]`
    int64 and `clip/gt/supervision` as a scalar int64 (1 unless the record says 0); in a
    record without them each list has 0 rows (nothing known), never an error.
    """
    context_spec = {
        CLIP_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=NO_LABEL),
    }
    sequence_spec = {IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)}
    if with_ground_truth:
        sequence_spec[GT_ACTIVE] = tf.io.FixedLenSequenceFeature([], tf.int64)
        sequence_spec[GT_BOX] = tf.io.FixedLenSequenceFeature([4], tf.float32,
                                                              allow_missing=True)
    if with_boxes:
        sequence_spec[GT_ACTIVE] = tf.io.FixedLenSequenceFeature([], tf.int64,
                                                                 allow_missing=True)
        sequence_spec[BOX_ANNOTATED] = tf.io.FixedLenSequenceFeature([], tf.int64,
                                                                     allow_missing=True)
        sequence_spec[ACTIVE] = tf.io.FixedLenSequenceFeature([], tf.int64,
                                                              allow_missing=True)
        context_spec[GT_SUPERVISION] = tf.io.FixedLenFeature([], tf.int64, default_value=1)
    if with_boxes or with_ground_truth:
        for key in BOX_COORDS:
            sequence_spec[key] = tf.io.RaggedFeature(tf.float32)
        sequence_spec[BOX_ROLE] = tf.io.RaggedFeature(tf.string)
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    parsed = {**context, **sequence}
    if with_ground_truth:
        stored = parsed[GT_BOX]
        derived = _first_object_box(parsed, tf.shape(parsed[IMAGE_ENCODED])[0])
        parsed[GT_BOX] = tf.cond(tf.shape(stored)[0] > 0, lambda: stored, lambda: derived)
        if not with_boxes:
            for key in (*BOX_COORDS, BOX_ROLE):
                del parsed[key]
    return parsed


def box_values(parsed: dict, num_frames) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`(boxes [M, 4], roles [M], boxes per frame [num_frames])` of a parsed record; a
    record without boxes gives M = 0 and zero counts."""
    boxes = tf.stack([parsed[key].flat_values for key in BOX_COORDS], axis=-1)
    counts = tf.cast(parsed[BOX_YMIN].row_lengths(), tf.int32)
    counts = tf.concat([counts, tf.zeros([num_frames - tf.size(counts)], tf.int32)], 0)
    return boxes, parsed[BOX_ROLE].flat_values, counts


def _first_object_box(parsed: dict, num_frames) -> tf.Tensor:
    """`[num_frames, 4]`: each frame's first `object` box, all zeros where it has none."""
    boxes, roles, counts = box_values(parsed, num_frames)
    total = tf.shape(boxes)[0]
    rows = tf.repeat(tf.range(num_frames), counts)
    candidates = tf.where(tf.equal(roles, b"object"), tf.range(total), total)
    first = tf.math.unsorted_segment_min(candidates, rows, num_frames)  # empty: int max
    padded = tf.concat([boxes, tf.zeros([1, 4])], axis=0)
    return tf.gather(padded, tf.minimum(first, total))


def has_ground_truth(serialized: bytes) -> bool:
    """True when a serialized record carries the synthetic ground truth: `clip/gt/active`
    and the acting object's box (`clip/gt/box`, or the `clip/box/*` lists)."""
    ex = tf.train.SequenceExample.FromString(serialized)
    lists = ex.feature_lists.feature_list
    return GT_ACTIVE in lists and (GT_BOX in lists or BOX_YMIN in lists)


# --- checking shards ---------------------------------------------------------------------

#: Where the converter keeps its per-shard records (`<dir>/.shards/<shard>.json`).
_SHARD_STATE_DIR = ".shards"


class CorruptShardError(ValueError, StabnError):
    """A TFRecord shard (or one of its records) cannot be read.

    The message is one line naming the file and, where known, the record (its 0-based
    index, as `tf.data.TFRecordDataset(path).skip(record)` reaches it): a 39-line
    DataLossError from deep inside tf.data does not say which of hundreds of shards is bad.
    """

    def __init__(self, path: str | os.PathLike, reason: str, record: int | None = None):
        self.path = os.fspath(path)
        self.record = record
        self.reason = reason
        where = self.path if record is None else f"{self.path}: record {record}"
        super().__init__(f"{where}: {reason}")


def _read_error(path: str, error: tf.errors.OpError, record: int) -> CorruptShardError:
    message = error.message.splitlines()[0] if error.message else type(error).__name__
    found = re.search(r"(corrupted|truncated) record at (\d+)", message)
    if found and found.group(1) == "corrupted":
        reason = (f"corrupted record at byte {found.group(2)} (checksum mismatch: the file "
                  "changed after it was written)")
    elif found:
        reason = (f"truncated at byte {found.group(2)} (the file ends inside a record: an "
                  "interrupted copy or write?)")
    elif isinstance(error, (tf.errors.NotFoundError, tf.errors.PermissionDeniedError)):
        return CorruptShardError(path, f"cannot read: {re.sub(r'{{.*?}}', '', message)}")
    else:
        reason = f"unreadable ({type(error).__name__}: {re.sub(r'{{.*?}}', '', message)})"
    return CorruptShardError(path, reason, record)


def count_records(path: str | os.PathLike) -> int:
    """Number of records in one shard, reading it through (every checksum is checked).

    Raises:
      CorruptShardError: the shard is unreadable, corrupted or truncated (names it).
    """
    path = os.fspath(path)
    n = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            n += 1
    except tf.errors.OpError as e:
        raise _read_error(path, e, n) from None
    return n


def _record_problem(raw: bytes) -> str | None:
    """Why one record is not a video of this schema, or None."""
    try:
        ex = tf.train.SequenceExample.FromString(raw)
    except Exception as e:  # noqa: BLE001 - protobuf raises its own DecodeError
        return f"not a tf.train.SequenceExample ({type(e).__name__})"
    ctx = ex.context.feature
    for key in (CLIP_ID, LABEL_INDEX):
        if key not in ctx:
            return f"no {key!r} feature"
    lists = ex.feature_lists.feature_list
    frames = lists[IMAGE_ENCODED].feature if IMAGE_ENCODED in lists else []
    if not frames:
        return f"no frames ({IMAGE_ENCODED!r} is empty)"
    if NUM_FRAMES in ctx and list(ctx[NUM_FRAMES].int64_list.value) != [len(frames)]:
        return (f"{NUM_FRAMES!r} says {list(ctx[NUM_FRAMES].int64_list.value)}, the record "
                f"holds {len(frames)} frames")
    for j, frame in enumerate(frames):
        values = frame.bytes_list.value
        if len(values) != 1 or not values[0].startswith(b"\xff\xd8"):
            return f"frame {j} is not a JPEG image"
    for key in lists:  # per-frame lists (ground truth, boxes): one entry per frame
        if len(lists[key].feature) != len(frames):
            return f"{key!r} has {len(lists[key].feature)} entries for {len(frames)} frames"
    return None


def verify_tfrecords(files: str | os.PathLike | Sequence[str | os.PathLike]
                     ) -> list[CorruptShardError]:
    """Reads every record of every shard once; returns the problems found (empty: all good).

    Checks each record's checksums, that it parses as a video of this schema (id, label,
    at least one frame, every frame a JPEG, per-frame lists as long as the frames), and,
    where the converter left its record of the shard (`.shards/<name>.json`, same size),
    that the shard holds as many records as it wrote. A shard stops being read at its
    first unreadable record (the rest cannot be located), so there is at most one read
    problem per shard. Nothing is decoded beyond the protobuf: about as fast as reading
    the files. Use it as a pre-flight before a long run, or through
    `python -m stabn_tf.data.convert --verify --output_dir=DIR`.

    Args:
      files: shard paths (not globs; see `stabn_tf.data.list_files`).

    Returns:
      One `CorruptShardError` per problem, in file order; `str()` of each is one line
      naming the file and record, and `.path`, `.record` (0-based or None), `.reason`
      say the same in parts. Raise one, or print them all.
    """
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    problems: list[CorruptShardError] = []
    for path in map(os.fspath, files):
        n = 0
        try:
            for raw in tf.data.TFRecordDataset(path):
                problem = _record_problem(raw.numpy())
                if problem:
                    problems.append(CorruptShardError(path, problem, n))
                n += 1
        except tf.errors.OpError as e:
            problems.append(_read_error(path, e, n))
            continue
        state = os.path.join(os.path.dirname(path), _SHARD_STATE_DIR,
                             os.path.basename(path) + ".json")
        try:
            with open(state, encoding="utf-8") as f:
                info = json.load(f)
            written = int(info["written"]) if info.get("bytes") == os.path.getsize(path) \
                else None
        except (OSError, ValueError, KeyError, TypeError):
            written = None
        if written is not None and written != n:
            problems.append(CorruptShardError(
                path, f"holds {n} records, the converter wrote {written} "
                f"({os.path.relpath(state, os.path.dirname(path))})"))
    return problems
