"""TFLite for phones and boards: `python -m export.tflite --checkpoint=... --quantize=int8`.

Converts a checkpoint's 2D-op graph with builtin ops only, batch 1, the model's own T and
size; writes the model and `<stem>.json` (its config: class names, clip shape, quantize
mode), which `python -m stabn_tf.predict --checkpoint=<model>.tflite` reads. Prints the op
histogram by kernel dtype, the size and the parity with Keras on the validation TFRecords.
Integer modes calibrate on `--num_representative` training clips (all there are when the
split is smaller); int8 keeps the dense layers and the softmax in float32 (`--keep_float`).
The TFRecords default to the checkpoint's run; without a run, pass `--representative_data` /
`--eval_data`. See `stabn_tf.deploy.tflite`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.deploy import tflite as lite
from stabn_tf.disk import write_atomic
from stabn_tf.export import conversion
from stabn_tf.inference import load_checkpoint

FLAGS = flags.FLAGS


def define_flags() -> None:
    conversion.define_flags(".tflite", "int8/int16x8")
    flags.DEFINE_enum("quantize", "none", lite.QUANTIZATIONS,
                      "none (float32) | float16 | dynamic | int8 | int16x8.")
    flags.DEFINE_bool("integer_input", False, "int8/int16x8: integer input tensor "
                      "(quantize clips with its scale/zero point) instead of float32.")
    flags.DEFINE_integer("num_threads", None, "Interpreter threads for the parity run.")
    flags.DEFINE_list("keep_float", list(lite.KEEP_FLOAT), "int8: TFLite op types computed "
                      "in float32 (the classifier and attention dense layers and the softmax "
                      "by default: an int8 classifier flips near-tie classes); empty: every "
                      "op int8.")


def main(argv: Sequence[str]) -> int:
    cli.no_arguments(argv)
    output = conversion.output_path(".tflite")
    model = load_checkpoint(FLAGS.checkpoint)
    bytes_per_weight = {"none": 4, "float16": 2}.get(FLAGS.quantize, 1)
    with conversion.output_errors(output, lambda: bytes_per_weight * model.count_params()):
        data = conversion.run_data(calibrating=("int8", "int16x8"))
        report = lite.export_tflite(
            model, output, FLAGS.quantize, representative_data=data.train,
            num_representative=FLAGS.num_representative, integer_input=FLAGS.integer_input,
            eval_data=data.val if FLAGS.evaluate else None, num_eval=FLAGS.num_eval,
            num_threads=FLAGS.num_threads, accept_unfaithful=FLAGS.accept_unfaithful,
            keep_float=FLAGS.keep_float, notify=cli.log)
    print(lite.format_report(report), flush=True)
    conversion.no_parity_note(data, report)
    if FLAGS.report_json:
        with conversion.output_errors(FLAGS.report_json, lambda: None):
            write_atomic(FLAGS.report_json, json.dumps(report, indent=1))
    return 0


command = cli.Command("stabn_tf.export.tflite", main, define_flags, __doc__,
                      errors=(FileNotFoundError,))

if __name__ == "__main__":
    command()
