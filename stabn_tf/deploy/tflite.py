"""TFLite export of ST-ABN: builtin ops only, float or genuinely quantized.

The network is written with 2D ops (docs/deployment.md, "Why 2D ops only"), so it converts without
CONV_3D, 3D pooling, custom or flex ops. This module turns a trained model into the shipped graph
and checks the result, op by op:

- `deployment_model(model)`: the model with the outputs a device needs
  (`probabilities`, `logits`, `spatial_attention [B, T, h, w]`, `temporal_attention`).
  With `edge=True` it is a float32 clone derived automatically from the trained model:
  every BatchNormalization that follows a convolution is folded into it (the converter
  cannot fold across the reshape that `Conv3DAs2D` ends with, which costs a MUL and ADD
  per conv and, in int8, a per-tensor quantized BN scale). No second copy of the
  architecture:
  the clone comes from the model's own config, and parity tests prove it agrees.
- `convert_to_tflite(model, quantize=...)`: none | float16 | dynamic | int8 | int16x8.
  Integer modes calibrate on a representative set of real clips (`representative_clips`)
  and are rejected unless every CONV_2D / FULLY_CONNECTED really runs in integers, except
  the op types named in `keep_float` (int8 only). The export keeps `KEEP_FLOAT` (the
  classifier and temporal-attention dense layers, the softmax) in float32: with an int8
  classifier the demo checkpoint's near-tie clips flipped class (top-1 agreement 95.8 %
  against Keras, 100 % with it kept float; docs/deployment.md, "Faithful exports").
- `op_report` / `quantization_violations`: op histogram by type and kernel dtype, read
  from the interpreter's op and tensor details.
- `compare_outputs`: parity and agreement numbers between two sets of outputs.
- `export_tflite(model, output, ...)`: all of it for one checkpoint (what `python -m
  export.tflite` runs): convert, write the model and its config (`<stem>.json`, which the
  LiteRT runner reads), report ops, size and parity with Keras on validation clips.
"""

from __future__ import annotations

import collections
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from ai_edge_litert.interpreter import Interpreter

from stabn_tf.data.pipeline import make_dataset
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.deploy import ExportError, Patterns, describe
from stabn_tf.deploy.faithfulness import require_faithful, verdict
from stabn_tf.deploy.memory import format_peak_rss, peak_rss_bytes, release_freed_memory
from stabn_tf.disk import write_atomic
from stabn_tf.explain.metrics import pearson
from stabn_tf.inference.litert import LiteRTRunner
from stabn_tf.inference.runner import config_path, write_export_config
from stabn_tf.models import folding
from stabn_tf.models.policy import inference_graph
from stabn_tf.models.stabn import VideoClassifier
from stabn_tf.outputs import (
    LOGITS,
    PERCEPTION,
    PROBABILITIES,
    SPATIAL_ATTENTION,
    TEMPORAL_ATTENTION,
)
from stabn_tf.quiet import caught_stderr

FORBIDDEN_OPS = ("CONV_3D", "MAX_POOL_3D", "AVERAGE_POOL_3D", "CUSTOM", "FLEX")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8", "int16x8")
#: Op types an int8 export computes in float32 by default: the dense layers (the
#: classifier, whose int8 output step of ~0.1 logit turned near ties; the temporal
#: attention's two small layers) and the softmax: ~0.01 % of the model's multiply-adds.
KEEP_FLOAT = ("FULLY_CONNECTED", "SOFTMAX")
#: Unweighted op types `keep_float` may name besides `WEIGHTED_OPS`.
KEEPABLE_OPS = ("SOFTMAX", "LOGISTIC", "MEAN", "MUL", "ADD")
#: Ops whose kernels must run in integers for a model to count as integer-quantized.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
INPUT_NAME = "clips"


# --- the deployment graph ------------------------------------------------------------


def edge_clone(model: keras.Model, fold_batch_norm: bool = True,
               implementation: str = "2d") -> keras.Model:
    """A float32 clone of `model` for export, sharing no variables with it
    (`stabn_tf.models.folding.inference_clone`): every layer rebuilt in float32 (a
    mixed-precision checkpoint exports in float32), each conv → BN pair folded into one
    biased conv with `fold_batch_norm`. `implementation="3d"` rebuilds the video convs and
    pools as single 5D ops (what the OpenVINO int8 IR converts; TFLite cannot run them).
    """
    clone = folding.inference_clone(model, fold_batch_norm=fold_batch_norm, dtype="float32",
                                    implementation=implementation)
    clone.name = f"{model.name}_edge"
    return clone


