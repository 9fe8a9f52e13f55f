"""OpenVINO export of ST-ABN for Intel and AMD servers: a float32 or int8 IR.

- `convert_to_openvino(model)`: the IR of a deployment graph. The route is Keras →
  SavedModel at batch 1 → OpenVINO's TensorFlow frontend, on `ir_graph(model, quantize)`
  (BN folded into the convs, float32), because it is the most exact and the
  fastest we measured: the IR holds the very ops Keras runs (max |Δp| ~1e-6 against Keras)
  and keeps the signature's names (`clips` in; `probabilities`, `logits`,
  `spatial_attention`, `temporal_attention` out). Reading our float `.tflite` instead
  drops those names and ran bf16 ~10 % slower (full R50, 2 threads, AMX); a dynamic
  batch ran about 2× slower in bf16 and int8 (the CPU plugin then keeps the reshapes
  around `Conv3DAs2D` as runtime ops), so the IR takes one clip per call, as the TFLite
  model does. Weights are stored as float32: OpenVINO would otherwise halve them to fp16.
- `quantize_int8(ir, clips)`: NNCF post-training quantization on real clips: every
  convolution and matmul gets int8 weights and int8 inputs (FakeQuantize), the rest stays
  float; `quantization_violations` proves it from the IR.
- `export_openvino(model, output, ...)`: all of it for one checkpoint (what `python -m
  export.openvino` runs): convert, quantize, write `<stem>.xml`, `<stem>.bin` and the
  config `<stem>.json` the runner reads, and measure parity with Keras (`OpenVINORunner`).

The int8 IR is converted from the video ops' 5D form (`ir_graph`, `implementation="3d"`,
docs/architecture.md §2): one Conv3D per conv, no reshapes, so the CPU plugin fuses the
bias, residual Add, ReLU and requantization into each int8 convolution. With the 2D form
(reshapes after every conv) those chains ran as 34 separate int8 kernels (40 ms of 251) and
the (kt, 1) convs ran at half the speed; the 5D form took the full R50 (one clip, 2
threads, AMX-INT8 Xeon) from 1.12× to 1.32–1.47× the speed of the TFLite int8 model
(`benchmarks/results/`). The float IR keeps the 2D form: in bf16 the 5D kt×1×1 convs at
14×14 ran ~6× slower and the IR 2× slower. Tried on the 2D form and dropped, each slower
or equal: frame-wise ops moved onto folded frames, `SNIPPETS_MODE=DISABLE`, unquantized
residual Adds, an f32 hint, `CPU_DENORMALS_OPTIMIZATION`, `ENABLE_CPU_PINNING`, and a
temporal conv as a 1×1 over time-shifted copies stacked on channels. Keeping only the
stem (C_in = 3) in 2D was slower too (1.28×): its reshape splits the graph again.

The calibration set follows the TFLite export's rules (`tflite.calibration_clips`).
Precision (f32 / bf16) is not part of the IR: it is chosen when the IR is compiled
(`OpenVINORunner(precision=...)`).
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np

from stabn_tf.deploy import ExportError, Patterns
from stabn_tf.deploy.faithfulness import require_faithful
from stabn_tf.deploy.memory import format_peak_rss, peak_rss_bytes, release_freed_memory
from stabn_tf.deploy.tflite import (
    PARITY_TITLE,
    calibration_clips,
    deployment_model,
    format_parity,
    runner_parity,
    write_graph,
)
from stabn_tf.disk import publish, require_space
from stabn_tf.inference.openvino import (
    FORMAT,
    OpenVINORunner,
    compile_config,
    import_openvino,
    weights_path,
)
from stabn_tf.inference.runner import config_path, write_export_config
from stabn_tf.models.stabn import VideoClassifier
from stabn_tf.outputs import SPATIAL_ATTENTION, TEMPORAL_ATTENTION
from stabn_tf.quiet import caught_stderr

if TYPE_CHECKING:
    import openvino as ov

QUANTIZATIONS = ("none", "int8")
#: The form of the video ops each IR is converted from (see the module docstring).
IMPLEMENTATION = {"none": "2d", "int8": "3d"}
#: OpenVINO op types that carry weights: what an int8 IR must run in integers.
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul")
#: The CPU plugin's names for them in the graph it executes.
RUNTIME_WEIGHTED_LAYERS = ("Convolution", "FullyConnected", "MatMul", "Deconvolution")
#: Ops between an int8 weight constant and its consumer: dequantization and layout.
_WEIGHT_PATH = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "Squeeze",
                "Unsqueeze")


def ir_graph(model: VideoClassifier, quantize: str) -> keras.Model:
    """The deployment graph (BN folded, batch 1) that the `quantize` IR is converted from."""
    return deployment_model(model, edge=True, batch_size=1,
                            implementation=IMPLEMENTATION[quantize])


def convert_to_openvino(model: keras.Model) -> ov.Model:
    """The OpenVINO IR (in memory) of `model`, a deployment graph with input `clips`
    `[B, T, H, W, 3]`, at batch 1."""
    ov = import_openvino()
    with tempfile.TemporaryDirectory() as export_dir:
        write_graph(model, export_dir, batch_size=1)
        return ov.convert_model(export_dir)


def _ancestors(output) -> set[str]:
    """Friendly names of every op an IR output depends on."""
    seen: set[str] = set()
    stack = [output.get_node()]
    while stack:
        node = stack.pop()
        for value in node.input_values():
            source = value.get_node()
            if source.get_friendly_name() not in seen:
                seen.add(source.get_friendly_name())
                stack.append(source)
    return seen


def head_region(ir: ov.Model) -> set[str]:
    """Every op of the attention heads: those that only one of the two explanation
    outputs depends on, found from the graph, not from names. Empty for a model without
    attention."""
    outputs = {name: out for out in ir.outputs for name in out.get_names()}
    if TEMPORAL_ATTENTION not in outputs or SPATIAL_ATTENTION not in outputs:
        return set()
    return _ancestors(outputs[TEMPORAL_ATTENTION]) ^ _ancestors(outputs[SPATIAL_ATTENTION])


def attention_heads(ir: ov.Model) -> list[str]:
    """The weighted ops of the attention heads (`head_region`): the temporal head's 3×3
    conv, frame mixing and two dense layers, the spatial head's 1×1 conv."""
    region = head_region(ir)
    return [node.get_friendly_name() for node in ir.get_ordered_ops()
            if node.get_type_name() in WEIGHTED_OPS and node.get_friendly_name() in region]


