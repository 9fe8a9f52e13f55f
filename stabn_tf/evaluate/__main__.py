"""`python -m stabn_tf.evaluate`: Tables 1 and 2 and the explanation-quality table.

    python -m stabn_tf.evaluate --checkpoint=runs/demo/checkpoints/final.keras \\
        --baseline_checkpoint=runs/demo_baseline/checkpoints/final.keras \\
        --tables=all --figures=4 --output_dir=runs/demo/evaluation

`--files=<glob>` picks the TFRecords; by default the validation split of the checkpoint's
training run (its config.json). The tables are printed and, with `--output_dir`, written
as Markdown and `results.json`. Flags only: the work is `stabn_tf.evaluate.run`. A usage
error prints one line, `stabn_tf.evaluate: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from absl import app, flags

from stabn_tf.evaluate import POINTING_TOLERANCE, TABLES, EvaluationError, run
from stabn_tf.layers.attention import INVERSIONS
from stabn_tf.precision import FLAG_HELP

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "ST-ABN (or baseline) .keras checkpoint.")
    flags.DEFINE_string("baseline_checkpoint", "", "Baseline .keras checkpoint to compare with.")
    flags.DEFINE_list("files", [], "Glob(s) of the TFRecord shards to evaluate; default: the "
                      "validation split of the checkpoint's training run (its config.json).")
    flags.DEFINE_list("tables", ["all"], f"Which of {list(TABLES)} (or all).")
    flags.DEFINE_list("num_clips", ["1", "2"], "Clips per video for Table 1 (2 = '32+32'); "
                      "Table 2 uses the first.")
    flags.DEFINE_list("invert", list(INVERSIONS), "Attention inversion settings for Table 2.")
    flags.DEFINE_string("output_dir", "", "Where results.json and the Markdown tables go.")
    flags.DEFINE_integer("batch_size", 8, "Videos per batch.")
    flags.DEFINE_integer("max_videos", 0, "Evaluate only the first N videos (0: all).")
    flags.DEFINE_integer("explain_max_videos", 0, "Videos for the explanation metrics "
                         "(0: as --max_videos).")
    flags.DEFINE_float("pointing_tolerance", POINTING_TOLERANCE,
                       "Pointing game tolerance, as a fraction of the frame side.")
    flags.DEFINE_integer("deletion_grid", 4, "Region deletion removes G×G cells per frame.")
    flags.DEFINE_list("gradcam_layers", ["res5", "res4"], "Grad-CAM layers or stages compared "
                      "(res5: the last stage; res4: twice its resolution); the first one is "
                      "used for --figures.")
    flags.DEFINE_integer("seed", 0, "Seed of the random baseline.")
    flags.DEFINE_integer("figures", 0, "Also write Figure 3 (PNG/GIF) for the first N clips "
                         "into <output_dir>/figures.")
    flags.DEFINE_string("precision", "auto", FLAG_HELP)
    flags.mark_flag_as_required("checkpoint")


def _fail(message: str) -> NoReturn:
    print(f"stabn_tf.evaluate: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}")
    f = FLAGS
    try:
        num_clips = [int(n) for n in f.num_clips]
    except ValueError:
        _fail(f"--num_clips must be whole numbers, got {f.num_clips}")
    try:
        results = run(
            checkpoint=f.checkpoint, files=f.files, baseline_checkpoint=f.baseline_checkpoint,
            tables=list(TABLES) if f.tables == ["all"] else f.tables, num_clips=num_clips,
            invert=f.invert, output_dir=f.output_dir, batch_size=f.batch_size,
            max_videos=f.max_videos, explain_max_videos=f.explain_max_videos,
            pointing_tolerance=f.pointing_tolerance, deletion_grid=f.deletion_grid,
            gradcam_layers=f.gradcam_layers, seed=f.seed, figures=f.figures,
            precision=f.precision, log=lambda text: print(text, file=sys.stderr, flush=True))
    except EvaluationError as e:
        _fail(str(e))
    print(results["markdown"])
    if f.output_dir:
        print(f"\nwritten to {f.output_dir}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
