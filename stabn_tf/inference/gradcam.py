"""3D Grad-CAM: per-frame "where" and "when" maps for any of our classifiers.

The comparison method for ST-ABN's own attention (Selvaraju et al.'s Grad-CAM, extended
to a video feature map `A [T, h, w, C]`): the gradient of one class's perception logit
with respect to `A` is averaged over time and space into one weight per channel,
`α_c = mean_{t,y,x} ∂y_class/∂A[t,y,x,c]`; the map is `ReLU(Σ_c α_c A[..., c])`
`[T, h, w]`, one spatial map per frame. A frame's temporal importance is the mean of its
map, so the same computation answers "where" and "when".

By default `A` is the output of the last 3D convolution stage on the prediction path,
`res5` (the last `res5_block{i}_out`): the baseline's final stage, and ST-ABN's
perception-branch res5 (never the attention branch's `att_res5` copy). `layer="res4"`
takes the last res4 block instead (twice the resolution; in ST-ABN that is the feature
map `f` the attention re-weights).
"""

from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np
import tensorflow as tf

from stabn_tf.models.backbone import stage_output_name
from stabn_tf.models.stabn import VideoClassifier
from stabn_tf.outputs import PERCEPTION

STAGES = ("res2", "res3", "res4", "res5")


def resolve_layer(model: VideoClassifier, layer: str | None) -> str:
    """A layer name, or a stage name ("res4", "res5": its last block's output), or None
    (res5, the last stage on the prediction path — never the attention branch's copy)."""
    if layer is None or layer in STAGES:
        return stage_output_name(STAGES.index(layer or "res5"), model.depth)
    if re.fullmatch(r"res\d+", layer):
        raise ValueError(f"no stage {layer!r}; stages: {list(STAGES)}.")
    model.get_layer(layer)  # raises ValueError naming the layer when it does not exist
    return layer


@dataclasses.dataclass
class GradCAMResult:
    """Grad-CAM of a batch of clips.

    maps: `[B, T, h, w]`, each clip's maps divided by that clip's maximum (so frames stay
      comparable; an all-zero map stays zero).
    frame_scores: `[B, T]`, each frame's mean map value divided by the clip's maximum.
    class_indices: `[B]`, the class each map explains.
    layer: the layer whose activations were used.
    """

    maps: np.ndarray
    frame_scores: np.ndarray
    class_indices: np.ndarray
    layer: str


class GradCAM:
    """Grad-CAM for one model and layer; build once, call on many batches.

    `GradCAM(model)(clips)` explains the predicted classes; pass `class_indices` to
    explain given classes (e.g. the true ones).
    """

    def __init__(self, model: VideoClassifier, layer: str | None = None):
        self.layer = resolve_layer(model, layer)
        self._probe = keras.Model(
            model.input,
            [model.get_layer(self.layer).output, model.get_layer(PERCEPTION).output],
            name=f"{model.name}_gradcam")
        self._step = tf.function(self._maps, reduce_retracing=True)

    @property
    def map_shape(self) -> tuple[int, int]:
        """(h, w) of the per-frame maps."""
        return tuple(int(d) for d in self._probe.output[0].shape[2:4])

    def _maps(self, clips, class_indices):
        with tf.GradientTape() as tape:
            # Watching the input records every op, also when no variable lies upstream of
            # the layer (the tape only follows tensors derived from watched ones).
            tape.watch(clips)
            activations, logits = self._probe(clips, training=False)
            logits = tf.cast(logits, tf.float32)
            if class_indices is None:
                class_indices = tf.argmax(logits, axis=-1, output_type=tf.int32)
            target = tf.gather(logits, class_indices, batch_dims=1)
        grads = tf.cast(tape.gradient(target, activations), tf.float32)
        activations = tf.cast(activations, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2, 3))  # α: [B, C]
        cams = tf.nn.relu(tf.einsum("bthwc,bc->bthw", activations, weights))
        return cams, class_indices

    def __call__(self, clips, class_indices=None, batch_size: int = 8) -> GradCAMResult:
        """Clips `[B, T, H, W, 3]` (normalised) → `GradCAMResult`."""
        clips = np.asarray(clips, np.float32)
        maps, classes = [], []
        for start in range(0, len(clips), batch_size):
            batch = tf.constant(clips[start:start + batch_size])
            wanted = None if class_indices is None else tf.constant(
                np.asarray(class_indices, np.int32)[start:start + batch_size])
            cams, chosen = self._step(batch, wanted)
            maps.append(cams.numpy())
            classes.append(chosen.numpy())
        cams = np.concatenate(maps)
        peak = cams.max(axis=(1, 2, 3), keepdims=True)
        cams = np.where(peak > 0, cams / np.where(peak > 0, peak, 1.0), 0.0)
        frames = cams.mean(axis=(2, 3))
        frame_peak = frames.max(axis=1, keepdims=True)
        frames = np.where(frame_peak > 0, frames / np.where(frame_peak > 0, frame_peak, 1.0), 0.0)
        return GradCAMResult(cams.astype(np.float32), frames.astype(np.float32),
                             np.concatenate(classes).astype(np.int64), self.layer)


def grad_cam(model: VideoClassifier, clips, class_indices=None, layer: str | None = None,
             batch_size: int = 8) -> GradCAMResult:
    """One-shot `GradCAM(model, layer)(clips, class_indices, batch_size)`."""
    return GradCAM(model, layer)(clips, class_indices, batch_size)