def quantize_int8(ir: ov.Model, clips: Iterable[np.ndarray],
                  keep_float: Sequence[str] = ()) -> ov.Model:
    """`ir` with int8 convolutions and matmuls, calibrated by NNCF on `clips` (normalised
    `[T, S, S, 3]`, one batch-1 forward each; a re-iterable such as `ClipStream` is read
    clip by clip), except the weighted ops named in `keep_float` (e.g.
    `attention_heads(ir)`), which stay float32.

    Raises:
      ExportError: NNCF is not installed.
      RuntimeError: a weighted op outside `keep_float` was left in float.
    """
    try:
        import nncf  # optional dependency, with openvino (the "openvino" extra)
    except ImportError:
        raise ExportError('--quantize=int8 needs NNCF: pip install "stabn_tf[openvino]" '
                          "(or nncf>=3.0)") from None

    if iter(clips) is clips:  # NNCF may read the set more than once
        clips = list(clips)
    from nncf.quantization.advanced_parameters import (  # optional, as nncf above
        AdvancedQuantizationParameters,
    )
    from nncf.quantization.range_estimator import (  # optional, as nncf above
        RangeEstimatorParametersSet,
    )

    dataset = nncf.Dataset(clips, lambda clip: np.asarray(clip, np.float32)[None])
    ignored = nncf.IgnoredScope(names=list(keep_float)) if keep_float else None
    # Activation ranges from the calibration set's true min and max: NNCF's default
    # estimator clips the rare large activations, which cost little top-1 but bent Mt
    # (Pearson 0.926 on the demo checkpoint, 0.9996 with min/max).
    ranges = AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    # NNCF's rich progress bars go to stdout, its INFO lines to stderr: the CLI says
    # itself what is being calibrated.
    log = logging.getLogger("nncf")
    level = log.level
    log.setLevel(logging.WARNING)  # its INFO lines list the ignored scope
    try:
        with caught_stderr(), contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(ir, dataset, subset_size=len(clips),
                                      target_device=nncf.TargetDevice.CPU,
                                      ignored_scope=ignored, advanced_parameters=ranges)
    finally:
        log.setLevel(level)
    left = weight_violations(quantized, keep_float)
    if left:
        raise RuntimeError(f"int8 quantization left {len(left)} weighted ops in float: "
                           f"{left[:5]}")
    return quantized


# --- inspection ----------------------------------------------------------------------


def _weights_source(node):
    """What a weighted op's weights come from, looking through dequantization and layout
    ops: an int8 Constant in a quantized IR, a float one (or FakeQuantize) otherwise."""
    node = node.input_value(1).get_node()
    while node.get_type_name() in _WEIGHT_PATH:
        node = node.input_value(0).get_node()
    return node