def deployment_model(model: VideoClassifier, *, edge: bool = False,
                     batch_size: int | None = None, implementation: str = "2d") -> keras.Model:
    """`clips [B, T, H, W, 3] -> {"probabilities", "logits"[, "spatial_attention" [B, T, h, w],
    "temporal_attention" [B, T]]}`, the outputs every deployment format ships.

    `edge=False` wraps `inference_graph(model)`: the trained model's own layers (the Keras
    reference), or in a bf16 model its BN-folded clone; `edge=True` wraps
    `edge_clone(inference_graph(model, fold=False), implementation=implementation)`, the
    graph TFLite converts (with "2d"). The maps are there for ST-ABN models, not for the
    baseline.
    """
    if edge:
        inner = edge_clone(inference_graph(model, fold=False), implementation=implementation)
    else:
        inner = inference_graph(model)
    clips = keras.Input(inner.input.shape[1:], batch_size=batch_size, name=INPUT_NAME)
    out = inner(clips)
    logits = out[PERCEPTION]
    heads = {LOGITS: logits,
             PROBABILITIES: keras.layers.Softmax(name=PROBABILITIES, dtype="float32")(logits)}
    if model.has_attention:
        spatial = out[SPATIAL_ATTENTION]
        heads[SPATIAL_ATTENTION] = keras.layers.Reshape(
            spatial.shape[1:-1], name=SPATIAL_ATTENTION, dtype="float32")(spatial)
        heads[TEMPORAL_ATTENTION] = out[TEMPORAL_ATTENTION]
    return keras.Model(clips, heads, name=f"{model.name}_{'edge' if edge else 'deploy'}")


# --- conversion ----------------------------------------------------------------------


def _representative_fn(clips: Iterable[np.ndarray], shape: Sequence[int]):
    def generate():
        for clip in clips:
            clip = np.asarray(clip, np.float32).reshape(shape)
            yield {INPUT_NAME: clip}
    return generate


def write_graph(model: keras.Model, export_dir: str, batch_size: int = 1) -> None:
    """Writes `model` as a SavedModel with one float32 input `clips` at `batch_size`: the
    graph the TFLite converter and OpenVINO's TensorFlow frontend read."""
    spec = tf.TensorSpec((batch_size, *model.input.shape[1:]), tf.float32, name=INPUT_NAME)
    with caught_stderr():  # TensorFlow's SavedModel writer logs through absl at INFO
        model.export(export_dir, format="tf_saved_model", input_signature=[spec],
                     verbose=False)


