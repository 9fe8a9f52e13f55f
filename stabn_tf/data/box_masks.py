"""Boxes as supervision targets, in TensorFlow (used by the input pipeline).

`rasterize_boxes` turns normalised boxes into the soft mask the spatial supervision loss
compares with Ms, and `in_supervised_subset` picks the stable subset of videos whose boxes
are used (`supervised_fraction`). Kept apart from `boxes` (the box files), which must not
import TensorFlow: box files are read in small worker processes.
"""

from __future__ import annotations

import tensorflow as tf


def mask_size(image_size: int) -> int:
    """Side of the attention map for `image_size` input: the backbone halves it 4 times,
    rounding up (padded strided convs)."""
    return -(-int(image_size) // 16)


def _axis_coverage(lo, hi, valid, cells: int):
    """Elementary intervals of one axis: for `[F, K]` box edges, the sorted cut points of
    cell borders and box edges give intervals `[F, J]` that lie in one cell each and are
    either inside or outside each box. Returns (length [F, J], cell one-hot [F, J, cells],
    inside [F, K, J])."""
    frames = tf.shape(lo)[0]
    borders = tf.broadcast_to(tf.linspace(0.0, 1.0, cells + 1)[tf.newaxis], [frames, cells + 1])
    cuts = tf.sort(tf.concat([borders, tf.clip_by_value(lo, 0.0, 1.0),
                              tf.clip_by_value(hi, 0.0, 1.0)], axis=1), axis=1)
    start, end = cuts[:, :-1], cuts[:, 1:]
    mid = (start + end) / 2
    cell = tf.clip_by_value(tf.cast(tf.floor(mid * cells), tf.int32), 0, cells - 1)
    inside = ((lo[:, :, tf.newaxis] <= mid[:, tf.newaxis]) &
              (mid[:, tf.newaxis] < hi[:, :, tf.newaxis]) & valid[:, :, tf.newaxis])
    return end - start, tf.one_hot(cell, cells), tf.cast(inside, tf.float32)


def rasterize_boxes(boxes, height: int, width: int | None = None) -> tf.Tensor:
    """Normalised boxes `[..., K, 4]` (ymin, xmin, ymax, xmax) → masks `[..., height, width]`.

    Each cell gets the fraction of its area covered by the UNION of the boxes: exactly 1
    inside, the covered share at borders (a cell half covered gets 0.5), and overlapping
    boxes never count twice, so the mask stays within [0, 1]. Zero-area boxes (padding,
    "not visible") cover nothing; K may be 0.

    The union is exact: along each axis the cell borders and box edges cut [0, 1] into
    intervals lying in one cell and wholly inside or outside each box, so the covered area
    of a cell is a sum of interval-length products.
    """
    width = height if width is None else width
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    shape = tf.shape(boxes)
    flat = tf.reshape(boxes, [-1, shape[-2], 4])
    ymin, xmin, ymax, xmax = tf.unstack(flat, axis=-1)
    valid = (ymax > ymin) & (xmax > xmin)
    len_y, cell_y, in_y = _axis_coverage(ymin, ymax, valid, height)
    len_x, cell_x, in_x = _axis_coverage(xmin, xmax, valid, width)
    covered = tf.cast(tf.einsum("fkj,fki->fji", in_y, in_x) > 0, tf.float32)
    area = covered * len_y[:, :, tf.newaxis] * len_x[:, tf.newaxis, :]
    mask = tf.einsum("fja,fji,fib->fab", cell_y, area, cell_x) * float(height * width)
    mask = tf.clip_by_value(mask, 0.0, 1.0)  # float rounding only
    return tf.reshape(mask, tf.concat([shape[:-2], [height, width]], 0))


def in_supervised_subset(clip_id, fraction: float, seed: int = 0) -> tf.Tensor:
    """Whether a video's boxes are used at `supervised_fraction = fraction`.

    A hash of (seed, clip id) decides (TF's FarmHash fingerprint: the same in every
    process, epoch and machine), so the subset is fixed for a seed and grows with the
    fraction: the 10 % subset is inside the 50 % one. About `fraction` of the videos
    are kept. Works on one id or a tensor of ids.
    """
    clip_id = tf.convert_to_tensor(clip_id, tf.string)
    if fraction >= 1:
        return tf.ones_like(clip_id, tf.bool) if clip_id.shape.rank else tf.constant(True)
    buckets = 1 << 30
    key = tf.strings.join([tf.constant(f"{int(seed)}:"), clip_id])
    bucket = tf.strings.to_hash_bucket_fast(key, buckets)
    return tf.cast(bucket, tf.float64) < float(fraction) * buckets
