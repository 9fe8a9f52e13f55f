"""Model builders: ST-ABN and its baseline (the same 3D ResNet without the branches).

The ST-ABN model's outputs are the two logits the loss uses, `{"perception",
"attention"}`, so `model.fit` needs labels for exactly those. The explanation
(`spatial_attention` Ms `[B, T, h, w, 1]`, `temporal_attention` Mt `[B, T]`) comes
from `explanation_model(model)`, a sibling Keras model that shares every layer and
weight with it, and also works on a model loaded from a `.keras` file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from stabn_tf.layers.attention import (
    INVERSIONS,
    AttentionFusion,
    FrameAveragePool,
    SpatialAttention,
    TemporalAttention,
)
from stabn_tf.layers.conv import Conv3DAs2D
from stabn_tf.layers.norm import batch_norm
from stabn_tf.models.backbone import SPATIAL_REDUCTION, BackboneConfig, feature_extractor, stage

PERCEPTION = "perception"
ATTENTION = "attention"
SPATIAL_ATTENTION = "spatial_attention"
TEMPORAL_ATTENTION = "temporal_attention"
FUSION = "attention_fusion"
ATTENTION_HEADS = ("per_frame", "gap")


def _check_args(num_classes, num_frames, image_size, dropout) -> tuple[int, int]:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"`num_frames` must be an int >= 1, got {num_frames!r}.")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(not isinstance(s, int) or s < SPATIAL_REDUCTION
                             or s % SPATIAL_REDUCTION for s in size):
        raise ValueError(
            f"`image_size` must be an int or (height, width), each a positive multiple of "
            f"{SPATIAL_REDUCTION} (the network's spatial reduction), got {image_size!r}."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
    return size


def _classifier(x, num_classes: int, dropout: float, name: str):
    """GAP → dropout → dense K, in float32 so logits stay exact under mixed precision."""
    x = keras.layers.GlobalAveragePooling3D(name=f"{name}_pool")(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.layers.Dense(num_classes, name=name, dtype="float32")(x)


def build_baseline(
    num_classes: int = 174,
    num_frames: int = 32,
    image_size: int | tuple[int, int] = 224,
    depth: int = 50,
    width_multiplier: float = 1.0,
    dropout: float = 0.5,
    synchronized_bn: bool = False,
    stride_in_1x1: bool = False,
    name: str = "baseline",
) -> keras.Model:
    """The 3D ResNet baseline: stem + res2..res5 + GAP + dropout + dense.

    Input `[B, T, H, W, 3]` (normalised RGB); output `{"perception": [B, K]}` logits,
    named like ST-ABN's prediction so the same training and evaluation code serves both.
    Arguments mean what they mean for `build_stabn`.
    """
    height, width = _check_args(num_classes, num_frames, image_size, dropout)
    cfg = BackboneConfig(depth, width_multiplier, stride_in_1x1, synchronized_bn)
    clips = keras.Input((num_frames, height, width, 3), name="clips")
    x = stage(feature_extractor(clips, cfg), 3, cfg)
    logits = _classifier(x, num_classes, dropout, PERCEPTION)
    return keras.Model(clips, {PERCEPTION: logits}, name=name)


def build_stabn(
    num_classes: int = 174,
    num_frames: int = 32,
    image_size: int | tuple[int, int] = 224,
    depth: int = 50,
    width_multiplier: float = 1.0,
    dropout: float = 0.5,
    attention_head: str = "per_frame",
    fusion_relu: bool = True,
    inversion: str = "none",
    synchronized_bn: bool = False,
    stride_in_1x1: bool = False,
    name: str = "stabn",
) -> keras.Model:
    """ST-ABN (DESIGN.md §1) on a SlowOnly 3D ResNet.

    Args:
      num_classes: K.
      num_frames: T, fixed at build (the temporal attention treats frames as channels).
      image_size: input height and width (int or pair), multiples of 32.
      depth: 18, 34, 50 or 101.
      width_multiplier: scales every channel count (tiny configs for tests and demos).
      dropout: before both classifiers.
      attention_head: "per_frame" keeps per-frame class scores, flattened T·K, before
        the attention branch's dense layer (the reference); "gap" averages them over T.
      fusion_relu: ReLU after the fusion's BN (the paper's code has it).
      inversion: attention inversion at build time; change later with
        `set_attention_inversion`.
      synchronized_bn: synchronise BN statistics across replicas.
      stride_in_1x1: put each bottleneck's spatial stride in its first 1×1 conv, the
        layout of `keras.applications.ResNet50` (exact ImageNet inflation); the default
        keeps it in the 1×3×3 conv like the reference.

    Returns:
      A model `[B, T, H, W, 3] -> {"perception": [B, K], "attention": [B, K]}` (float32
      logits). `explanation_model(model)` adds the attention maps.
    """
    height, width = _check_args(num_classes, num_frames, image_size, dropout)
    if attention_head not in ATTENTION_HEADS:
        raise ValueError(f"`attention_head` must be one of {ATTENTION_HEADS}, got "
                         f"{attention_head!r}.")
    if inversion not in INVERSIONS:
        raise ValueError(f"`inversion` must be one of {INVERSIONS}, got {inversion!r}.")
    cfg = BackboneConfig(depth, width_multiplier, stride_in_1x1, synchronized_bn)
    sync = synchronized_bn
    clips = keras.Input((num_frames, height, width, 3), name="clips")
    features = feature_extractor(clips, cfg)  # f: [B, T, H/16, W/16, C4]

    # Attention branch: res5 copy without spatial stride → K class maps per frame.
    a = stage(features, 3, cfg, stride=1, prefix="att_")
    a = batch_norm("att_bn_in", synchronized=sync)(a)
    a = Conv3DAs2D(num_classes, 1, name="att_class_conv")(a)
    a = batch_norm("att_class_bn", synchronized=sync)(a)
    class_maps = keras.layers.ReLU(name="att_class_maps")(a)  # [B, T, h, w, K]

    scores = Conv3DAs2D(num_classes, 1, name="att_score_conv")(class_maps)
    scores = FrameAveragePool(name="att_score_pool")(scores)  # [B, T, K]
    if attention_head == "per_frame":
        scores = keras.layers.Flatten(name="att_score_flatten")(scores)  # [B, T·K]
    else:
        scores = keras.layers.GlobalAveragePooling1D(name="att_score_gap")(scores)
    scores = keras.layers.Dropout(dropout, name="att_dropout")(scores)
    attention_logits = keras.layers.Dense(num_classes, name=ATTENTION, dtype="float32")(scores)

    spatial = SpatialAttention(synchronized_bn=sync, name=SPATIAL_ATTENTION)(class_maps)
    temporal = TemporalAttention(synchronized_bn=sync, name=TEMPORAL_ATTENTION)(class_maps)
    fused = AttentionFusion(relu=fusion_relu, inversion=inversion, synchronized_bn=sync,
                            name=FUSION)([features, spatial, temporal])

    # Perception branch: res5 on the attended features → prediction.
    perception_logits = _classifier(stage(fused, 3, cfg), num_classes, dropout, PERCEPTION)
    return keras.Model(
        clips, {PERCEPTION: perception_logits, ATTENTION: attention_logits}, name=name
    )


def is_stabn(model: keras.Model) -> bool:
    """Whether `model` has ST-ABN's attention layers (else: the baseline)."""
    names = {layer.name for layer in model.layers}
    return {SPATIAL_ATTENTION, TEMPORAL_ATTENTION} <= names