def convert_to_tflite(
    model: keras.Model,
    batch_size: int = 1,
    quantize: str = "none",
    representative_data: Iterable[np.ndarray] | None = None,
    integer_input: bool = False,
    notify: Callable[[str], None] | None = None,
    keep_float: Sequence[str] = (),
) -> bytes:
    """TFLite flatbuffer of `model` at its fixed input shape, builtin ops only.

    The input is named `clips`; outputs keep the model's output names. Pass
    `deployment_model(model, edge=True)` for the shipped graph (or
    `explanation_model(model)` for the raw Keras outputs).

    Args:
      quantize: "none" (float32), "float16" (weights), "dynamic" (int8 weights, float
        activations), "int8" (full integer: int8 weights and activations, int32 bias) or
        "int16x8" (int16 activations, int8 weights).
      representative_data: normalised clips `[T, H, W, 3]` (or with a leading 1) for the
        integer modes: real clips, e.g. from `representative_clips` or a `ClipStream`
        (a re-iterable is read again on a retry, an iterator is listed first).
      integer_input: integer modes only: the input tensor is int8 (int16 for int16x8)
        with the scale/zero point in its details, instead of float32 with a QUANTIZE
        op inside. Outputs are always float32.
      notify: receives the one-line note when the MLIR quantizer has to be retried with
        the legacy one, or left weighted ops outside `keep_float` in float (default: an
        absl warning).
      keep_float: int8 only: TFLite op types (e.g. `KEEP_FLOAT`) computed in float32,
        with their inputs dequantized; quantized by the MLIR quantizer, the one that
        can keep ops float. A weighted op it leaves in float beyond these (it did so with
        one of the demo's 30 convs) is named through `notify` and in
        `quantization_violations`, not retried: the legacy quantizer cannot keep ops float.

    Raises:
      ValueError: unknown mode, or an integer mode without representative data.
      RuntimeError: the graph has ops that do not ship (CONV_3D, flex, custom), or an
        integer mode left a conv / fully-connected op in float.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    integer = quantize in ("int8", "int16x8")
    if integer and representative_data is None:
        raise ValueError(f"quantize={quantize!r} needs representative_data (real clips)")
    if integer_input and not integer:
        raise ValueError("integer_input needs quantize='int8' or 'int16x8'")
    keep_float = tuple(keep_float)
    if keep_float and quantize != "int8":
        raise ValueError(f"keep_float is for quantize='int8', got {quantize!r}")
    shape = (batch_size, *model.input.shape[1:])
    clips = representative_data if integer else []
    if iter(clips) is clips:  # a one-pass iterator: the retry below needs a second pass
        clips = list(clips)
    # Through a SavedModel: converting a concrete function directly keeps Keras 3's
    # variables as uninitialised VAR_HANDLEs instead of freezing them.
    with tempfile.TemporaryDirectory() as export_dir:
        write_graph(model, export_dir, batch_size)
        release_freed_memory()  # what tracing the graph left (peak memory)
        flatbuffer = _convert(export_dir, quantize, clips, shape, integer_input, keep_float)
        if integer and not keep_float and quantization_violations(flatbuffer, quantize):
            # The MLIR quantizer (the default) sometimes leaves a conv whose input also
            # feeds a pad/slice chain in float; the legacy quantizer does not.
            left = len(quantization_violations(flatbuffer, quantize))
            (notify or logging.warning)(
                f"{quantize}: the default quantizer left {left} weighted op(s) in float; "
                "converting again with the legacy quantizer")
            flatbuffer = _convert(export_dir, quantize, clips, shape, integer_input,
                                  legacy_quantizer=True)
    del clips  # a listed calibration set is not needed past conversion (peak memory)
    bad = [op for op in op_histogram(flatbuffer) if op.startswith(FORBIDDEN_OPS)]
    if bad:
        raise RuntimeError(f"TFLite graph contains ops that do not ship: {bad}")
    if integer:
        left = quantization_violations(flatbuffer, quantize, keep_float)
        if left and not keep_float:
            raise RuntimeError(f"{quantize} conversion left {len(left)} weighted ops outside "
                               f"{quantize}: {left[:5]}")
        if left:
            (notify or logging.warning)(
                f"{quantize}: the quantizer left {len(left)} weighted op(s) besides "
                f"{', '.join(keep_float)} in float32: {'; '.join(_short(op) for op in left)}")
    return flatbuffer


def _short(violation: str) -> str:
    """A `quantization_violations` entry with only the first of its fused names."""
    return violation.split(";")[0]


def _convert(saved_model_dir: str, quantize: str, clips: Iterable[np.ndarray],
             shape: Sequence[int], integer_input: bool, keep_float: Sequence[str] = (),
             legacy_quantizer: bool = False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize in ("int8", "int16x8"):
        converter.representative_dataset = _representative_fn(clips, shape)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        if integer_input:
            converter.inference_input_type = tf.int8 if quantize == "int8" else tf.int16
        if legacy_quantizer:
            converter.experimental_new_quantizer = False
        if keep_float:
            # Calibrate only, then quantize with the op types denied: what the public
            # tf.lite.experimental.QuantizationDebugger does for its denylisted_ops, without
            # also building its instrumented debug model.
            converter._experimental_calibrate_only = True
    # The converter's MLIR/quantizer chatter (C++ lines and Python warnings) is shown only
    # when the conversion fails; the export checks the result itself.
    with caught_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flatbuffer = converter.convert()
        if keep_float:
            from tensorflow.lite.python import convert as lite_convert  # the debugger's call
            del converter  # calibration is done: its graph and interpreter are freed
            release_freed_memory()  # before the quantizer's own peak (memory)
            flatbuffer = lite_convert.mlir_quantize(
                flatbuffer, input_data_type=tf.int8 if integer_input else tf.float32,
                output_data_type=tf.float32, denylisted_ops=list(keep_float))
        return flatbuffer


def representative_clips(file_pattern: Patterns, count: int,
                         preprocessor: ClipPreprocessor) -> np.ndarray:
    """Up to `count` real clips `[n, T, S, S, 3]` from TFRecord shards, prepared exactly as
    the model is fed at inference (`preprocessor`'s frames and size; the eval pipeline:
    centre segments, centre crop, ImageNet normalisation), read round-robin over the
    shards so the set spans the dataset rather than the first file. Fewer (even none)
    when the shards hold fewer: the caller decides whether that is enough."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    data = make_dataset(file_pattern, preprocessor=preprocessor, training=False, batch_size=1)
    clips = [np.asarray(x[0]) for x, _ in data.take(count)]
    shape = (preprocessor.num_frames, preprocessor.image_size, preprocessor.image_size, 3)
    return np.stack(clips) if clips else np.zeros((0, *shape), np.float32)


