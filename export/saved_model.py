"""SavedModel for TF Serving: `python -m export.saved_model --checkpoint=... --output_dir=...`.

Writes `<output_dir>/<model_name>/<version>/` (the layout TF Serving watches; a new
version appears atomically, so a running server never loads a half-written one), built
with `keras.export.ExportArchive`. Two signatures, both float32 probabilities out:

- `serving_default`: `frames` uint8 `[batch, T, H, W, 3]` RGB, any H and W (all clips of a
  batch the same size). Inside the graph: centre crop of 224/256 of the short side,
  bilinear resize to the model's size, ImageNet normalisation: the eval pipeline's own
  functions (`stabn_tf.data.preprocess`), so served and evaluated clips match.
- `serve_examples`: `examples` string `[batch]`, serialized `tf.train.SequenceExample`s in
  the project's TFRecord format (one JPEG per frame, any number of frames). Inside the
  graph: centre segment sampling of T frames, JPEG decoding of only the crop window,
  resize, normalisation, as `stabn_tf.data.make_dataset(training=False)` does.

Outputs: `probabilities [batch, K]`, `top_k_indices [batch, k]` (int32),
`top_k_labels [batch, k]` (class names, embedded in the graph), `top_k_probabilities`,
`spatial_attention [batch, T, h, w]`, `temporal_attention [batch, T]`.

A wrong rank, T or channel count fails with InvalidArgument saying what was expected; a
wrong dtype fails in TF's own signature check ("expected to be a uint8 tensor").
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from export import ExportError, load_checkpoint, model_spec, run_data
from stabn_tf.data import preprocess, sampling, tfrecord
from stabn_tf.tflite import deployment_model

SERVING_DEFAULT = "serving_default"
SERVE_EXAMPLES = "serve_examples"
FRAMES = "frames"
EXAMPLES = "examples"


def preprocess_frames(frames: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 `[B, T, H, W, 3]` → normalised float32 `[B, T, S, S, 3]`, eval-style."""
    shape = tf.shape(frames)
    y, x, height, width = tf.unstack(preprocess.eval_crop_window(shape[2], shape[3]))
    cropped = frames[:, :, y:y + height, x:x + width, :]
    return preprocess.color_normalize(preprocess.resize_frames(cropped, image_size))


