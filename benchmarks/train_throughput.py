"""Training throughput (clips/s) of ST-ABN and the baseline, side by side in one run.

Full size by default (the preset stabn_r50_ssv2: ResNet-50, 32×224×224, K=174; --preset and
the model flags choose another), synthetic clips held on the device,
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
flags.DEFINE_list("precisions", ["float32", "bfloat16", "float16"], "Precisions, as training's "
                  "--precision names them (stabn_tf.precision).")
flags.DEFINE_list("jit", ["false", "true"], "XLA off/on (TensorFlow backend).")
flags.DEFINE_integer("batch_size", 8, "Clips per step.")
flags.DEFINE_integer("steps", 10, "Timed steps per configuration.")
flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation).")
flags.DEFINE_string("preset", "stabn_r50_ssv2", "The model and recipe timed "
                    "(stabn_tf.models.presets); the flags below override its model.")
flags.DEFINE_integer("num_frames", None, "T (default: the preset's).")
flags.DEFINE_integer("image_size", None, "Input size (default: the preset's).")
flags.DEFINE_integer("num_classes", None, "K (default: the preset's).")
flags.DEFINE_integer("depth", None, "ResNet depth (default: the preset's).")
flags.DEFINE_float("width_multiplier", None, "Width multiplier (default: the preset's).")
MODEL_FLAGS = ("num_frames", "image_size", "num_classes", "depth", "width_multiplier")


def given_model_flags() -> dict:
    """The model flags given on the command line: overrides of the preset's model."""
    return {name: FLAGS[name].value for name in MODEL_FLAGS if FLAGS[name].value is not None}


def recipe() -> dict:
    """The preset's optimisation settings over the paper's (the demo's sets only some)."""
    from stabn_tf.models import presets  # with the package: after the backend is chosen

    return {**presets.get("stabn_r50_ssv2").recipe, **presets.get(FLAGS.preset).recipe}


def measure(kind: str, precision: str, jit: bool) -> float:
    """Clips per second of `steps` train steps after `warmup` steps."""
    import keras

    import stabn_tf
    from stabn_tf.precision import POLICIES, TRAINING_PRECISIONS, check_precision
    from stabn_tf.training.recipe import compile_model

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(
        POLICIES[check_precision(precision, TRAINING_PRECISIONS)])
    model_class = stabn_tf.STABN if kind == "stabn" else stabn_tf.ResNet3D
    model = model_class.from_preset(FLAGS.preset, **given_model_flags())
    settings = recipe()
    stabn_tf.training.recipe.apply_weight_decay(model, settings["weight_decay"])
    optimizer = keras.optimizers.SGD(settings["base_lr"], momentum=settings["momentum"],
                                     nesterov=settings["nesterov"],
                                     global_clipnorm=settings["clip_norm"])
    compile_model(model, optimizer, jit_compile=jit)
    rng = np.random.default_rng(0)
    shape = (FLAGS.batch_size, model.num_frames, model.square_size, model.square_size, 3)
    clips = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
    labels = keras.ops.convert_to_tensor(rng.integers(0, model.num_classes, FLAGS.batch_size))
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
    from stabn_tf.models import presets  # with the package: after the backend is chosen

    model = {**presets.get(FLAGS.preset).config, **given_model_flags()}
    print(f"backend {backend}; {FLAGS.batch_size} clips of {model['num_frames']}×"
          f"{model['image_size']}² per step, K={model['num_classes']}, depth {model['depth']}")
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
