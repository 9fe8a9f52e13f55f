"""Classify videos: the top-k classes, and where and when the model looked.

    python -m stabn_tf.predict clip1.mp4 clip2.webm frames_dir/ \\
        --checkpoint=runs/demo/checkpoints/final.keras [--json] [--output_dir=DIR]
    python -m stabn_tf.predict clip.webm --checkpoint=exported/stabn_int8.tflite

Each input is a video file (anything PyAV decodes), a folder of frame images (sorted by
name) or a TFRecord pattern. The checkpoint is a `.keras` model or an exported `.tflite`
model (run with LiteRT); either way the class names, clip shape and preparation come from
the model itself. `--precision` (auto: bfloat16 where the machine has bf16 units) is
printed once and stored in the JSON outputs. For ST-ABN the temporal attention of each
sampled frame ("when") and the peak of each frame's spatial map ("where") are printed too.
`--output_dir` also writes a JSON file and a Figure-3 PNG per input (one naming rule:
same-named inputs get `_2`, ...).
An unreadable input gives one error line on stderr and the others are still processed
(exit status 1).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.explain.render import define_colormap_flag, render_prediction
from stabn_tf.inference import InferenceError, OutputNames, Prediction, open_runner, run_inputs
from stabn_tf.runs import check_writable_dir

FLAGS = flags.FLAGS


def define_flags() -> None:
    cli.define_checkpoint("A .keras model (ST-ABN or baseline) or an exported .tflite or "
                          "OpenVINO .xml model.")
    cli.define_top_k("How many classes to list.")
    flags.DEFINE_integer("num_clips", 1, "Clips per video; their softmax is averaged.")
    cli.define_max_clips(4, "Clips predicted per TFRecord input.")
    flags.DEFINE_bool("json", False, "One JSON document on stdout instead of text.")
    flags.DEFINE_string("output_dir", "", "Also write <input>.json and <input>.png here.")
    cli.define_precision()
    define_colormap_flag()


def main(argv: Sequence[str]) -> None:
    paths = list(argv[1:])
    f = FLAGS
    if not paths:
        raise InferenceError("give one or more video files, frame folders or TFRecord "
                             "patterns")
    cli.require_at_least_one("top_k", "num_clips", "max_clips", error=InferenceError)
    runner = open_runner(f.checkpoint, precision=f.precision)
    if f.output_dir:  # created once the checkpoint is accepted
        check_writable_dir(f.output_dir)
    if not f.json:  # the JSON document holds it
        print(runner.precision_choice.describe(), flush=True)
    names = OutputNames()
    written: list[str] = []
    # With --json, stdout is one JSON document: notes about files go to stderr.
    note = sys.stderr if f.json else sys.stdout

    def show(prediction: Prediction) -> None:
        text = prediction.format_text(f.top_k)
        if f.output_dir:
            paths = render_prediction(prediction, f.output_dir, names.claim(prediction.name),
                                      animation="none", top_k=f.top_k,
                                      colormap=f.colormap)
            written.extend(paths.values())
            text += "\n  → " + ", ".join(paths.values())
        if not f.json:
            print(text + "\n", flush=True)

    def fail(path: str, message: str) -> None:
        print(f"{command.prefix}{message}", file=sys.stderr, flush=True)

    predictions, errors = run_inputs(runner, paths, num_clips=f.num_clips,
                                     max_clips=f.max_clips, on_result=show, on_error=fail)
    if f.json:
        json.dump({"checkpoint": f.checkpoint, "precision": runner.precision_choice.to_json(),
                   "predictions": [p.to_json(f.top_k) for p in predictions],
                   "errors": errors}, sys.stdout, indent=1)
        print()
    if f.output_dir:
        print(f"stabn_tf.predict: wrote {len(written)} files for {len(predictions)} "
              f"input(s) to {f.output_dir}", file=note, flush=True)
    sys.exit(1 if errors else 0)


command = cli.Command("stabn_tf.predict", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
