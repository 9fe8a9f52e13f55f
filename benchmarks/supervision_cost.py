"""What attention supervision costs per training step, measured side by side.

    python benchmarks/supervision_cost.py [--preset=stabn_demo --depth=18 \\
        --width_multiplier=0.25 --num_frames=8 --image_size=64 --batch_size=16 --rounds=5 \\
        --steps=10]

Compiles the same ST-ABN (the demo's by default; the model flags override the preset's) twice
with the trainer's recipe: as the paper trains it (two cross-entropies) and as
`--attention_supervision_weight` / `--temporal_supervision_weight` train it (the explanation
model, plus the losses on Ms and Mt), then alternates timed rounds of `train_on_batch` between
the two and prints the median step times and their ratio. The data are random clips with
random box targets: the cost does not depend on their values.
"""

from __future__ import annotations

import statistics
import time

import keras
import numpy as np
from absl import app, flags

import stabn_tf
from stabn_tf.models import presets
from stabn_tf.outputs import ATTENTION, PERCEPTION, SPATIAL_ATTENTION, TEMPORAL_ATTENTION
from stabn_tf.training.recipe import compile_model
from stabn_tf.training.supervision import (
    SpatialSupervisionLoss,
    TemporalSupervisionLoss,
    pack_targets,
)

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "stabn_demo", "The ST-ABN timed (stabn_tf.models.presets).")
flags.DEFINE_integer("depth", None, "ResNet depth (default: the preset's).")
flags.DEFINE_float("width_multiplier", None, "Channel width multiplier (default: the preset's).")
flags.DEFINE_integer("num_frames", None, "T (default: the preset's).")
flags.DEFINE_integer("image_size", None, "Input size (default: the preset's).")
flags.DEFINE_integer("batch_size", 16, "Clips per step.")
flags.DEFINE_integer("rounds", 5, "Alternating timed rounds per variant.")
flags.DEFINE_integer("steps", 10, "Training steps per round.")


def main(argv):
    del argv
    given = {name: FLAGS[name].value for name in ("depth", "width_multiplier", "num_frames",
                                                  "image_size") if FLAGS[name].value is not None}
    settings = {**presets.get(FLAGS.preset).config, **given}
    rng = np.random.default_rng(0)
    b, t, s = FLAGS.batch_size, settings["num_frames"], settings["image_size"]
    h = s // 16
    clips = rng.normal(size=(b, t, s, s, 3)).astype("float32")
    labels = rng.integers(0, settings["num_classes"], size=b)
    targets = {"box_mask": rng.uniform(size=(b, t, h, h)).astype("float32"),
               "box_frames": np.ones((b, t), "float32"),
               "active": rng.integers(0, 2, size=(b, t)).astype("float32"),
               "active_known": np.ones((b,), "float32")}
    packed = {k: np.asarray(v) for k, v in pack_targets(targets).items()}

    variants = {}
    for name in ("paper", "supervised"):
        keras.utils.set_random_seed(0)
        model = stabn_tf.STABN.from_preset(FLAGS.preset, **given)
        y = {PERCEPTION: labels, ATTENTION: labels}
        if name == "supervised":
            model = stabn_tf.explanation_model(model)
            compile_model(model, keras.optimizers.SGD(0.01, momentum=0.9),
                          extra_losses={SPATIAL_ATTENTION: SpatialSupervisionLoss(),
                                        TEMPORAL_ATTENTION: TemporalSupervisionLoss()})
            y |= packed
        else:
            compile_model(model, keras.optimizers.SGD(0.01, momentum=0.9))
        model.train_on_batch(clips, y)  # trace and warm up
        variants[name] = (model, y, [])

    for _ in range(FLAGS.rounds):
        for model, y, times in variants.values():
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                model.train_on_batch(clips, y)
            times.append((time.perf_counter() - start) / FLAGS.steps)

    median = {name: statistics.median(v[2]) for name, v in variants.items()}
    for name, seconds in median.items():
        print(f"{name:>10}: {1000 * seconds:7.1f} ms/step (median of {FLAGS.rounds} rounds "
              f"of {FLAGS.steps} steps)")
    print(f"supervised / paper: {median['supervised'] / median['paper']:.3f}")


if __name__ == "__main__":
    app.run(main)
