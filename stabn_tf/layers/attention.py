"""ST-ABN's attention: where (spatial), when (temporal), and how they re-weight features.

The maps come out in float32 under mixed precision: they are explanations that
people read and threshold, and sigmoids saturate badly in float16.
"""

from __future__ import annotations

import keras
from keras import ops

from stabn_tf.layers.conv import Conv3DAs2D
from stabn_tf.layers.norm import batch_norm

INVERSIONS = ("none", "spatial", "temporal", "both")


class _ClassMapAttention(keras.layers.Layer):
    """Shared by both attentions: K class maps in, a float32 sigmoid attention out."""

    def __init__(self, synchronized_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.synchronized_bn = synchronized_bn
        self.bn = batch_norm("bn", synchronized=synchronized_bn, dtype=self.dtype_policy)
        self.input_spec = keras.layers.InputSpec(ndim=5)

    def compute_output_spec(self, class_maps, training=None):
        # The default would use the compute dtype (float16 under mixed precision).
        return keras.KerasTensor(self.compute_output_shape(class_maps.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(synchronized_bn=self.synchronized_bn)
        return config


@keras.saving.register_keras_serializable(package="stabn_tf")
class SpatialAttention(_ClassMapAttention):
    """One sigmoid map per frame from the K class maps: 1×1×1 conv K→1, BN, sigmoid.

    Shapes: `[B, T, H, W, K] -> [B, T, H, W, 1]` (float32).
    """

    def __init__(self, synchronized_bn: bool = False, **kwargs):
        super().__init__(synchronized_bn, **kwargs)
        self.conv = Conv3DAs2D(1, 1, name="conv", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build((*input_shape[:-1], 1))

    def call(self, class_maps, training=None):
        x = self.bn(self.conv(class_maps), training=training)
        return ops.sigmoid(ops.cast(x, "float32"))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)


@keras.saving.register_keras_serializable(package="stabn_tf")
class TemporalAttention(_ClassMapAttention):
    """One sigmoid weight per frame from the K class maps.

    3×3×3 conv K→1, BN, ReLU; the T frames then become channels `[B, H, W, T]`:
    1×1 conv T→T (no bias, as in the reference), ReLU, global average pool, dense T→T,
    ReLU, dense T→T, sigmoid. The frames-as-channels step fixes T when the layer is built.

    `frame_mix_bias=True` gives that 1×1 conv a bias: the layer as it was before the
    bias was removed. A saved config without the key comes from then, so `from_config`
    rebuilds it biased and old `.keras` files load with their weights.

    Shapes: `[B, T, H, W, K] -> [B, T]` (float32).
    """

    def __init__(self, synchronized_bn: bool = False, frame_mix_bias: bool = False, **kwargs):
        super().__init__(synchronized_bn, **kwargs)
        self.frame_mix_bias = bool(frame_mix_bias)
        self.conv = Conv3DAs2D(1, 3, name="conv", dtype=self.dtype_policy)

    def build(self, input_shape):
        num_frames = input_shape[1]
        if num_frames is None:
            raise ValueError(f"{self.name}: the number of frames must be fixed when building.")
        policy = self.dtype_policy
        self.num_frames = num_frames
        self.frame_mix = keras.layers.Conv2D(num_frames, 1, use_bias=self.frame_mix_bias,
                                             name="frame_mix", dtype=policy)
        self.dense1 = keras.layers.Dense(num_frames, name="dense1", dtype=policy)
        self.dense2 = keras.layers.Dense(num_frames, name="dense2", dtype=policy)
        self.conv.build(input_shape)
        self.bn.build((*input_shape[:-1], 1))
        self.frame_mix.build((input_shape[0], input_shape[2], input_shape[3], num_frames))
        self.dense1.build((input_shape[0], num_frames))
        self.dense2.build((input_shape[0], num_frames))
        self.input_spec = keras.layers.InputSpec(ndim=5, axes={1: num_frames})

    def call(self, class_maps, training=None):
        x = ops.relu(self.bn(self.conv(class_maps), training=training))  # [B, T, H, W, 1]
        x = ops.transpose(x[..., 0], (0, 2, 3, 1))  # [B, H, W, T]
        x = ops.relu(self.frame_mix(x))
        x = ops.mean(x, axis=(1, 2))  # [B, T]
        x = self.dense2(ops.relu(self.dense1(x)))
        return ops.sigmoid(ops.cast(x, "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(frame_mix_bias=self.frame_mix_bias)
        return config

    @classmethod
    def from_config(cls, config):
        # Saved before the key existed: the frame-mixing conv had a bias then.
        return cls(**{"frame_mix_bias": True, **config})


@keras.saving.register_keras_serializable(package="stabn_tf")
class AttentionFusion(keras.layers.Layer):
    """Re-weights features with both attentions and fuses them back to C channels.

    `fs = (1 + Ms)·f` (spatial attention can boost, never erase), `ft = Mt·f` (per-frame
    gate), then `BN(conv1×1×1(concat[fs, ft]))` 2C→C, then ReLU when `relu`.

    `inversion` ("none" | "spatial" | "temporal" | "both") replaces Ms by 1−Ms and/or Mt
    by 1−Mt (the paper's Table 2). It is a switch, not a weight: change it on a trained
    model with `stabn_tf.set_attention_inversion`.

    Shapes: `([B, T, H, W, C], [B, T, H, W, 1], [B, T]) -> [B, T, H, W, C]`.
    """

    def __init__(self, relu: bool = True, inversion: str = "none", synchronized_bn: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.relu = bool(relu)
        self.inversion = inversion
        self.synchronized_bn = synchronized_bn
        self.bn = batch_norm("bn", synchronized=synchronized_bn, dtype=self.dtype_policy)

    @property
    def inversion(self) -> str:
        return self._inversion

    @inversion.setter
    def inversion(self, mode: str) -> None:
        if mode not in INVERSIONS:
            raise ValueError(f"`inversion` must be one of {INVERSIONS}, got {mode!r}.")
        self._inversion = mode

    def build(self, input_shape):
        f_shape, ms_shape, mt_shape = input_shape
        channels = f_shape[-1]
        if tuple(ms_shape[1:]) != (*f_shape[1:-1], 1) or tuple(mt_shape[1:]) != (f_shape[1],):
            raise ValueError(
                f"{self.name}: expected Ms [B, T, H, W, 1] and Mt [B, T] matching features "
                f"{tuple(f_shape)}; got Ms {tuple(ms_shape)} and Mt {tuple(mt_shape)}."
            )
        self.conv = Conv3DAs2D(channels, 1, name="conv", dtype=self.dtype_policy)
        self.conv.build((*f_shape[:-1], 2 * channels))
        self.bn.build(f_shape)

    def fusion_inputs(self, features, spatial, temporal):
        """The two re-weighted feature maps `(fs, ft)` the 1×1×1 conv sees."""
        spatial = ops.cast(spatial, features.dtype)
        temporal = ops.cast(temporal, features.dtype)
        if self.inversion in ("spatial", "both"):
            spatial = 1.0 - spatial
        if self.inversion in ("temporal", "both"):
            temporal = 1.0 - temporal
        return (1.0 + spatial) * features, temporal[:, :, None, None, None] * features

    def call(self, inputs, training=None):
        features, spatial, temporal = inputs
        fs, ft = self.fusion_inputs(features, spatial, temporal)
        x = self.bn(self.conv(ops.concatenate([fs, ft], axis=-1)), training=training)
        return ops.relu(x) if self.relu else x

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(relu=self.relu, inversion=self.inversion,
                      synchronized_bn=self.synchronized_bn)
        return config


@keras.saving.register_keras_serializable(package="stabn_tf")
class FrameAveragePool(keras.layers.Layer):
    """Spatial average per frame: `[B, T, H, W, C] -> [B, T, C]`."""

    def call(self, inputs):
        return ops.mean(inputs, axis=(2, 3))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[-1])
