"""Explain predictions as pictures: Figure 3 (PNG), the top-5, and an animated overlay.

    python -m stabn_tf.explain clip.mp4 frames_dir/ \\
        --checkpoint=runs/demo/checkpoints/final.keras --output_dir=explanations
    python -m stabn_tf.explain 'data/ssv2/validation-*.tfrecord' --max_clips=4 \\
        --checkpoint=exported/stabn_int8.tflite --output_dir=...

Inputs: video files, frame folders, and TFRecord shards or globs (`*.tfrecord*`; the first
`--max_clips` clips, or those named by `--clip_ids`; their ground-truth boxes are drawn when
the records have them). The checkpoint is a `.keras` model or an exported `.tflite` model.
For each clip the output directory gets `<name>.png`, `<name>.gif` (or `.mp4`) and
`<name>.json`; inputs with the same name get `_2`, `_3`, ... `--method=gradcam` draws a 3D
Grad-CAM instead (Keras models; works for the baseline too). `--precision` (auto: bfloat16
where the machine has bf16 units; Grad-CAM too) is printed once and stored in each JSON
file. Flags are checked before the model runs; an unreadable input prints one error line
and the others are still explained (exit status 1).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.explain.render import ANIMATIONS, define_colormap_flag, render_prediction
from stabn_tf.inference import METHODS, InferenceError, OutputNames, Prediction, open_runner
from stabn_tf.inference.runner import run_inputs
from stabn_tf.runs import check_writable_dir

FLAGS = flags.FLAGS


def define_flags() -> None:
    cli.define_checkpoint("A .keras model (ST-ABN, or the baseline with --method=gradcam) or "
                          "an exported .tflite / OpenVINO .xml model.")
    flags.DEFINE_string("output_dir", "explanations", "Where the PNG/GIF/JSON files go.")
    flags.DEFINE_enum("method", "attention", METHODS, "attention: ST-ABN's Ms/Mt; gradcam: "
                      "3D Grad-CAM of the predicted class.")
    flags.DEFINE_string("gradcam_layer", "", "Grad-CAM layer or stage (default: res5).")
    flags.DEFINE_enum("animation", "gif", ANIMATIONS, "Animated overlay format.")
    flags.DEFINE_float("fps", 4.0, "Animation frames per second (> 0).")
    flags.DEFINE_integer("columns", 8, "Frames per row of the figure.")
    define_colormap_flag()
    cli.define_top_k("Classes listed.")
    cli.define_max_clips(4, "Clips explained per TFRecord input.")
    flags.DEFINE_list("clip_ids", [], "Explain these clip ids of TFRecord inputs instead.")
    cli.define_precision()


def main(argv: Sequence[str]) -> None:
    inputs = list(argv[1:])
    if not inputs:
        cli.fail("give video files, frame folders or TFRecord patterns")
    f = FLAGS
    if not f.fps > 0:
        raise InferenceError(f"--fps={f.fps}: must be > 0")
    cli.require_at_least_one("columns", "top_k", "max_clips", error=InferenceError)
    runner = open_runner(f.checkpoint, f.method, f.gradcam_layer or None,
                         precision=f.precision)
    check_writable_dir(f.output_dir)  # created once the checkpoint is accepted
    print(runner.precision_choice.describe(), flush=True)
    names = OutputNames()
    written: list[str] = []

    def write(prediction: Prediction) -> None:
        paths = render_prediction(prediction, f.output_dir, names.claim(prediction.name),
                                  columns=f.columns, animation=f.animation, fps=f.fps,
                                  top_k=f.top_k, colormap=f.colormap)
        top = ", ".join(f"{n} {p:.2f}" for _, n, p in prediction.top_k(f.top_k))
        written.extend(paths.values())
        print(f"{prediction.name}: {top}\n  → {', '.join(paths.values())}", flush=True)

    def fail(path: str, message: str) -> None:
        print(f"{command.prefix}{message}", file=sys.stderr, flush=True)

    predictions, errors = run_inputs(runner, inputs, max_clips=f.max_clips,
                                     clip_ids=f.clip_ids, on_result=write, on_error=fail)
    print(f"stabn_tf.explain: wrote {len(written)} files for {len(predictions)} input(s) to "
          f"{f.output_dir}", flush=True)
    sys.exit(1 if errors else 0)


command = cli.Command("stabn_tf.explain", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