def weight_violations(ir: ov.Model, keep_float: Sequence[str] = ()) -> list[str]:
    """Weighted ops of the IR, other than those named in `keep_float`, whose weights are
    not stored as int8; empty after `quantize_int8`."""
    bad = []
    for node in ir.get_ordered_ops():
        if node.get_type_name() not in WEIGHTED_OPS or node.get_friendly_name() in keep_float:
            continue
        source = _weights_source(node)
        if not (source.get_type_name() == "Constant"
                and source.get_output_element_type(0).get_type_name() in ("i8", "u8")):
            bad.append(f"{node.get_type_name()} {node.get_friendly_name()} "
                       f"({source.get_type_name()} {source.get_output_element_type(0)})")
    return bad


def _runtime_layers(compiled: ov.CompiledModel) -> list[tuple[str, str, str]]:
    """(layer type, precision, original layer names) of each weighted layer in the graph
    the CPU plugin executes: the precision a kernel really computes in, after OpenVINO
    has propagated int8 through pads, slices and pools and fused what it could."""
    layers = []
    for node in compiled.get_runtime_model().get_ordered_ops():
        info = node.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in RUNTIME_WEIGHTED_LAYERS:
            precision = info["runtimePrecision"].astype(str).lower()
            layers.append((kind, "int8" if precision in ("i8", "u8") else precision,
                           info["originalLayersNames"].astype(str)))
    return layers


def op_report(compiled: ov.CompiledModel) -> collections.Counter[tuple[str, str]]:
    """How many weighted layers of each (type, runtime precision) the compiled model
    runs, e.g. ("Convolution", "int8"), ("FullyConnected", "bf16")."""
    return collections.Counter((kind, precision)
                               for kind, precision, _ in _runtime_layers(compiled))


def quantization_violations(compiled: ov.CompiledModel,
                            keep_float: Iterable[str] = ()) -> list[str]:
    """Weighted layers the CPU runs in anything but int8, other than those made from the
    ops named in `keep_float` (e.g. `head_region`: a fused layer keeps the names of its
    bias and activation, not always its MatMul's); empty for an int8 IR."""
    kept = set(keep_float)
    return [f"{kind} [{precision}] {names[:80]}"
            for kind, precision, names in _runtime_layers(compiled)
            if precision != "int8" and not kept.intersection(names.split(","))]


# --- export of a trained model ---------------------------------------------------------


def compile_ir(ir: ov.Model, precision: str = "float32",
               num_threads: int | None = None) -> ov.CompiledModel:
    """`ir` compiled for this machine's CPU as `OpenVINORunner` compiles it."""
    core = import_openvino().Core()
    return core.compile_model(ir, "CPU", compile_config(core, precision, num_threads))


def save_ir(ir: ov.Model, output: str, expected_bytes: int = 0, shown: str | None = None
            ) -> None:
    """Writes `output` (.xml) and its `.bin`, weights as they are (no fp16 compression);
    each file appears whole. A disk without `expected_bytes` free is refused first; one
    that fills while OpenVINO writes (which it reports as a bare iostream error) is a
    `DiskFullError` too. Errors name `shown` (default: `output`), the file the user asked
    for when `output` is a staged copy."""
    shown = shown or output
    ov = import_openvino()
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    require_space(shown, expected_bytes)  # `shown` lies beside `output`: the same disk
    with tempfile.TemporaryDirectory(dir=directory) as staging:
        staged = os.path.join(staging, "model.xml")
        try:
            ov.save_model(ir, staged, compress_to_fp16=False)
        except RuntimeError as e:
            require_space(shown, expected_bytes)  # the disk filled: DiskFullError
            raise ExportError(f"OpenVINO cannot write {shown} "
                              f"({str(e).strip().splitlines()[-1]})") from None
        publish(weights_path(staged), weights_path(output))
        publish(staged, output)


