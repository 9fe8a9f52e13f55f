"""A SavedModel for TF Serving, written as `<output_dir>/<model_name>/<version>/` (the layout
TF Serving watches; a version appears atomically, so a running server never loads half of
one), built with `keras.export.ExportArchive`. Two signatures, both float32 out:

- `serving_default`: `frames` uint8 `[batch, T, H, W, 3]` RGB, any H and W (all clips of a
  batch the same size). The graph prepares them with the model's own `ClipPreprocessor`
  (centre crop of 224/256 of the short side, bilinear resize, ImageNet normalisation), the
  object the data pipeline and the inference runners use, so served and evaluated clips
  match.
- `serve_examples`: `examples` string `[batch]`, serialized `tf.train.SequenceExample`s in
  the project's TFRecord format (one JPEG per frame, any number of frames): the
  preprocessor's `from_jpeg` samples T frames and decodes only their crop window.

Outputs: `probabilities [batch, K]`, `top_k_indices [batch, k]` (int32), `top_k_labels
[batch, k]` (the model's class names, embedded in the graph), `top_k_probabilities`, and
for ST-ABN `spatial_attention [batch, T, h, w]` and `temporal_attention [batch, T]`.

A wrong rank, T or channel count fails with InvalidArgument saying what was expected; a
float tensor fails TF's own signature check ("expected to be a uint8 tensor"). What no
graph can see: TF's Python binding converts a NumPy array to the signature's dtype before
the graph runs, so `signature(frames=np.float32_array)` silently becomes uint8 (1.5 → 1,
300.7 → 44, -2.0 → 254). In Python, pass `frames_tensor(frames)`, which refuses such
arrays; over REST, `export/client.py` refuses such requests before sending them.

`precision="bfloat16"` exports the model rebuilt under `mixed_bfloat16`
(`stabn_tf.models.policy.with_precision`): same signatures, same float32 outputs, bf16
matrix work inside, for CPUs with AMX-BF16 / AVX512-BF16 and GPUs. `self_check` holds
every export to Keras float32 within `SELF_CHECK_TOLERANCE` of its precision.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from stabn_tf.data import tfrecord
from stabn_tf.data.pipeline import list_files, make_dataset
from stabn_tf.deploy import ExportError, Patterns, describe
from stabn_tf.deploy.memory import release_freed_memory
from stabn_tf.deploy.tflite import (
    compare_outputs,
    deployment_model,
    parity_batch_size,
    stack_outputs,
)
from stabn_tf.disk import publish
from stabn_tf.models.policy import with_precision
from stabn_tf.models.stabn import VideoClassifier
from stabn_tf.outputs import PERCEPTION, PROBABILITIES, SPATIAL_ATTENTION, TEMPORAL_ATTENTION
from stabn_tf.precision import resolve_precision
from stabn_tf.quiet import caught_stderr

SERVING_DEFAULT = "serving_default"
SERVE_EXAMPLES = "serve_examples"
FRAMES = "frames"
EXAMPLES = "examples"
TOP_K_INDICES = "top_k_indices"
TOP_K_LABELS = "top_k_labels"
TOP_K_PROBABILITIES = "top_k_probabilities"
#: Max |Δ probabilities| of an export against Keras float32 on `self_check`'s clip.
#: float32: the same graph, so only op-order round-off (1e-4, as for the float TFLite
#: export; the tests see < 1e-5). bfloat16 rounds every matmul input
#: to 8 significant bits (and BN is folded into the convs); on that random clip it moved
#: probabilities by up to 0.0035 on the trained demo model and 0.014 on the tiny test model
#: (random weights, large logits), so
#: 0.05 passes bf16's own error with margin and still fails a broken graph (a wrong weight
#: or a missing layer moves probabilities by far more).
SELF_CHECK_TOLERANCE = {"float32": 1e-4, "bfloat16": 0.05}
#: The served outputs `parity` compares (the signatures have no logits: top-1 is read from
#: the probabilities).
PARITY_OUTPUTS = (PROBABILITIES, SPATIAL_ATTENTION, TEMPORAL_ATTENTION)


def frames_tensor(frames) -> tf.Tensor:
    """`frames` as the uint8 tensor `serving_default` takes; `ValueError` for anything a
    cast would change (floats, integers outside 0..255), which TF would convert silently."""
    if isinstance(frames, tf.Tensor):
        if frames.dtype != tf.uint8:
            raise ValueError(f"`{FRAMES}` must be uint8 RGB frames, got a {frames.dtype.name} "
                             "tensor")
        return frames
    array = np.asarray(frames)
    if array.dtype != np.uint8:
        integral = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
        if not integral or (array.size and (array.min() < 0 or array.max() > 255)):
            raise ValueError(
                f"`{FRAMES}` must be uint8 RGB frames (integers 0..255), got {array.dtype} "
                + (f"values in [{array.min()}, {array.max()}]" if array.size else "")
                + ": TF would cast them silently (1.5 → 1, 300 → 44)")
    return tf.constant(array.astype(np.uint8))


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


def serving_archive(model: VideoClassifier, top_k: int = 5,
                    precision: str = "float32") -> keras.export.ExportArchive:
    """The ExportArchive with both signatures for an ST-ABN (or baseline) model, computing
    in `precision` (auto, float32 or bfloat16; the outputs are float32 either way)."""
    try:
        preprocessor = model.preprocessor
    except ValueError as e:  # a non-square model: the eval preparation makes square clips
        raise ExportError(str(e)) from None
    num_frames, image_size = preprocessor.num_frames, preprocessor.image_size
    deploy = deployment_model(with_precision(model, resolve_precision(precision)))
    k = max(1, min(top_k, model.num_classes))
    class_names = tf.constant(list(model.class_names), tf.string)

    def heads(clips: tf.Tensor) -> dict[str, tf.Tensor]:
        out = deploy(clips, training=False)
        probabilities = out[PROBABILITIES]
        top = tf.math.top_k(probabilities, k)
        result = {PROBABILITIES: probabilities, TOP_K_INDICES: top.indices,
                  TOP_K_LABELS: tf.gather(class_names, top.indices),
                  TOP_K_PROBABILITIES: top.values}
        for name in (SPATIAL_ATTENTION, TEMPORAL_ATTENTION):
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
        return heads(preprocessor(frames))

    def decode(serialized: tf.Tensor) -> tf.Tensor:
        encoded = tfrecord.parse_sequence_example(serialized)[tfrecord.IMAGE_ENCODED]
        clip, _ = preprocessor.from_jpeg(encoded)
        return tf.ensure_shape(clip, [num_frames, image_size, image_size, 3])

    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        examples = _checked(examples, tf.equal(tf.rank(examples), 1),
                            f"{SERVE_EXAMPLES}: `{EXAMPLES}` must be a 1-D string tensor "
                            "[batch] of serialized tf.train.SequenceExample; got shape", [None])
        clips = tf.map_fn(decode, examples, fn_output_signature=tf.TensorSpec(
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


def export_saved_model(model: VideoClassifier, output_dir: str, model_name: str = "stabn",
                       version: int | None = None, top_k: int = 5,
                       overwrite: bool = False, *, precision: str = "float32",
                       check: Callable[[str], object] | None = None) -> str:
    """Writes `<output_dir>/<model_name>/<version>/` and returns that path.

    `version=None` takes the next free number. The SavedModel is written next to its
    final place and renamed into it, so TF Serving never sees a partial version.
    `precision`: what the graph computes in (auto, float32 or bfloat16). `check(staged)`
    runs on the written SavedModel before it is published (e.g. `self_check`); an
    `ExportError` from it leaves nothing behind.
    """
    precision = resolve_precision(precision)
    base = os.path.join(output_dir, model_name)
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise ExportError(f"TF Serving versions are positive integers, got {version}")
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not overwrite:
        raise ExportError(f"{target} exists: pick another --version or pass --overwrite")
    archive = serving_archive(model, top_k, precision)
    os.makedirs(base, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=base)  # hidden: Serving skips it
    try:
        with caught_stderr():  # TensorFlow's SavedModel writer logs through absl at INFO
            archive.write_out(staging, verbose=False)
        if check is not None:
            check(staging)
        if os.path.exists(target):
            shutil.rmtree(target)
        publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def parity(path: str, model: VideoClassifier, file_pattern: Patterns,
           num_clips: int = 0) -> dict[str, float]:
    """`tflite.compare_outputs` of the SavedModel at `path` against Keras float32 on the
    first `num_clips` (0: all) validation records of `file_pattern`: the records go to
    `serve_examples` as they are, the reference sees the eval pipeline's clips of the
    same records in the same order (one file at a time)."""
    files = list_files(file_pattern)
    reference = deployment_model(with_precision(model, "float32"))
    batch = parity_batch_size(model.preprocessor)
    clips = make_dataset(files, preprocessor=model.preprocessor, training=False,
                         batch_size=batch, cycle_length=1)
    records = tf.data.TFRecordDataset(files).batch(batch)
    if num_clips:
        clips = clips.unbatch().take(num_clips).batch(batch)
        records = records.unbatch().take(num_clips).batch(batch)
    # The reference first, freed before the SavedModel runs (`tflite.runner_parity`).
    ref_out, labels = [], []
    for batch, targets in clips:
        want = reference(batch, training=False)
        ref_out.append({k: np.asarray(want[k]) for k in PARITY_OUTPUTS if k in want})
        labels.append(targets[PERCEPTION].numpy())
    if not labels:
        raise ExportError(f"{describe(file_pattern)} holds no clips to measure parity on")
    del reference, want
    release_freed_memory()
    signature = tf.saved_model.load(path).signatures[SERVE_EXAMPLES]
    served_out = []
    for examples in records:
        got = signature(examples=examples)
        served_out.append({k: got[k].numpy() for k in PARITY_OUTPUTS if k in got})
    del signature, got
    release_freed_memory()
    return compare_outputs(stack_outputs(ref_out), stack_outputs(served_out),
                           np.concatenate(labels))


def self_check(path: str, model: VideoClassifier, precision: str = "float32",
               seed: int = 0) -> float:
    """Max |Δ| of the exported `serving_default` probabilities against Keras float32 on
    one random clip at the eval short side of the model's size; `ExportError` when it
    exceeds `SELF_CHECK_TOLERANCE[precision]`."""
    preprocessor = model.preprocessor
    side = preprocessor.short_side
    frames = np.random.default_rng(seed).integers(
        0, 256, (1, preprocessor.num_frames, side, side, 3), dtype=np.uint8)
    served = tf.saved_model.load(path).signatures[SERVING_DEFAULT](
        frames=frames_tensor(frames))[PROBABILITIES].numpy()
    release_freed_memory()  # the SavedModel's run, before the reference's (peak memory)
    reference = with_precision(model, "float32")
    expected = deployment_model(reference)(preprocessor(frames), training=False)[PROBABILITIES]
    del reference
    release_freed_memory()
    diff = float(np.abs(served - np.asarray(expected)).max())
    tolerance = SELF_CHECK_TOLERANCE[resolve_precision(precision)]
    if not diff <= tolerance:
        raise ExportError(f"self-check failed: the {precision} SavedModel's probabilities "
                          f"differ from Keras float32 by {diff:.2e} (tolerance {tolerance:g})")
    return diff