class ClipStream:
    """Up to `count` real clips of TFRecord shards, prepared as `representative_clips`
    prepares them, read again on every pass instead of held: the full-size model's 128
    calibration clips are 2.5 GB as one array, one at a time 19 MB. `len()` is how many
    there are (counted on the first pass); each `iter()` starts a new pass, so a converter
    that calibrates twice (TFLite's quantizer retry, NNCF's statistics) sees the same set."""

    def __init__(self, file_pattern: Patterns, count: int, preprocessor: ClipPreprocessor):
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.file_pattern, self.count, self.preprocessor = file_pattern, count, preprocessor
        self._length: int | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        data = make_dataset(self.file_pattern, preprocessor=self.preprocessor, training=False,
                            batch_size=1)
        for x, _ in data.take(self.count):
            yield np.asarray(x[0])

    def __len__(self) -> int:
        if self._length is None:
            self._length = sum(1 for _ in make_dataset(
                self.file_pattern, preprocessor=self.preprocessor, training=False,
                batch_size=1).take(self.count))
        return self._length


def calibrate_batch_norm(model: keras.Model, clips: np.ndarray, chunk: int | None = None) -> None:
    """Set every BN's moving statistics to those of `clips` (the mean over chunks).

    For untrained models in tests and benchmarks: He-initialised convs behind identity BN
    give activations (and logits) in the hundreds, unlike a trained network, which skews
    parity tolerances and int8 scales. `chunk` bounds memory for large models.
    """
    norms = [la for la in model._flatten_layers()  # Keras has no public recursive listing
             if isinstance(la, keras.layers.BatchNormalization)]
    saved = [la.momentum for la in norms]
    chunk = chunk or len(clips)
    try:
        for i, start in enumerate(range(0, len(clips), chunk)):
            for layer in norms:
                layer.momentum = i / (i + 1)  # running mean of the chunks' statistics
            model(clips[start:start + chunk], training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


# --- inspection ----------------------------------------------------------------------


def _details(flatbuffer: bytes) -> tuple[list[dict], dict[int, dict]]:
    with caught_stderr():
        interpreter = Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return interpreter._get_ops_details(), tensors  # the only op listing LiteRT's Python API has


def _dtype(tensors: Mapping[int, dict], index: int) -> str | None:
    return None if index < 0 else np.dtype(tensors[index]["dtype"]).name


def kernel_type(op: Mapping, tensors: Mapping[int, dict]) -> str:
    """What an op computes in: "int8", "float32", "int16x8" (int16 activations × int8
    weights), "float32×int8" (hybrid / dynamic-range), or "a→b" for (de)quantize."""
    inputs = [_dtype(tensors, i) for i in op["inputs"]]
    output = _dtype(tensors, op["outputs"][0]) if len(op["outputs"]) else None
    if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
        return f"{inputs[0]}→{output}"
    if op["op_name"] in WEIGHTED_OPS and len(inputs) > 1:
        act, weight = inputs[0], inputs[1]
        if act == weight:
            return act
        if (act, weight) == ("int16", "int8"):
            return "int16x8"
        return f"{act}×{weight}"
    return inputs[0] if inputs else str(output)


def op_report(flatbuffer: bytes) -> collections.Counter[tuple[str, str]]:
    """How many ops of each (type, kernel dtype) the model has, e.g. ("CONV_2D", "int8")."""
    op_list, tensors = _details(flatbuffer)
    return collections.Counter((op["op_name"], kernel_type(op, tensors)) for op in op_list)


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """How many times each op type occurs in a TFLite model."""
    op_list, _ = _details(flatbuffer)
    return dict(collections.Counter(op["op_name"] for op in op_list))


def quantization_violations(flatbuffer: bytes, quantize: str = "int8",
                            keep_float: Sequence[str] = ()) -> list[str]:
    """Weighted ops (conv, fully-connected) that do not run in `quantize` ("int8":
    int8 input, weights and output; "int16x8": int16 input/output, int8 weights; the
    bias int32/int64 or absent), other than the op types in `keep_float`. Empty for a
    genuinely integer model."""
    act = {"int8": "int8", "int16x8": "int16"}[quantize]
    bias_ok = {None, "int32", "int64"}
    op_list, tensors = _details(flatbuffer)
    bad = []
    for op in op_list:
        if op["op_name"] not in WEIGHTED_OPS or op["op_name"] in keep_float:
            continue
        dtypes = [_dtype(tensors, i) for i in op["inputs"]] + [None]
        out = _dtype(tensors, op["outputs"][0])
        if not (dtypes[0] == act and dtypes[1] == "int8" and out == act
                and dtypes[2] in bias_ok):
            name = tensors[op["outputs"][0]]["name"]
            bad.append(f"{op['op_name']}({', '.join(map(str, dtypes[:3]))} -> {out}) {name}")
    return bad


def format_op_report(report: Mapping[tuple[str, str], int]) -> str:
    """The op histogram as aligned lines, most frequent first."""
    rows = sorted(report.items(), key=lambda kv: (-kv[1], kv[0]))
    width = max((len(f"{op} [{kind}]") for (op, kind), _ in rows), default=0)
    return "\n".join(f"  {f'{op} [{kind}]':<{width}}  {count:4d}" for (op, kind), count in rows)


# --- agreement -----------------------------------------------------------------------


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                    labels: np.ndarray | None = None) -> dict[str, float]:
    """Parity and agreement of `candidate` against `reference` (batched outputs with the
    `deployment_model` names; top-1 from the logits, or the probabilities where either
    lacks logits): max |diff| per output, top-1 agreement, temporal and
    spatial attention Pearson correlation over all frames/cells, and top-1 accuracy of
    both when `labels` are given (fractions, not percent)."""
    scores = LOGITS if LOGITS in reference and LOGITS in candidate else PROBABILITIES
    out: dict[str, float] = {"clips": float(len(reference[scores]))}
    for key in reference:
        if key in candidate:
            diff = np.abs(np.asarray(candidate[key], np.float64) - reference[key])
            out[f"max_abs_diff/{key}"] = float(diff.max())
    ref_top1 = np.argmax(reference[scores], axis=-1)
    cand_top1 = np.argmax(candidate[scores], axis=-1)
    out["top1_agreement"] = float(np.mean(ref_top1 == cand_top1))
    if labels is not None:
        labels = np.asarray(labels)
        out["reference_top1"] = float(np.mean(ref_top1 == labels))
        out["candidate_top1"] = float(np.mean(cand_top1 == labels))
    for key in (TEMPORAL_ATTENTION, SPATIAL_ATTENTION):
        if key in reference and key in candidate:
            out[f"pearson/{key}"] = pearson(reference[key], candidate[key])
    return out


