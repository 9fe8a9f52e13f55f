"""Convert a `.keras` checkpoint saved before models carried their config.

    python -m stabn_tf.models.migrate runs/demo/checkpoints/final.keras \\
        --labels=data/cache/synthetic-.../tfrecords/labels.txt [--output=new.keras]

Older checkpoints are plain Functional models: they say nothing about their classes, and
their depth, width and clip shape can only be read back from the graph. This is the one
place that still does so: it rebuilds the model as `STABN` / `ResNet3D` with the class
names given, copies every weight by layer name, checks the outputs agree on a random clip,
and saves the result (over the old file unless `--output` is given; the old file is kept as
`<name>.legacy.keras`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import keras
import numpy as np

import stabn_tf  # noqa: F401  (registers every object old files name)
from stabn_tf.data.labels import read_labels
from stabn_tf.disk import atomic_path
from stabn_tf.errors import StabnError
from stabn_tf.models.backbone import RESNET_SPECS, STEM_WIDTH
from stabn_tf.models.stabn import FUSION, STABN, ResNet3D, VideoClassifier
from stabn_tf.outputs import PERCEPTION, SPATIAL_ATTENTION, TEMPORAL_ATTENTION


class MigrationError(ValueError, StabnError):
    """The old model cannot be converted; `str()` is one line."""


def _architecture(old: keras.Model) -> dict:
    """The build arguments of an old Functional ST-ABN / baseline, read off its graph."""
    names = [layer.name for layer in old.layers]
    blocks = tuple(len({n.split("_")[1] for n in names if n.startswith(f"res{s}_block")
                        and n.endswith("_out")}) for s in range(2, 6))
    bottleneck = any(n.startswith("res2_block1_conv_c") for n in names)
    depth = next((d for d, spec in RESNET_SPECS.items()
                  if spec.blocks == blocks and spec.bottleneck == bottleneck), None)
    if depth is None:
        raise MigrationError(f"model {old.name!r} is not a stabn_tf 3D ResNet (stages {blocks})")
    shape = old.input.shape  # (None, T, H, W, 3)
    first = old.get_layer("res3_block1_conv_a")
    args = {"num_classes": int(old.get_layer(PERCEPTION).units), "num_frames": int(shape[1]),
            "image_size": int(shape[2]) if shape[2] == shape[3] else (int(shape[2]),
                                                                       int(shape[3])),
            "depth": depth,
            "width_multiplier": old.get_layer("stem_conv_a").filters / STEM_WIDTH,
            "dropout": float(old.get_layer(f"{PERCEPTION}_dropout").rate),
            "stride_in_1x1": tuple(first.strides)[-1] == 2 if bottleneck else False}
    if SPATIAL_ATTENTION in names:
        args["attention_head"] = "per_frame" if "att_score_flatten" in names else "gap"
        args["fusion_relu"] = bool(old.get_layer(FUSION).relu)
        args["frame_mix_bias"] = bool(old.get_layer(TEMPORAL_ATTENTION).frame_mix_bias)
    return args


def migrate(old: keras.Model, class_names: Sequence[str]) -> VideoClassifier:
    """A `STABN` / `ResNet3D` with `old`'s weights and the given class names."""
    args = _architecture(old)
    if len(class_names) != args["num_classes"]:
        raise MigrationError(f"{len(class_names)} class names for a model with "
                             f"{args['num_classes']} classes")
    cls = STABN if "attention_head" in args else ResNet3D
    new = cls(**args, class_names=list(class_names), name=old.name)
    for layer in new.layers:
        weights = old.get_layer(layer.name).get_weights()
        if len(weights) != len(layer.weights):
            raise MigrationError(f"layer {layer.name!r}: {len(weights)} weights in the old "
                                 f"model, {len(layer.weights)} now")
        layer.set_weights(weights)
    clip = np.random.default_rng(0).normal(size=(1, *old.input.shape[1:])).astype("float32")
    expected = old(clip, training=False)[PERCEPTION]
    got = new(clip, training=False)[PERCEPTION]
    if not np.allclose(expected, got, rtol=1e-4, atol=1e-4):
        raise MigrationError("the converted model does not reproduce the old one's outputs")
    return new


def migrate_file(path: str, labels: str, output: str | None = None) -> str:
    """Converts `path` (see the module docstring); returns where the new model went."""
    if not os.path.isfile(path):
        raise MigrationError(f"{path}: no such file")
    try:
        names = read_labels(labels)
    except OSError as e:  # a LabelFileError says itself what is wrong
        raise MigrationError(str(e)) from None
    try:
        old = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a bad file
        raise MigrationError(f"{path}: cannot load ({str(e).strip().splitlines()[0]})") from e
    if isinstance(old, VideoClassifier):
        raise MigrationError(f"{path}: already carries its config; nothing to do")
    new = migrate(old, names)
    if output is None:
        output = path
        with atomic_path(path[:-len(".keras")] + ".legacy.keras") as staged:
            shutil.copy2(path, staged)
    with atomic_path(output) as staged:
        new.save(staged)
    return output


if __name__ == "__main__":
    # The command is `stabn_tf.migrate` (flags only); the work is `migrate_file` above.
    import runpy

    runpy.run_module("stabn_tf.migrate", run_name="__main__")