def export_openvino(model: VideoClassifier, output: str, quantize: str = "none", *,
                    representative_data: Patterns | None = None, num_representative: int = 128,
                    eval_data: Patterns | None = None, num_eval: int = 0,
                    precision: str = "float32", num_threads: int | None = None,
                    accept_unfaithful: bool = False,
                    notify: Callable[[str], None] = lambda message: None) -> dict:
    """Converts `model` (the BN-folded edge graph), quantizes it for `quantize="int8"`
    (the attention heads kept in float32: `attention_heads`), measures parity with Keras on
    `eval_data` in `precision`, and writes `output` (.xml), its weights (.bin) and its
    config (.json); returns the report (`format_report` prints it). int8 calibrates on
    `num_representative` clips of `representative_data` (or all there are:
    `calibration_clips`), streamed. The three files are staged beside `output` and
    published only when the IR keeps the explanation (`faithfulness.require_faithful`) or
    `accept_unfaithful`; `notify` receives progress lines.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize={quantize}: choose from {QUANTIZATIONS}")
    if not output.endswith(".xml"):
        raise ExportError(f"--output={output}: an OpenVINO IR is a .xml file (its weights "
                          "go to the .bin beside it)")
    clips = None
    if quantize == "int8":
        clips = calibration_clips(model, representative_data, num_representative, quantize,
                                  notify)
    start = time.perf_counter()
    edge = ir_graph(model, quantize)
    weight_bytes = 4 * sum(int(np.prod(w.shape)) for w in edge.weights)
    ir = convert_to_openvino(edge)
    del edge  # the Keras clone is not needed past conversion (peak memory)
    release_freed_memory()
    converted = time.perf_counter()
    kept: list[str] = []
    region = head_region(ir)
    if clips is not None:
        kept = attention_heads(ir)
        ir = quantize_int8(ir, clips, keep_float=kept)
    quantized = time.perf_counter()
    compiled = compile_ir(ir, precision, num_threads)
    left = quantization_violations(compiled, region) if clips is not None else []
    if left:
        raise ExportError(f"int8 IR rejected: the CPU would run {len(left)} weighted layers "
                          f"in float: {left[:3]}")
    report = {
        "output": output, "weights": weights_path(output), "config": config_path(output),
        "quantize": quantize, "float32_weight_bytes": weight_bytes, "precision": precision,
        "ops": {f"{op} [{kind}]": n for (op, kind), n in op_report(compiled).most_common()},
        "representative_clips": 0 if clips is None else len(clips),
        "convert_seconds": converted - start, "quantize_seconds": quantized - converted,
    }
    del compiled
    if clips is not None:
        report["quantization_violations"] = left
        report["kept_float"] = kept
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".openvino-", dir=directory) as staging:
        staged = os.path.join(staging, os.path.basename(output))
        save_ir(ir, staged, weight_bytes // (4 if clips is not None else 1), shown=output)
        del ir
        release_freed_memory()
        write_export_config(staged, model, FORMAT, quantize=quantize)
        report["bytes"] = os.path.getsize(staged) + os.path.getsize(weights_path(staged))
        if eval_data:
            report["parity"] = runner_parity(
                model, lambda: OpenVINORunner(staged, precision=precision,
                                              num_threads=num_threads).run,
                eval_data, num_eval)
            what = f"the {quantize if quantize == 'int8' else 'float'} IR in {precision}"
            require_faithful(report["parity"], what, accept_unfaithful,
                             PARITY_TITLE + format_parity(report["parity"], "OpenVINO"),
                             notify)
        for name in (weights_path, config_path, str):
            publish(name(staged), name(output))
    report["peak_rss_bytes"] = peak_rss_bytes()
    return report


def format_report(report: Mapping) -> str:
    """`export_openvino`'s report as the text `python -m export.openvino` prints."""
    size = report["bytes"]
    ratio = size / report["float32_weight_bytes"]
    lines = [f"wrote {report['output']} and {report['weights']} ({size / 1e6:.2f} MB, "
             f"{ratio:.1%} of the float32 weights' {report['float32_weight_bytes'] / 1e6:.2f} "
             f"MB) and its config {report['config']}",
             f"quantize={report['quantize']}"
             + (f", calibrated on {report['representative_clips']} training clips"
                if report["representative_clips"] else "")
             + f"; converted in {report['convert_seconds']:.1f} s"
             + (f", quantized in {report['quantize_seconds']:.1f} s"
                if report["representative_clips"] else ""),
             f"weighted layers [the precision this CPU runs them in, {report['precision']}"
             " hint]:"]
    lines += [f"  {name:<22} {count:4d}" for name, count in report["ops"].items()]
    if "quantization_violations" in report:
        left, kept = report["quantization_violations"], report.get("kept_float", [])
        lines.append("every Convolution / MatMul in int8"
                     + (f" but the {len(kept)} of the attention heads (float32, they "
                        "compute Mt and Ms)" if kept else "")
                     + ": " + ("yes" if not left else f"NO: {left}"))
    if "parity" in report:
        lines += [f"parity with Keras (float32) on the validation TFRecords, OpenVINO in "
                  f"{report['precision']}:",
                  format_parity(report["parity"], candidate="OpenVINO")]
    lines.append(format_peak_rss(report))
    return "\n".join(lines)
