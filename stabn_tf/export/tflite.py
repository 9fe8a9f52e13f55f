"""TFLite for phones and boards: `python -m export.tflite --checkpoint=... --quantize=int8`.

Converts a checkpoint's 2D-op graph with builtin ops only, batch 1, the model's own T and
size; writes the model and `<stem>.json` (its config: class names, clip shape, quantize
mode), which `python -m stabn_tf.predict --checkpoint=<model>.tflite` reads. Prints the op
histogram by kernel dtype, the size and the parity with Keras on the validation TFRecords.
Integer modes calibrate on `--num_representative` training clips (all there are when the
split is smaller). The TFRecords default to the checkpoint's run; without a run, pass
`--representative_data` / `--eval_data`. See `stabn_tf.deploy.tflite`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.deploy import ExportError, RunData
from stabn_tf.deploy import tflite as lite
from stabn_tf.disk import disk_full_message, write_atomic
from stabn_tf.errors import StabnError
from stabn_tf.inference import load_checkpoint

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "A .keras model of stabn_tf (ST-ABN or baseline).",
                        required=True)
    flags.DEFINE_string("output", None, "The .tflite file to write; default: "
                        "exported/<checkpoint name>_<quantize>.tflite.")
    flags.DEFINE_enum("quantize", "none", lite.QUANTIZATIONS,
                      "none (float32) | float16 | dynamic | int8 | int16x8.")
    flags.DEFINE_bool("integer_input", False, "int8/int16x8: integer input tensor "
                      "(quantize clips with its scale/zero point) instead of float32.")
    flags.DEFINE_list("representative_data", None, "TFRecord pattern(s) of real clips for "
                      "calibration; default: the run's training split.")
    flags.DEFINE_integer("num_representative", 128, "Calibration clips (int8/int16x8); all "
                         "the data holds when fewer.")
    flags.DEFINE_list("eval_data", None, "TFRecord pattern(s) for the parity numbers; "
                      "default: the run's validation split.")
    flags.DEFINE_integer("num_eval", 0, "Parity clips; 0: the whole split.")
    flags.DEFINE_bool("evaluate", True, "Measure parity with Keras after converting.")
    flags.DEFINE_integer("num_threads", None, "Interpreter threads for the parity run.")
    flags.DEFINE_string("report_json", None, "Also write the report as JSON here.")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        print(f"unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    stem = os.path.splitext(os.path.basename(FLAGS.checkpoint))[0]
    output = FLAGS.output or os.path.join("exported", f"{stem}_{FLAGS.quantize}.tflite")
    try:
        model = load_checkpoint(FLAGS.checkpoint)
        data = RunData.of_checkpoint(FLAGS.checkpoint, FLAGS.representative_data,
                                     FLAGS.eval_data)
        if FLAGS.quantize in ("int8", "int16x8") and not data.train and data.problem:
            raise ExportError(f"--quantize={FLAGS.quantize} calibrates on real clips and "
                              f"there are none ({data.problem}): pass "
                              "--representative_data=<training TFRecord pattern>")
        report = lite.export_tflite(
            model, output, FLAGS.quantize, representative_data=data.train,
            num_representative=FLAGS.num_representative, integer_input=FLAGS.integer_input,
            eval_data=data.val if FLAGS.evaluate else None, num_eval=FLAGS.num_eval,
            num_threads=FLAGS.num_threads,
            notify=cli.log)
    except (StabnError, FileNotFoundError):
        raise
    except Exception as e:  # a full disk, while converting or writing the model or config
        bytes_per_weight = {"none": 4, "float16": 2}.get(FLAGS.quantize, 1)
        line = disk_full_message(e, output, needed=bytes_per_weight * model.count_params())
        if line is None:
            raise
        cli.fail(line, 1)
    print(lite.format_report(report), flush=True)
    if FLAGS.evaluate and "parity" not in report:
        print(f"no parity numbers: no validation TFRecords ({data.problem}); pass --eval_data",
              file=sys.stderr)
    if FLAGS.report_json:
        try:
            write_atomic(FLAGS.report_json, json.dumps(report, indent=1))
        except OSError as e:
            cli.fail(str(disk_full_message(e, FLAGS.report_json) or e), 1)
    return 0


# ExportError, InferenceError (StabnErrors) and a missing file print `error: ...` and exit
# with status 2; a full disk with status 1.
command = cli.Command("stabn_tf.export.tflite", main, define_flags, __doc__, prefix="error: ",
                      errors=((FileNotFoundError, 2),))

if __name__ == "__main__":
    command()
