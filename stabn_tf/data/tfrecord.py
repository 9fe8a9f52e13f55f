"""The TFRecord schema: one `tf.train.SequenceExample` per video, one JPEG per frame.

This module is the single place the feature keys live, so the converter that writes
records and the pipeline that reads them cannot drift apart. The keys follow TF Model
Garden / DMVR video readers (DESIGN.md §4), so records written here can be read by those
tools too; the optional `clip/gt/*` feature lists carry the synthetic dataset's ground
truth for explanation metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

# Context (one value per video).
CLIP_ID = "clip/id"
LABEL_INDEX = "clip/label/index"
LABEL_TEXT = "clip/label/text"
NUM_FRAMES = "clip/num_frames"
FRAME_RATE = "clip/frame_rate"
# Feature lists (one entry per frame, in order).
IMAGE_ENCODED = "image/encoded"
GT_ACTIVE = "clip/gt/active"  # int64: 1 where the action happens in this frame
GT_BOX = "clip/gt/box"  # 4 floats: normalised ymin, xmin, ymax, xmax of the acting object

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
) -> bytes:
    """Serialises one video. `gt_active`/`gt_box`, when given, need one entry per frame."""
    n = len(frames_jpeg)
    if n == 0:
        raise ValueError(f"clip {clip_id!r}: a record needs at least one frame")
    for name, values in (("gt_active", gt_active), ("gt_box", gt_box)):
        if values is not None and len(values) != n:
            raise ValueError(
                f"clip {clip_id!r}: {name} has {len(values)} entries for {n} frames"
            )
    if (gt_active is None) != (gt_box is None):
        raise ValueError(f"clip {clip_id!r}: give both gt_active and gt_box, or neither")

    ex = tf.train.SequenceExample()
    ctx = ex.context.feature
    ctx[CLIP_ID].bytes_list.value.append(clip_id.encode("utf-8"))
    ctx[LABEL_INDEX].int64_list.value.append(int(label_index))
    ctx[LABEL_TEXT].bytes_list.value.append(label_text.encode("utf-8"))
    ctx[NUM_FRAMES].int64_list.value.append(n)
    if frame_rate is not None:
        ctx[FRAME_RATE].float_list.value.append(float(frame_rate))
    lists = ex.feature_lists.feature_list
    images = lists[IMAGE_ENCODED].feature
    for jpeg in frames_jpeg:
        images.add().bytes_list.value.append(jpeg)
    if gt_active is not None and gt_box is not None:
        active = lists[GT_ACTIVE].feature
        for a in gt_active:
            active.add().int64_list.value.append(int(a))
        boxes = lists[GT_BOX].feature
        for box in gt_box:
            if len(box) != 4:
                raise ValueError(f"clip {clip_id!r}: a gt box needs 4 values, got {box!r}")
            boxes.add().float_list.value.extend(float(v) for v in box)
    # deterministic=True sorts the map keys: same input, byte-identical records in any process.
    return ex.SerializeToString(deterministic=True)


def parse_sequence_example(serialized: tf.Tensor, *, with_ground_truth: bool = False) -> dict:
    """Parses one serialized record into a flat dict keyed by the schema keys above.

    `image/encoded` comes back as a `[N]` string tensor (still JPEG): the pipeline decodes
    only the frames it samples. With `with_ground_truth`, `clip/gt/active` is `[N]` int64
    and `clip/gt/box` `[N, 4]` float32.
    """
    context_spec = {
        CLIP_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=NO_LABEL),
    }
    sequence_spec = {IMAGE_ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)}
    if with_ground_truth:
        sequence_spec[GT_ACTIVE] = tf.io.FixedLenSequenceFeature([], tf.int64)
        sequence_spec[GT_BOX] = tf.io.FixedLenSequenceFeature([4], tf.float32)
    context, sequence = tf.io.parse_single_sequence_example(
        serialized, context_features=context_spec, sequence_features=sequence_spec
    )
    return {**context, **sequence}


def has_ground_truth(serialized: bytes) -> bool:
    """True when a serialized record carries the `clip/gt/*` feature lists."""
    ex = tf.train.SequenceExample.FromString(serialized)
    lists = ex.feature_lists.feature_list
    return GT_ACTIVE in lists and GT_BOX in lists
