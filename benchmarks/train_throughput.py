"""Training throughput (clips/s) of ST-ABN and the baseline, side by side in one run.

Full size by default (ResNet-50, 32×224×224, K=174), synthetic clips held on the device,
so the input pipeline is out of the picture. For each model it times the same train step
(the recipe's SGD, both losses, metrics) in float32 and mixed precision, with and without
XLA, and prints clips/s and the ratio to float32 without XLA.

    python benchmarks/train_throughput.py                      # TensorFlow, on a GPU
    KERAS_BACKEND=jax python benchmarks/train_throughput.py    # the same model on JAX

On JAX every step is XLA-compiled, so `--jit` has only the compiled variant there.
"""

from __future__ import annotations

import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["stabn", "baseline"], "Which models.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16", "mixed_float16"], "Policies.")
flags.DEFINE_list("jit", ["false", "true"], "XLA off/on (TensorFlow backend).")
flags.DEFINE_integer("batch_size", 8, "Clips per step.")
flags.DEFINE_integer("steps", 10, "Timed steps per configuration.")
flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation).")
flags.DEFINE_integer("num_frames", 32, "T.")
flags.DEFINE_integer("image_size", 224, "Input size.")
flags.DEFINE_integer("num_classes", 174, "K.")
flags.DEFINE_integer("depth", 50, "ResNet depth.")
flags.DEFINE_float("width_multiplier", 1.0, "Width multiplier.")


def measure(kind: str, precision: str, jit: bool) -> float:
    """Clips per second of `steps` train steps after `warmup` steps."""
    import keras

    import stabn_tf
    from stabn_tf.training.recipe import compile_model

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    build = stabn_tf.build_stabn if kind == "stabn" else stabn_tf.build_baseline
    model = build(num_classes=FLAGS.num_classes, num_frames=FLAGS.num_frames,
                  image_size=FLAGS.image_size, depth=FLAGS.depth,
                  width_multiplier=FLAGS.width_multiplier)
    stabn_tf.training.recipe.apply_weight_decay(model, 5e-4)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True, global_clipnorm=20.0)
    compile_model(model, optimizer, jit_compile=jit)
    rng = np.random.default_rng(0)
    shape = (FLAGS.batch_size, FLAGS.num_frames, FLAGS.image_size, FLAGS.image_size, 3)
    clips = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    labels = keras.ops.convert_to_tensor(rng.integers(0, FLAGS.num_classes, FLAGS.batch_size))
    targets = {name: labels for name in model.output}
    for _ in range(FLAGS.warmup):
        model.train_on_batch(clips, targets)  # returns host floats: synchronises
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        logs = model.train_on_batch(clips, targets, return_dict=True)
    elapsed = time.perf_counter() - start
    if not np.isfinite(logs["loss"]):
        raise RuntimeError(f"{kind} {precision}: non-finite loss {logs['loss']}")
    return FLAGS.steps * FLAGS.batch_size / elapsed


def main(argv):
    del argv
    import keras

    backend = keras.backend.backend()
    jits = [j == "true" for j in FLAGS.jit] if backend == "tensorflow" else [True]
    print(f"backend {backend}; {FLAGS.batch_size} clips of {FLAGS.num_frames}×"
          f"{FLAGS.image_size}² per step, K={FLAGS.num_classes}, depth {FLAGS.depth}")
    print(f"{'model':<9} {'precision':<15} {'XLA':<5} {'clips/s':>9} {'× ref':>7}", flush=True)
    for kind in FLAGS.models:
        reference = None
        for precision in FLAGS.precisions:
            for jit in jits:
                try:
                    rate = measure(kind, precision, jit)
                except Exception as e:  # one failing variant must not hide the others
                    print(f"{kind:<9} {precision:<15} {str(jit):<5} failed: "
                          f"{type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)
                    continue
                reference = reference or rate
                print(f"{kind:<9} {precision:<15} {str(jit):<5} {rate:>9.2f} "
                      f"{rate / reference:>7.2f}", flush=True)


if __name__ == "__main__":
    app.run(main)