# --- export of a trained model ---------------------------------------------------------

#: Fewer calibration clips than this get a warning: int8 ranges from a handful of clips
#: rarely cover what the model sees in use.
FEW_CALIBRATION_CLIPS = 16


def calibration_clips(model: VideoClassifier, file_pattern: Patterns | None, count: int,
                      quantize: str, notify: Callable[[str], None]) -> ClipStream:
    """The real clips an integer export calibrates on, streamed (`ClipStream`): `count`,
    or all the shards hold when that is fewer (said in one line through `notify`, with a
    warning when very few); `ExportError` when there are none or no data at all."""
    if not file_pattern:
        raise ExportError(f"--quantize={quantize} calibrates on real clips: pass "
                          "--representative_data=<training TFRecord pattern>")
    if count < 1:
        raise ExportError(f"--num_representative={count}: must be >= 1")
    clips = ClipStream(file_pattern, count, model.preprocessor)
    if not len(clips):
        raise ExportError(f"--quantize={quantize} calibrates on real clips and "
                          f"{describe(file_pattern)} holds none: pass "
                          "--representative_data=<TFRecords with clips>")
    if len(clips) < count:
        few = (f"; warning: very few, the {quantize} ranges may not cover real inputs "
               "(--representative_data can add clips)" if len(clips) < FEW_CALIBRATION_CLIPS
               else "")
        notify(f"calibrating on the {len(clips)} clips that {describe(file_pattern)} holds "
               f"({count} requested){few}")
    return clips


