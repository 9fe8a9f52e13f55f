"""TFLite for phones and boards: `python -m export.tflite --checkpoint=... --quantize=int8`.

Converts the 2D-op graph of a trained checkpoint (DESIGN.md §2; `stabn_tf.tflite`) with
builtin ops only, batch 1, the model's own T/H/W. Input `clips`: normalised float32
`[1, T, S, S, 3]` (exactly what `stabn_tf.data.load_video` returns); with
`--integer_input`, int8 (int16 for int16x8) quantized with the scale / zero point stored
in the input tensor's details (`stabn_tf.lite.LiteModel` applies them). Outputs, always
float32: `probabilities [1, K]`, `logits [1, K]`, `spatial_attention [1, T, h, w]`,
`temporal_attention [1, T]`.

Quantization (`--quantize`): none (float32), float16 (weights), dynamic (int8 weights,
float activations), int8 (full integer, calibrated on `--num_representative` real clips
of the training TFRecords), int16x8 (int16 activations, int8 weights). Writes
`labels.txt` next to the model and prints the op histogram by type and kernel dtype, the
file size and the parity against the Keras model on the validation TFRecords.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from absl import app, flags

from export import ExportError, load_checkpoint, model_spec, run_data
from stabn_tf import tflite as lite_convert
from stabn_tf.data import make_dataset, write_labels
from stabn_tf.lite import LiteModel


def evaluate(model, flatbuffer: bytes, file_pattern, num_clips: int,
             num_threads: int | None = None) -> dict[str, float]:
    """`compare_outputs` of the TFLite model against Keras (`deployment_model`, float)
    on the first `num_clips` clips (0: all) of the TFRecords, eval preprocessing."""
    _, num_frames, size, _, _ = model.input.shape
    data = make_dataset(file_pattern, training=False, batch_size=8, num_frames=num_frames,
                        image_size=size)
    if num_clips:
        data = data.unbatch().take(num_clips).batch(8)
    reference = lite_convert.deployment_model(model)
    candidate = LiteModel(model_content=flatbuffer, num_threads=num_threads)
    ref_out: list[dict] = []
    cand_out: list[dict] = []
    labels = []
    for clips, targets in data:
        ref_out.append({k: np.asarray(v) for k, v in reference(clips, training=False).items()})
        cand_out.append(candidate(clips.numpy()))
        labels.append(targets["perception"].numpy())

    def stack(outs: list[dict]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    return lite_convert.compare_outputs(stack(ref_out), stack(cand_out), np.concatenate(labels))


def format_parity(numbers: dict[str, float]) -> str:
    """The parity block of the report."""
    lines = [f"  clips: {int(numbers['clips'])}"]
    for key, value in numbers.items():
        if key.startswith("max_abs_diff/"):
            lines.append(f"  max |Δ| {key.split('/', 1)[1]:<20} {value:.3g}")
    lines.append(f"  top-1 agreement with Keras    {numbers['top1_agreement']:.2%}")
    if "reference_top1" in numbers:
        lines.append(f"  top-1 accuracy Keras / TFLite {numbers['reference_top1']:.2%} / "
                     f"{numbers['candidate_top1']:.2%} "
                     f"({100 * (numbers['candidate_top1'] - numbers['reference_top1']):+.2f} "
                     "points)")
    for key in ("temporal_attention", "spatial_attention"):
        if f"pearson/{key}" in numbers:
            lines.append(f"  Pearson r {key:<19} {numbers[f'pearson/{key}']:.4f}")
    return "\n".join(lines)


def export_tflite(checkpoint: str, output: str, quantize: str = "none", *,
                  labels: str | None = None, representative_data=None,
                  num_representative: int = 128, integer_input: bool = False,
                  eval_data=None, num_eval: int = 0, evaluate_parity: bool = True,
                  num_threads: int | None = None) -> dict:
    """Converts, writes the model and labels.txt, measures; returns the report as a dict."""
    model = load_checkpoint(checkpoint)
    spec = model_spec(model)
    data = run_data(checkpoint, spec.num_classes, labels=labels,
                    train_pattern=representative_data, val_pattern=eval_data)
    num_frames, size = spec.num_frames, spec.image_size
    clips = None
    if quantize in ("int8", "int16x8"):
        if not data.train_pattern:
            raise ExportError(f"--quantize={quantize} calibrates on real clips: pass "
                              "--representative_data=<training TFRecord pattern>")
        clips = lite_convert.representative_clips(data.train_pattern, num_representative,
                                                  num_frames, size)
    edge = lite_convert.deployment_model(model, edge=True, batch_size=1)
    flatbuffer = lite_convert.convert_to_tflite(edge, quantize=quantize,
                                                representative_data=clips,
                                                integer_input=integer_input)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "wb") as f:
        f.write(flatbuffer)
    write_labels(os.path.join(os.path.dirname(os.path.abspath(output)), "labels.txt"),
                 data.labels)
    report = {
        "output": output, "quantize": quantize, "integer_input": integer_input,
        "bytes": len(flatbuffer),
        "float32_weight_bytes": 4 * sum(int(np.prod(w.shape)) for w in edge.weights),
        "ops": {f"{op} [{kind}]": n for (op, kind), n in
                lite_convert.op_report(flatbuffer).most_common()},
        "representative_clips": 0 if clips is None else len(clips),
    }
    if quantize in ("int8", "int16x8"):
        report["quantization_violations"] = lite_convert.quantization_violations(
            flatbuffer, quantize)
    if evaluate_parity and data.val_pattern:
        report["parity"] = evaluate(model, flatbuffer, data.val_pattern, num_eval, num_threads)
    return report


def format_report(report: dict) -> str:
    size = report["bytes"]
    ratio = size / report["float32_weight_bytes"]
    lines = [f"wrote {report['output']} ({size / 1e6:.2f} MB, {ratio:.1%} of the float32 "
             f"weights' {report['float32_weight_bytes'] / 1e6:.2f} MB) and labels.txt beside it",
             f"quantize={report['quantize']}"
             + (f", calibrated on {report['representative_clips']} training clips"
                if report["representative_clips"] else "")
             + (", integer input" if report["integer_input"] else ", float32 input"),
             "ops [kernel dtype]:"]
    lines += [f"  {name:<34} {count:4d}" for name, count in report["ops"].items()]
    if "quantization_violations" in report:
        left = report["quantization_violations"]
        lines.append(f"every CONV_2D / FULLY_CONNECTED in {report['quantize']}: "
                     + ("yes" if not left else f"NO: {left}"))
    if "parity" in report:
        lines += ["parity with Keras (float32) on the validation TFRecords:",
                  format_parity(report["parity"])]
    return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "A .keras checkpoint of stabn_tf.train.",
                        required=True)
    flags.DEFINE_string("output", None, "The .tflite file to write; default: "
                        "exported/<checkpoint name>_<quantize>.tflite.")
    flags.DEFINE_enum("quantize", "none", lite_convert.QUANTIZATIONS,
                      "none (float32) | float16 | dynamic | int8 | int16x8.")
    flags.DEFINE_bool("integer_input", False, "int8/int16x8: integer input tensor "
                      "(quantize clips with its scale/zero point) instead of float32.")
    flags.DEFINE_list("representative_data", None, "TFRecord pattern(s) of real clips for "
                      "calibration; default: the run's training split.")
    flags.DEFINE_integer("num_representative", 128, "Calibration clips (int8/int16x8).")
    flags.DEFINE_list("eval_data", None, "TFRecord pattern(s) for the parity numbers; "
                      "default: the run's validation split.")
    flags.DEFINE_integer("num_eval", 0, "Parity clips; 0: the whole split.")
    flags.DEFINE_bool("evaluate", True, "Measure parity with Keras after converting.")
    flags.DEFINE_string("labels", None, "labels.txt; default: the run's.")
    flags.DEFINE_integer("num_threads", None, "Interpreter threads for the parity run.")
    flags.DEFINE_string("report_json", None, "Also write the report as JSON here.")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        print(f"unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    output = FLAGS.output or os.path.join(
        "exported",
        f"{os.path.splitext(os.path.basename(FLAGS.checkpoint))[0]}_{FLAGS.quantize}.tflite")
    try:
        report = export_tflite(
            FLAGS.checkpoint, output, FLAGS.quantize, labels=FLAGS.labels,
            representative_data=FLAGS.representative_data,
            num_representative=FLAGS.num_representative, integer_input=FLAGS.integer_input,
            eval_data=FLAGS.eval_data, num_eval=FLAGS.num_eval,
            evaluate_parity=FLAGS.evaluate, num_threads=FLAGS.num_threads)
    except (ExportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report), flush=True)
    if FLAGS.report_json:
        with open(FLAGS.report_json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