def explanation_model(model: keras.Model) -> keras.Model:
    """A sibling of an ST-ABN model that also outputs Ms and Mt; shares all weights.

    Outputs `{"perception": [B, K], "attention": [B, K], "spatial_attention":
    [B, T, h, w, 1], "temporal_attention": [B, T]}`.
    """
    names = {layer.name for layer in model.layers}
    missing = {SPATIAL_ATTENTION, TEMPORAL_ATTENTION} - names
    if missing:
        raise ValueError(f"model {model.name!r} has no {sorted(missing)} layer: is it an ST-ABN "
                         "model from `build_stabn`?")
    outputs = {key: model.get_layer(key).output for key in
               (PERCEPTION, ATTENTION, SPATIAL_ATTENTION, TEMPORAL_ATTENTION)}
    return keras.Model(model.input, outputs, name=f"{model.name}_explained")


def set_attention_inversion(mode: str, *models: keras.Model) -> None:
    """Switch attention inversion ("none" | "spatial" | "temporal" | "both") in place.

    No weight changes. Cached `fit`/`evaluate`/`predict` graphs of the given models are
    dropped so the next call traces the new mode; graphs traced elsewhere (your own
    `tf.function`) need retracing.
    """
    if mode not in INVERSIONS:
        raise ValueError(f"inversion `mode` must be one of {INVERSIONS}, got {mode!r}.")
    for model in models:
        fusions = [layer for layer in model.layers if isinstance(layer, AttentionFusion)]
        if not fusions:
            raise ValueError(f"model {model.name!r} has no AttentionFusion layer.")
        for layer in fusions:
            layer.inversion = mode
        model.train_function = model.test_function = model.predict_function = None


@contextlib.contextmanager
def attention_inversion(mode: str, *models: keras.Model) -> Iterator[None]:
    """`with attention_inversion("both", model): model.evaluate(...)`; restores the mode."""
    previous = [
        next(layer.inversion for layer in m.layers if isinstance(layer, AttentionFusion))
        for m in models
    ]
    set_attention_inversion(mode, *models)
    try:
        yield
    finally:
        for m, old in zip(models, previous):
            set_attention_inversion(old, m)
