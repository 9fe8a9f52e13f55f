"""SavedModel for TF Serving: `python -m export.saved_model --checkpoint=... --output_dir=...`.

Writes `<output_dir>/<model_name>/<version>/` with the signatures `serving_default` (uint8
frames) and `serve_examples` (serialized SequenceExamples); class names, clip shape and
preprocessing come from the checkpoint itself. `--precision=bfloat16` computes in bf16
inside (AMX-BF16 / AVX512-BF16 CPUs, GPUs); the outputs stay float32. The export is
checked against Keras float32 before it is published: on one random clip, and on the
validation clips (the checkpoint's run, or `--eval_data`), where it must keep the
explanation (`stabn_tf.deploy.faithfulness`; `--accept_unfaithful` publishes it anyway).
See `stabn_tf.deploy.saved_model`.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.deploy import RunData
from stabn_tf.deploy import saved_model as serving
from stabn_tf.deploy.faithfulness import require_faithful
from stabn_tf.deploy.memory import format_peak_rss, peak_rss_bytes
from stabn_tf.deploy.tflite import PARITY_TITLE, format_parity
from stabn_tf.disk import disk_full_as_error
from stabn_tf.export import conversion
from stabn_tf.inference import load_checkpoint
from stabn_tf.precision import choose_precision

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "A .keras model of stabn_tf (ST-ABN or baseline).",
                        required=True)
    flags.DEFINE_string("output_dir", "exported", "TF Serving's model base directory parent.")
    flags.DEFINE_string("model_name", "stabn", "Model name (the directory under --output_dir "
                        "and the name in models.config / REST URLs).")
    flags.DEFINE_integer("version", 0, "Version number; 0: one above the highest present.")
    flags.DEFINE_integer("top_k", 5, "How many classes top_k_* outputs list.")
    flags.DEFINE_bool("overwrite", False, "Replace an existing version directory.")
    cli.define_precision("float32", " The export computes in the precision it is made in "
                         "(auto: this machine's).")
    flags.DEFINE_list("eval_data", None, "TFRecord pattern(s) for the parity numbers; "
                      "default: the run's validation split.")
    flags.DEFINE_integer("num_eval", 0, "Parity clips; 0: the whole split.")
    flags.DEFINE_bool("evaluate", True, "Measure parity with Keras on the validation clips "
                      "before publishing.")
    conversion.define_faithfulness_flag()


def main(argv: Sequence[str]) -> int:
    cli.no_arguments(argv)
    choice, checked = choose_precision(FLAGS.precision), {}
    precision = choice.precision
    if choice.requested == "auto":
        cli.log(choice.describe())

    def parity_text() -> str:
        return PARITY_TITLE + format_parity(checked["parity"], candidate="SavedModel")

    def check(staged: str) -> None:
        checked["diff"] = serving.self_check(staged, model, precision)
        if eval_data:
            checked["parity"] = serving.parity(staged, model, eval_data, FLAGS.num_eval)
            require_faithful(checked["parity"], f"the {precision} SavedModel",
                             FLAGS.accept_unfaithful, parity_text(), cli.log)

    model = load_checkpoint(FLAGS.checkpoint)
    # a full disk, as whatever TensorFlow's writer raises: one line
    with disk_full_as_error(FLAGS.output_dir, needed=lambda: 4 * model.count_params()):
        data = RunData.of_checkpoint(FLAGS.checkpoint, val=FLAGS.eval_data)
        eval_data = data.val if FLAGS.evaluate else None
        path = serving.export_saved_model(model, FLAGS.output_dir, FLAGS.model_name,
                                          FLAGS.version or None, FLAGS.top_k, FLAGS.overwrite,
                                          precision=precision, check=check)
    heads = "probabilities, top_k_indices, top_k_labels, top_k_probabilities" + (
        ", spatial_attention, temporal_attention" if model.has_attention else "")
    print(f"wrote {path}\n"
          f"  {serving.SERVING_DEFAULT}: {serving.FRAMES} uint8 [batch, {model.num_frames}, "
          f"H, W, 3] -> {heads}\n"
          f"  {serving.SERVE_EXAMPLES}: {serving.EXAMPLES} string [batch] (serialized "
          "SequenceExamples)\n"
          f"  {model.num_classes} classes, computes in {precision}; self-check vs Keras "
          f"float32: max |Δ probabilities| = {checked['diff']:.2e} (tolerance "
          f"{serving.SELF_CHECK_TOLERANCE[precision]:g})\n"
          f"inspect: saved_model_cli show --dir {path} --all\n"
          + (parity_text() + "\n" if "parity" in checked else "")
          + format_peak_rss({"peak_rss_bytes": peak_rss_bytes()}), flush=True)
    if FLAGS.evaluate and not eval_data:
        cli.log(f"no parity numbers: no validation TFRecords ({data.problem}); pass "
                "--eval_data")
    return 0


command = cli.Command("stabn_tf.export.saved_model", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