def decode_example(serialized: tf.Tensor, num_frames: int, image_size: int) -> tf.Tensor:
    """One serialized SequenceExample → normalised float32 clip `[T, S, S, 3]`."""
    encoded = tfrecord.parse_sequence_example(serialized)[tfrecord.IMAGE_ENCODED]
    indices = sampling.segment_indices(tf.shape(encoded)[0], num_frames, training=False)[0]
    jpeg_shape = tf.io.extract_jpeg_shape(encoded[0])
    window = preprocess.eval_crop_window(jpeg_shape[0], jpeg_shape[1])
    frames = tf.map_fn(lambda jpeg: tf.io.decode_and_crop_jpeg(jpeg, window, channels=3),
                       tf.gather(encoded, indices),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    clip = preprocess.color_normalize(preprocess.resize_frames(frames, image_size))
    return tf.ensure_shape(clip, [num_frames, image_size, image_size, 3])


def _checked(tensor: tf.Tensor, ok: tf.Tensor, message: str, static_shape) -> tf.Tensor:
    """`tensor` with `static_shape` (None: any size), after an InvalidArgument check whose
    message ends with the shape that was sent.

    Nothing downstream may fail before the check does (TF may run a shape assertion on
    the input first, whatever the control dependencies say), so a bad tensor becomes an
    empty one of the expected rank instead: only the Assert can report the problem.
    """
    check = tf.debugging.Assert(ok, [message, tf.shape(tensor)], summarize=8)
    with tf.control_dependencies([check]):
        flat = tf.reshape(tensor, [-1])
    rank = len(static_shape)
    sent = tf.concat([tf.shape(tensor), tf.ones([rank], tf.int32)], 0)[:rank]
    empty = [0 if size is None else size for size in static_shape]
    shape = tf.where(ok, sent, empty)
    return tf.ensure_shape(tf.reshape(flat[: tf.reduce_prod(shape)], shape), static_shape)


def _store_variables_once(archive: keras.export.ExportArchive) -> None:
    """Makes `archive` write every weight once, not twice.

    Keras 3.15 tracks the `keras.Variable` wrappers while the endpoints capture the
    `tf.Variable`s under them; TF cannot tell they are the same, so each weight is written
    (and loaded by TF Serving) twice (keras-team/keras#23553). Tracking the `tf.Variable`s
    themselves lets the SavedModel writer de-duplicate them. A no-op if Keras changes.
    """
    holder = getattr(archive, "_tf_trackable", None)
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        tracked = getattr(holder, name, None)
        if tracked is None:
            continue
        inner = [getattr(v, "_value", None) for v in tracked]  # the wrapped tf.Variable
        setattr(holder, name, [u if isinstance(u, tf.Variable) else v
                               for u, v in zip(inner, tracked)])


def serving_archive(model: keras.Model, labels: Sequence[str],
                    top_k: int = 5) -> keras.export.ExportArchive:
    """The ExportArchive with both signatures for an ST-ABN (or baseline) model."""
    spec = model_spec(model)
    num_frames, image_size = spec.num_frames, spec.image_size
    if len(labels) != spec.num_classes:
        raise ExportError(f"{len(labels)} labels for a model with {spec.num_classes} classes")
    deploy = deployment_model(model)
    k = max(1, min(top_k, len(labels)))
    class_names = tf.constant(list(labels), tf.string)

    def heads(clips: tf.Tensor) -> dict[str, tf.Tensor]:
        out = deploy(clips, training=False)
        probabilities = out["probabilities"]
        top = tf.math.top_k(probabilities, k)
        result = {"probabilities": probabilities,
                  "top_k_indices": top.indices,
                  "top_k_labels": tf.gather(class_names, top.indices),
                  "top_k_probabilities": top.values}
        for name in ("spatial_attention", "temporal_attention"):
            if name in out:
                result[name] = out[name]
        return result

    expected = f"[batch, {num_frames}, height, width, 3]"

    def serve_frames(frames: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.concat([tf.shape(frames), tf.zeros([5], tf.int32)], 0)  # pads low ranks
        ok = (tf.equal(tf.rank(frames), 5) & tf.equal(shape[1], num_frames)
              & tf.equal(shape[4], 3) & (shape[2] > 0) & (shape[3] > 0))
        frames = _checked(frames, ok, f"{SERVING_DEFAULT}: `{FRAMES}` must be uint8 {expected} "
                          f"(T={num_frames} RGB frames of any size); got shape",
                          [None, num_frames, None, None, 3])
        return heads(preprocess_frames(frames, image_size))

    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        examples = _checked(examples, tf.equal(tf.rank(examples), 1),
                            f"{SERVE_EXAMPLES}: `{EXAMPLES}` must be a 1-D string tensor "
                            "[batch] of serialized tf.train.SequenceExample; got shape", [None])
        clips = tf.map_fn(lambda s: decode_example(s, num_frames, image_size), examples,
                          fn_output_signature=tf.TensorSpec(
                              [num_frames, image_size, image_size, 3], tf.float32))
        return heads(clips)

    archive = keras.export.ExportArchive()
    archive.track(deploy)
    _store_variables_once(archive)
    archive.add_endpoint(SERVING_DEFAULT, serve_frames,
                         input_signature=[tf.TensorSpec(None, tf.uint8, name=FRAMES)])
    archive.add_endpoint(SERVE_EXAMPLES, serve_examples,
                         input_signature=[tf.TensorSpec(None, tf.string, name=EXAMPLES)])
    return archive


def next_version(base_dir: str) -> int:
    """1 + the highest numeric version under `base_dir` (1 when there is none)."""
    if not os.path.isdir(base_dir):
        return 1
    versions = [int(name) for name in os.listdir(base_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(model: keras.Model, labels: Sequence[str], output_dir: str,
                       model_name: str = "stabn", version: int | None = None,
                       top_k: int = 5, overwrite: bool = False) -> str:
    """Writes `<output_dir>/<model_name>/<version>/` and returns that path.

    `version=None` takes the next free number. The SavedModel is written next to its
    final place and renamed into it, so TF Serving never sees a partial version.
    """
    base = os.path.join(output_dir, model_name)
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise ExportError(f"TF Serving versions are positive integers, got {version}")
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise ExportError(f"{target} exists: pick another --version or pass --overwrite")
    os.makedirs(base, exist_ok=True)
    archive = serving_archive(model, labels, top_k)
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=base)  # hidden: Serving skips it
    try:
        archive.write_out(staging, verbose=False)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def self_check(path: str, model: keras.Model, seed: int = 0) -> float:
    """Max |Δ| of the exported `serving_default` probabilities against Keras on one
    random clip at the model's own size (no crop/resize effect beyond the eval crop)."""
    spec = model_spec(model)
    num_frames, image_size = spec.num_frames, spec.image_size
    rng = np.random.default_rng(seed)
    size = preprocess.eval_short_side(image_size)
    frames = rng.integers(0, 256, (1, num_frames, size, size, 3), dtype=np.uint8)
    served = tf.saved_model.load(path).signatures[SERVING_DEFAULT](frames=tf.constant(frames))
    clips = preprocess_frames(tf.constant(frames), image_size)
    expected = deployment_model(model)(clips, training=False)["probabilities"]
    return float(np.abs(served["probabilities"].numpy() - np.asarray(expected)).max())


FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "A .keras checkpoint of stabn_tf.train.",
                        required=True)
    flags.DEFINE_string("output_dir", "exported", "TF Serving's model base directory parent.")
    flags.DEFINE_string("model_name", "stabn", "Model name (the directory under --output_dir "
                        "and the name in models.config / REST URLs).")
    flags.DEFINE_integer("version", 0, "Version number; 0: one above the highest present.")
    flags.DEFINE_string("labels", None, "labels.txt; default: the run's (config.json).")
    flags.DEFINE_integer("top_k", 5, "How many classes top_k_* outputs list.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing version directory.")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        print(f"unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    try:
        model = load_checkpoint(FLAGS.checkpoint)
        spec = model_spec(model)
        data = run_data(FLAGS.checkpoint, spec.num_classes, labels=FLAGS.labels)
        path = export_saved_model(model, data.labels, FLAGS.output_dir, FLAGS.model_name,
                                  FLAGS.version or None, FLAGS.top_k, FLAGS.overwrite)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    diff = self_check(path, model)
    print(f"wrote {path}\n"
          f"  {SERVING_DEFAULT}: {FRAMES} uint8 [batch, {spec.num_frames}, H, W, 3] -> "
          f"probabilities, top_k_indices, top_k_labels, top_k_probabilities, spatial_attention, "
          f"temporal_attention\n"
          f"  {SERVE_EXAMPLES}: {EXAMPLES} string [batch] (serialized SequenceExamples)\n"
          f"  {len(data.labels)} classes; self-check vs Keras: max |Δ probabilities| = "
          f"{diff:.2e}\n"
          f"inspect: saved_model_cli show --dir {path} --all", flush=True)
    return 0


if __name__ == "__main__":
    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
