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
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.deploy import openvino as ovx
from stabn_tf.disk import write_atomic
from stabn_tf.export import conversion
from stabn_tf.inference import load_checkpoint
from stabn_tf.precision import choose_precision

FLAGS = flags.FLAGS


def define_flags() -> None:
    conversion.define_flags(".xml", "int8", " (its weights go to the .bin beside it)")
    flags.DEFINE_enum("quantize", "none", ovx.QUANTIZATIONS,
                      "none (float32 weights) | int8 (NNCF post-training quantization).")
    cli.define_precision("float32", " Here: what OpenVINO computes the float ops in for "
                         "the parity run (chosen at run time, not stored; auto: this CPU's).")
    flags.DEFINE_integer("num_threads", None, "CPU threads for the parity run.")


def main(argv: Sequence[str]) -> int:
    cli.no_arguments(argv)
    output = conversion.output_path(".xml")
    choice = choose_precision(FLAGS.precision, gpus=[])  # OpenVINO runs on the CPU here
    if choice.requested == "auto":
        cli.log(choice.describe())
    model = load_checkpoint(FLAGS.checkpoint)
    bytes_per_weight = 1 if FLAGS.quantize == "int8" else 4
    with conversion.output_errors(output, lambda: bytes_per_weight * model.count_params()):
        data = conversion.run_data(calibrating=("int8",))
        report = ovx.export_openvino(
            model, output, FLAGS.quantize, representative_data=data.train,
            num_representative=FLAGS.num_representative,
            eval_data=data.val if FLAGS.evaluate else None, num_eval=FLAGS.num_eval,
            precision=choice.precision, num_threads=FLAGS.num_threads,
            accept_unfaithful=FLAGS.accept_unfaithful, notify=cli.log)
    print(ovx.format_report(report), flush=True)
    conversion.no_parity_note(data, report)
    if FLAGS.report_json:
        with conversion.output_errors(FLAGS.report_json, lambda: None):
            write_atomic(FLAGS.report_json, json.dumps(report, indent=1))
    return 0


command = cli.Command("stabn_tf.export.openvino", main, define_flags, __doc__,
                      errors=(FileNotFoundError,))

if __name__ == "__main__":
    command()
