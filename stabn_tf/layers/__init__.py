"""ST-ABN's Keras layers, all registered for `.keras` serialization."""

from stabn_tf.layers.attention import (
    INVERSIONS,
    AttentionFusion,
    FrameAveragePool,
    SpatialAttention,
    TemporalAttention,
)
from stabn_tf.layers.conv import Conv3DAs2D, FrameMaxPool2D
from stabn_tf.layers.norm import BN_EPSILON, BN_MOMENTUM, batch_norm

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "INVERSIONS",
    "AttentionFusion",
    "Conv3DAs2D",
    "FrameAveragePool",
    "FrameMaxPool2D",
    "SpatialAttention",
    "TemporalAttention",
    "batch_norm",
]
