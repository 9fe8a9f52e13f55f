"""`python -m stabn_tf.evaluate`: Tables 1 and 2 and the explanation-quality table.

    python -m stabn_tf.evaluate --checkpoint=runs/demo/checkpoints/final.keras \\
        --baseline_checkpoint=runs/demo_baseline/checkpoints/final.keras \\
        --tables=all --figures=4 --output_dir=runs/demo/evaluation

`--files=<glob>` picks the TFRecords; by default the validation split of the checkpoint's
training run (its config.json). The tables are printed and, with `--output_dir`, written
as Markdown and `results.json`. Each pass shows its progress and the time it has left.
With `--output_dir`, the finished batches are kept in `<output_dir>/partial/`: after
Ctrl-C, SIGTERM (exit 130 / 143) or a full disk, the same command resumes from the last
finished batch (other settings are refused in one line; `--restart` starts afresh).
`--strategy` uses every local GPU, or several machines (`multi_worker`, TF_CONFIG).
Flags only: the work is `stabn_tf.evaluate.run`. A usage error prints one line,
`stabn_tf.evaluate: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.evaluate import POINTING_TOLERANCE, TABLES, run
from stabn_tf.layers.attention import INVERSIONS
from stabn_tf.training.distribute import STRATEGIES
from stabn_tf.training.signals import Interrupted, interruptible

FLAGS = flags.FLAGS


def define_flags() -> None:
    cli.define_checkpoint("ST-ABN (or baseline) .keras checkpoint.")
    flags.DEFINE_string("baseline_checkpoint", "", "Baseline .keras checkpoint to compare with.")
    cli.define_files("Glob(s) of the TFRecord shards to evaluate; default: the validation "
                     "split of the checkpoint's training run (its config.json).")
    cli.define_tables(f"Which of {list(TABLES)} (or all).")
    cli.define_num_clips_list("Clips per video for Table 1 (2 = '32+32'); Table 2 uses the "
                              "first.")
    flags.DEFINE_list("invert", list(INVERSIONS), "Attention inversion settings for Table 2.")
    flags.DEFINE_string("output_dir", "", "Where results.json and the Markdown tables go.")
    cli.define_batch_size("Videos per batch.")
    flags.DEFINE_integer("max_videos", 0, "Evaluate only the first N videos, shard by shard in "
                         "file order (0: all).")
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
    cli.define_precision()
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                      "auto (every local GPU when there are several), default, mirrored, "
                      "multi_worker (TF_CONFIG: each process its own shards, the chief "
                      "writes the results); tpu is not supported here.")
    flags.DEFINE_bool("restart", False, "Drop the kept batches of an unfinished evaluation "
                      "in --output_dir (<output_dir>/partial) and start afresh.")


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    try:
        with interruptible():
            evaluate(FLAGS)
    except Interrupted as e:
        print(f"stabn_tf.evaluate: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


def evaluate(f) -> None:
    results = run(
        checkpoint=f.checkpoint, files=f.files, baseline_checkpoint=f.baseline_checkpoint,
        tables=list(TABLES) if f.tables == ["all"] else f.tables,
        num_clips=cli.num_clips_list(), invert=f.invert, output_dir=f.output_dir,
        batch_size=f.batch_size, max_videos=f.max_videos,
        explain_max_videos=f.explain_max_videos, pointing_tolerance=f.pointing_tolerance,
        deletion_grid=f.deletion_grid, gradcam_layers=f.gradcam_layers, seed=f.seed,
        figures=f.figures, precision=f.precision, strategy=f.strategy, restart=f.restart,
        log=cli.log)
    if results["markdown"]:
        print(results["markdown"])
        if f.output_dir:
            print(f"\nwritten to {f.output_dir}")


command = cli.Command("stabn_tf.evaluate", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
