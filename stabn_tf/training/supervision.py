"""Attention supervision: losses that tie Ms to boxes and Mt to "action happens" labels.

The targets come from `stabn_tf.data.make_dataset(..., with_boxes=True)`:
`box_mask` `[B, T, h, w]`, `box_frames` `[B, T]`, `active` `[B, T]`, `active_known` `[B]`.
A trainer adds `λ_s · spatial_supervision_loss(targets, ms) + λ_t ·
temporal_supervision_loss(targets, mt)` to the classification losses, and skips the
terms entirely when a λ is 0, so that setting is the unsupervised recipe bit for bit.

Both losses average over the annotated frames (clips) of the batch only, so frames and
clips without annotations contribute exactly 0, and a batch with none gives exactly 0
(and zero gradients): `divide_no_nan(0, 0) = 0`. Under `tf.distribute` each replica
averages its own annotated frames.

Why balanced binary cross-entropy for Ms (and not a KL between the normalised map and
the normalised mask):
- Ms is a sigmoid map that the fusion uses as `(1 + Ms)·f`; what goes wrong without
  supervision is its *absolute* level (the fusion can absorb Ms → 1 − Ms). BCE pins the
  level: Ms → 1 on the box, → 0 elsewhere, so the map reads the same way in every model
  and on a fixed colour scale. A KL between the map and the mask, each normalised to sum
  1, is blind to scale: Ms = 0.001 on the box and 0.00001 elsewhere scores as well as 1
  and 0, yet leaves `(1 + Ms)·f` ≈ f, an attention that changes nothing. It is also
  undefined on a frame with no visible box.
- Balanced: the box cells and the background cells each carry half of a frame's loss
  (weights `m / Σm` and `(1 − m) / Σ(1 − m)`, with the soft mask m). A small object
  covering 1 of 16 cells would otherwise be outvoted by the background and the cheapest
  answer would be "low everywhere". A frame annotated with no visible box (the object
  has not appeared yet, or the crop cut it away) keeps only the background half: nothing
  on it deserves attention.
- Soft masks (cells partly covered by a box) work as they are: per cell the loss is a
  weighted BCE, minimised by Ms equal to the cell's share of the box (up to the balance).

Mt gets plain BCE against the 0/1 active labels: frames with and without the action are
roughly balanced (the synthetic set acts during 45-75 % of the clip).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from stabn_tf.outputs import SPATIAL_ATTENTION, TEMPORAL_ATTENTION

#: Probabilities are clipped to [EPSILON, 1 − EPSILON] before the log: a saturated
#: sigmoid must give a large but finite loss, so 0 · loss stays exactly 0.
EPSILON = 1e-6


def _log_terms(p: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    p = tf.clip_by_value(tf.cast(p, tf.float32), EPSILON, 1.0 - EPSILON)
    return -tf.math.log(p), -tf.math.log(1.0 - p)


def spatial_supervision_loss(targets: dict, ms: tf.Tensor, *, balanced: bool = True
                             ) -> tf.Tensor:
    """Scalar loss between Ms and the box masks, over annotated frames only.

    Args:
      targets: `{"box_mask": [B, T, h, w], "box_frames": [B, T], ...}` (extra keys are
        ignored), as `make_dataset(with_boxes=True)` yields them.
      ms: the spatial attention, `[B, T, h, w, 1]` or `[B, T, h, w]`, in (0, 1).
      balanced: box and background cells each weigh half a frame (see the module doc);
        False: plain per-cell mean BCE.

    Returns:
      float32 scalar: the mean over annotated frames of each frame's (balanced) BCE; 0
      when no frame in the batch is annotated.
    """
    mask = tf.cast(targets["box_mask"], tf.float32)
    frames = tf.cast(targets["box_frames"], tf.float32)
    ms = tf.cast(ms, tf.float32)
    if ms.shape.rank == mask.shape.rank + 1:
        ms = tf.squeeze(ms, axis=-1)
    on, off = _log_terms(ms)
    background = 1.0 - mask
    if balanced:
        per_frame = 0.5 * (
            tf.math.divide_no_nan(tf.reduce_sum(mask * on, axis=[-2, -1]),
                                  tf.reduce_sum(mask, axis=[-2, -1]))
            + tf.math.divide_no_nan(tf.reduce_sum(background * off, axis=[-2, -1]),
                                    tf.reduce_sum(background, axis=[-2, -1])))
    else:
        per_frame = tf.reduce_mean(mask * on + background * off, axis=[-2, -1])
    return tf.math.divide_no_nan(tf.reduce_sum(frames * per_frame), tf.reduce_sum(frames))


def temporal_supervision_loss(targets: dict, mt: tf.Tensor) -> tf.Tensor:
    """Scalar BCE between Mt `[B, T]` and `targets["active"]` `[B, T]`, averaged over the
    frames of clips whose labels are known (`targets["active_known"]`, `[B]`); 0 when no
    clip in the batch has labels."""
    active = tf.cast(targets["active"], tf.float32)
    known = tf.cast(targets["active_known"], tf.float32)
    on, off = _log_terms(mt)
    per_frame = active * on + (1.0 - active) * off
    weights = tf.broadcast_to(tf.reshape(known, [-1] + [1] * (active.shape.rank - 1)),
                              tf.shape(active))
    return tf.math.divide_no_nan(tf.reduce_sum(weights * per_frame), tf.reduce_sum(weights))


def pack_targets(targets: dict) -> dict:
    """The supervision targets as one tensor per model output, the form `model.fit` hands
    a per-output loss: `spatial_attention` `[B, T, h, w, 2]` (box mask, frame annotated)
    and `temporal_attention` `[B, T, 2]` (active, clip labelled)."""
    mask = tf.cast(targets["box_mask"], tf.float32)
    frames = tf.cast(targets["box_frames"], tf.float32)[..., tf.newaxis, tf.newaxis]
    active = tf.cast(targets["active"], tf.float32)
    known = tf.cast(targets["active_known"], tf.float32)[:, tf.newaxis]
    return {SPATIAL_ATTENTION: tf.stack([mask, tf.broadcast_to(frames, tf.shape(mask))], -1),
            TEMPORAL_ATTENTION: tf.stack([active, tf.broadcast_to(known, tf.shape(active))],
                                         -1)}


def _unpack(y_true, keys: tuple[str, str]) -> dict:
    if isinstance(y_true, dict):
        return y_true
    first, second = y_true[..., 0], y_true[..., 1]
    # The second channel repeats one value per frame (spatial) or per clip (temporal).
    second = second[..., 0, 0] if keys[1] == "box_frames" else second[..., 0]
    return {keys[0]: first, keys[1]: second}


@keras.saving.register_keras_serializable(package="stabn_tf")
class SpatialSupervisionLoss(keras.losses.Loss):
    """`spatial_supervision_loss` as a Keras loss: `loss(targets, ms) -> scalar`, where
    `targets` is the dict of `make_dataset(with_boxes=True)` (or any dict holding
    `box_mask` and `box_frames`) or its `pack_targets` tensor. Already a batch mean over
    annotated frames, so `sample_weight` is not supported."""

    def __init__(self, balanced: bool = True, name: str = "spatial_supervision", **kwargs):
        super().__init__(name=name, **kwargs)
        self.balanced = bool(balanced)

    def call(self, y_true, y_pred):
        targets = _unpack(y_true, ("box_mask", "box_frames"))
        return spatial_supervision_loss(targets, y_pred, balanced=self.balanced)

    def get_config(self):
        return {**super().get_config(), "balanced": self.balanced}


@keras.saving.register_keras_serializable(package="stabn_tf")
class TemporalSupervisionLoss(keras.losses.Loss):
    """`temporal_supervision_loss` as a Keras loss: `loss(targets, mt) -> scalar`, with
    `targets` holding `active` and `active_known` (or its `pack_targets` tensor)."""

    def __init__(self, name: str = "temporal_supervision", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return temporal_supervision_loss(_unpack(y_true, ("active", "active_known")), y_pred)