def parity(model: VideoClassifier, flatbuffer: bytes, file_pattern: Patterns,
           num_clips: int = 0, num_threads: int | None = None) -> dict[str, float]:
    """`compare_outputs` of the TFLite model (run by LiteRT) against the Keras model
    (`deployment_model`, float32) on the first `num_clips` clips (0: all) of the
    TFRecords, with the model's own eval preprocessing; with top-1 accuracy of both."""
    return runner_parity(
        model, lambda: LiteRTRunner(model_content=flatbuffer, num_threads=num_threads).run,
        file_pattern, num_clips)


def runner_parity(model: VideoClassifier,
                  open_runner: Callable[[], Callable[[np.ndarray], Mapping[str, np.ndarray]]],
                  file_pattern: Patterns, num_clips: int = 0) -> dict[str, float]:
    """`parity` of any exported model: `open_runner()` loads it and returns its `run`,
    which maps normalised clips `[B, T, S, S, 3]` to its outputs by `deployment_model`
    name (e.g. a runner's `run`).

    The Keras reference sees every clip first and is freed before the exported model is
    loaded: at full size each holds gigabytes while it runs, and one after the other
    they do not add up (the clips are read twice, in the same fixed eval order)."""
    batch = parity_batch_size(model.preprocessor)
    data = make_dataset(file_pattern, preprocessor=model.preprocessor, training=False,
                        batch_size=batch)
    if num_clips:
        data = data.unbatch().take(num_clips).batch(batch)
    reference = deployment_model(model)
    ref_out: list[dict] = []
    labels = []
    for clips, targets in data:
        ref_out.append({k: np.asarray(v) for k, v in reference(clips, training=False).items()})
        labels.append(targets[PERCEPTION].numpy())
    if not labels:
        raise ExportError(f"{describe(file_pattern)} holds no clips to measure parity on")
    del reference
    release_freed_memory()
    run = open_runner()
    cand_out = [dict(run(clips.numpy())) for clips, _ in data]
    del run
    release_freed_memory()
    return compare_outputs(stack_outputs(ref_out), stack_outputs(cand_out),
                           np.concatenate(labels))


#: Pixels (frames × height × width) of the clips one parity batch holds: 8 demo clips
#: (8 × 64²), one full-size clip (32 × 224²), whose Keras float32 forward alone holds
#: gigabytes of activations per clip.
PARITY_BATCH_PIXELS = 1 << 21


