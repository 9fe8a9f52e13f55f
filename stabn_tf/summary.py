"""Size, compute and CPU forward latency of ST-ABN and its baseline.

    python -m stabn_tf.summary                      # full size: K=174, 32×224×224
    python -m stabn_tf.summary --depth=18 --width_multiplier=0.25 --num_frames=8 --image_size=64
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
from absl import flags

import stabn_tf
from stabn_tf import cli
from stabn_tf.models.complexity import count_flops, count_trainable_params

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_integer("num_classes", 174, "K.")
    flags.DEFINE_integer("num_frames", 32, "T.")
    flags.DEFINE_integer("image_size", 224, "Input height and width.")
    flags.DEFINE_integer("depth", 50, "ResNet depth: 18, 34, 50 or 101.")
    flags.DEFINE_float("width_multiplier", 1.0, "Channel width multiplier.")
    flags.DEFINE_integer("runs", 3, "Timed forward passes per model (0: skip timing).")


def forward_latency(model, runs: int) -> list[float]:
    """Seconds per batch-1 forward pass of a compiled `model`, after one warm-up."""
    clip = np.random.default_rng(0).normal(size=(1, *model.input.shape[1:])).astype("float32")
    forward = tf.function(lambda x: model(x, training=False))
    forward(clip)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), forward(clip))
        times.append(time.perf_counter() - start)
    return times


def main(argv):
    del argv

    kwargs = dict(num_classes=FLAGS.num_classes, num_frames=FLAGS.num_frames,
                  image_size=FLAGS.image_size, depth=FLAGS.depth,
                  width_multiplier=FLAGS.width_multiplier)
    print(f"input [B, {FLAGS.num_frames}, {FLAGS.image_size}, {FLAGS.image_size}, 3], "
          f"K={FLAGS.num_classes}, depth {FLAGS.depth}, width ×{FLAGS.width_multiplier}")
    print(f"{'model':<10} {'params (M)':>11} {'GFLOPs/clip':>12} {'CPU latency (s)':>16}")
    for name, build in (("ST-ABN", stabn_tf.build_stabn), ("baseline", stabn_tf.build_baseline)):
        model = build(**kwargs)
        latency = "-"
        if FLAGS.runs:
            times = forward_latency(model, FLAGS.runs)
            latency = f"{np.median(times):.3f}"
        print(f"{name:<10} {count_trainable_params(model) / 1e6:>11.3f} "
              f"{count_flops(model) / 1e9:>12.1f} {latency:>16}", flush=True)


command = cli.Command("stabn_tf.summary", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
