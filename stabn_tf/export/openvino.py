"""OpenVINO for Intel/AMD servers: `python -m export.openvino --checkpoint=... --quantize=int8`.

Converts a checkpoint's BN-folded float32 graph to an OpenVINO IR (`<stem>.xml` + `.bin`,
batch 1, the model's own T and size) and writes `<stem>.json` (its config: class
names, clip shape, quantize mode), which `python -m stabn_tf.predict --checkpoint=<model>.xml`
reads. `--quantize=int8` quantizes with NNCF on `--num_representative` training clips (all
there are when the split is smaller). Prints the weighted layers by the precision the CPU
runs them in, the size and the parity with Keras on the validation TFRecords. The TFRecords
default to the checkpoint's run; without a run, pass `--representative_data` /
`--eval_data`. See `stabn_tf.deploy.openvino`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.deploy import ExportError, RunData
from stabn_tf.deploy import openvino as ovx
from stabn_tf.disk import write_atomic
from stabn_tf.inference import load_checkpoint
from stabn_tf.inference.openvino import PRECISIONS

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "A .keras model of stabn_tf (ST-ABN or baseline).",
                        required=True)
    flags.DEFINE_string("output", None, "The .xml file to write (its weights go to the .bin "
                        "beside it); default: exported/<checkpoint name>_<quantize>.xml.")
    flags.DEFINE_enum("quantize", "none", ovx.QUANTIZATIONS,
                      "none (float32 weights) | int8 (NNCF post-training quantization).")
    flags.DEFINE_list("representative_data", None, "TFRecord pattern(s) of real clips for "
                      "calibration; default: the run's training split.")
    flags.DEFINE_integer("num_representative", 128, "Calibration clips (int8); all the data "
                         "holds when fewer.")
    flags.DEFINE_list("eval_data", None, "TFRecord pattern(s) for the parity numbers; "
                      "default: the run's validation split.")
    flags.DEFINE_integer("num_eval", 0, "Parity clips; 0: the whole split.")
    flags.DEFINE_bool("evaluate", True, "Measure parity with Keras after converting.")
    flags.DEFINE_enum("precision", "float32", sorted(PRECISIONS), "What OpenVINO computes "
                      "the float ops in for the parity run (chosen at run time, not stored).")
    flags.DEFINE_integer("num_threads", None, "CPU threads for the parity run.")
    flags.DEFINE_string("report_json", None, "Also write the report as JSON here.")


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        print(f"unexpected arguments: {argv[1:]}", file=sys.stderr)
        return 2
    stem = os.path.splitext(os.path.basename(FLAGS.checkpoint))[0]
    output = FLAGS.output or os.path.join("exported", f"{stem}_{FLAGS.quantize}.xml")
    model = load_checkpoint(FLAGS.checkpoint)
    data = RunData.of_checkpoint(FLAGS.checkpoint, FLAGS.representative_data,
                                 FLAGS.eval_data)
    if FLAGS.quantize == "int8" and not data.train and data.problem:
        raise ExportError(f"--quantize={FLAGS.quantize} calibrates on real clips and "
                          f"there are none ({data.problem}): pass "
                          "--representative_data=<training TFRecord pattern>")
    report = ovx.export_openvino(
        model, output, FLAGS.quantize, representative_data=data.train,
        num_representative=FLAGS.num_representative,
        eval_data=data.val if FLAGS.evaluate else None, num_eval=FLAGS.num_eval,
        precision=FLAGS.precision, num_threads=FLAGS.num_threads,
        notify=cli.log)
    print(ovx.format_report(report), flush=True)
    if FLAGS.evaluate and "parity" not in report:
        print(f"no parity numbers: no validation TFRecords ({data.problem}); pass --eval_data",
              file=sys.stderr)
    if FLAGS.report_json:
        write_atomic(FLAGS.report_json, json.dumps(report, indent=1))
    return 0


# ExportError, InferenceError (StabnErrors) and a missing file print `error: ...` and exit
# with status 2.
command = cli.Command("stabn_tf.export.openvino", main, define_flags, __doc__, prefix="error: ",
                      errors=((FileNotFoundError, 2),))

if __name__ == "__main__":
    command()