def parity_batch_size(preprocessor: ClipPreprocessor) -> int:
    """How many clips a parity run feeds the Keras reference at once: up to 8, fewer for
    large clips (`PARITY_BATCH_PIXELS`), so measuring parity does not set an export's peak
    memory."""
    pixels = preprocessor.num_frames * preprocessor.image_size ** 2
    return max(1, min(8, PARITY_BATCH_PIXELS // pixels))


def stack_outputs(outs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batches of outputs by name → one array per name."""
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def export_tflite(model: VideoClassifier, output: str, quantize: str = "none", *,
                  representative_data: Patterns | None = None, num_representative: int = 128,
                  integer_input: bool = False, eval_data: Patterns | None = None,
                  num_eval: int = 0, num_threads: int | None = None,
                  accept_unfaithful: bool = False, keep_float: Sequence[str] = KEEP_FLOAT,
                  notify: Callable[[str], None] = lambda message: None) -> dict:
    """Converts `model` (the BN-folded edge graph, batch 1), measures it, writes `output`
    and its config `<stem>.json`; returns the report (`format_report` prints it).

    Integer modes calibrate on `num_representative` clips of `representative_data` (or
    all there are: `calibration_clips`); int8 computes the op types in `keep_float` in
    float32 (`convert_to_tflite`; empty: every op int8). Parity is measured on `eval_data`
    when given,
    before anything is written, and a model that does not keep the explanation is refused
    (`faithfulness.require_faithful`) unless `accept_unfaithful`. `notify` receives
    progress lines worth showing before the report.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize={quantize}: choose from {QUANTIZATIONS}")
    keep_float = tuple(keep_float) if quantize == "int8" else ()
    unknown = sorted(set(keep_float) - set(WEIGHTED_OPS + KEEPABLE_OPS))
    if unknown:
        raise ExportError(f"--keep_float={','.join(unknown)}: choose TFLite op types from "
                          f"{', '.join(dict.fromkeys(WEIGHTED_OPS + KEEPABLE_OPS))}")
    clips = None
    if quantize in ("int8", "int16x8"):
        clips = calibration_clips(model, representative_data, num_representative, quantize,
                                  notify)
    edge = deployment_model(model, edge=True, batch_size=1)
    weight_bytes = 4 * sum(int(np.prod(w.shape)) for w in edge.weights)
    flatbuffer = convert_to_tflite(edge, quantize=quantize, representative_data=clips,
                                   integer_input=integer_input, notify=notify,
                                   keep_float=keep_float)
    del edge  # the float graph is not needed past conversion (peak memory)
    release_freed_memory()
    report = {
        "output": output, "config": config_path(output), "quantize": quantize,
        "integer_input": integer_input, "keep_float": list(keep_float),
        "bytes": len(flatbuffer),
        "float32_weight_bytes": weight_bytes,
        "ops": {f"{op} [{kind}]": n for (op, kind), n in op_report(flatbuffer).most_common()},
        "representative_clips": 0 if clips is None else len(clips),
    }
    if clips is not None:
        report["quantization_violations"] = quantization_violations(flatbuffer, quantize,
                                                                    keep_float)
    if eval_data:
        report["parity"] = parity(model, flatbuffer, eval_data, num_eval, num_threads)
        require_faithful(report["parity"], f"the {quantize} TFLite model", accept_unfaithful,
                         PARITY_TITLE + format_parity(report["parity"]), notify)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_atomic(output, flatbuffer)  # a full disk leaves the old file, not half a model
    write_export_config(output, model, "tflite", quantize=quantize, integer_input=integer_input,
                        keep_float=list(keep_float))
    report["peak_rss_bytes"] = peak_rss_bytes()
    return report


#: The line above a parity block.
PARITY_TITLE = "parity with Keras (float32) on the validation TFRecords:\n"


def format_parity(numbers: Mapping[str, float], candidate: str = "TFLite") -> str:
    """The parity block of the report; `candidate` names the exported model's format."""
    lines = [f"  clips: {int(numbers['clips'])}"]
    for key, value in numbers.items():
        if key.startswith("max_abs_diff/"):
            lines.append(f"  max |Δ| {key.split('/', 1)[1]:<20} {value:.3g}")
    lines.append(f"  top-1 agreement with Keras    {numbers['top1_agreement']:.2%}")
    if "reference_top1" in numbers:
        lines.append(f"  top-1 accuracy Keras / {candidate} {numbers['reference_top1']:.2%} / "
                     f"{numbers['candidate_top1']:.2%} "
                     f"({100 * (numbers['candidate_top1'] - numbers['reference_top1']):+.2f} "
                     "points)")
    for key in (TEMPORAL_ATTENTION, SPATIAL_ATTENTION):
        if f"pearson/{key}" in numbers:
            lines.append(f"  Pearson r {key:<19} {numbers[f'pearson/{key}']:.4f}")
    lines.append(f"  {verdict(numbers)}")
    return "\n".join(lines)


def format_report(report: Mapping) -> str:
    """`export_tflite`'s report as the text `python -m export.tflite` prints."""
    size = report["bytes"]
    ratio = size / report["float32_weight_bytes"]
    lines = [f"wrote {report['output']} ({size / 1e6:.2f} MB, {ratio:.1%} of the float32 "
             f"weights' {report['float32_weight_bytes'] / 1e6:.2f} MB) and its config "
             f"{report['config']}",
             f"quantize={report['quantize']}"
             + (f", calibrated on {report['representative_clips']} training clips"
                if report["representative_clips"] else "")
             + (", integer input" if report["integer_input"] else ", float32 input")
             + (f"; kept in float32: {', '.join(report['keep_float'])}"
                if report.get("keep_float") else ""),
             "ops [kernel dtype]:"]
    lines += [f"  {name:<34} {count:4d}" for name, count in report["ops"].items()]
    if "quantization_violations" in report:
        left = report["quantization_violations"]
        besides = " (besides those kept in float32)" if report.get("keep_float") else ""
        lines.append(f"every CONV_2D / FULLY_CONNECTED in {report['quantize']}{besides}: "
                     + ("yes" if not left else
                        f"NO, {len(left)} left in float32: {'; '.join(map(_short, left))}"))
    if "parity" in report:
        lines.append(PARITY_TITLE + format_parity(report["parity"]))
    lines.append(format_peak_rss(report))
    return "\n".join(lines)
