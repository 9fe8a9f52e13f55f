"""`python -m stabn_tf.report`: the explanation browser, a static site of every validation
clip's explanation.

    python -m stabn_tf.report --checkpoint=runs/demo/checkpoints/final.keras \\
        --output_dir=runs/demo/report            # then open runs/demo/report/index.html

`--compare_checkpoint` shows a second model beside the first (a baseline, another ST-ABN,
or an exported `.tflite`); `--gradcam` adds each Keras ST-ABN's 3D Grad-CAM panel;
`--max_clips=N` keeps the first N clips; `--tables=none` skips the evaluation tables;
`--precision` (auto: bfloat16 where the machine has bf16 units) is logged once and shown
per model on the summary and in `models.json`; `--corrections=FILE` loads a box file
the clip pages' editor exported (see the README's "Correcting explanations").
Flags only: the work is `stabn_tf.report.build_report`. A usage error prints one line,
`stabn_tf.report: error: ...`, and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from absl import app, flags

from stabn_tf.disk import disk_full_message
from stabn_tf.evaluate import TABLES, EvaluationError
from stabn_tf.precision import FLAG_HELP
from stabn_tf.report import build_report

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "The model to show: a .keras checkpoint or an "
                        "exported .tflite or OpenVINO .xml file.")
    flags.DEFINE_string("compare_checkpoint", "", "A second model (.keras, .tflite or .xml) shown "
                        "beside the first on the same clips.")
    flags.DEFINE_list("files", [], "Glob(s) of the TFRecord shards; default: the validation "
                      "split of the checkpoint's training run (its config.json).")
    flags.DEFINE_string("output_dir", None, "Folder of the site (index.html, gallery.html).")
    flags.DEFINE_integer("max_clips", 0, "Show only the first N clips (0: all).")
    flags.DEFINE_boolean("gradcam", False, "Add a 3D Grad-CAM panel to each clip page.")
    flags.DEFINE_string("gradcam_layer", "res5", "Layer or stage of the Grad-CAM.")
    flags.DEFINE_list("tables", ["all"], f"Evaluation tables on the summary: {list(TABLES)}, "
                      "all or none.")
    flags.DEFINE_list("num_clips", ["1", "2"], "Clips per video for Table 1.")
    flags.DEFINE_integer("batch_size", 8, "Videos per batch for the tables.")
    flags.DEFINE_string("precision", "auto", FLAG_HELP + " A compared .tflite model runs in "
                        "its own.")
    flags.DEFINE_string("corrections", "", "A box file the editor exported earlier: its boxes "
                        "and action frames are loaded into the clip pages' editors (a clip "
                        "the browser already holds edits of keeps the browser's).")
    flags.mark_flags_as_required(["checkpoint", "output_dir"])


def _fail(message: str) -> NoReturn:
    print(f"stabn_tf.report: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}")
    f = FLAGS
    try:
        num_clips = [int(n) for n in f.num_clips]
    except ValueError:
        _fail(f"--num_clips must be whole numbers, got {f.num_clips}")
    tables = {"all": list(TABLES), "none": []}.get(",".join(f.tables), f.tables)
    try:
        result = build_report(
            checkpoint=f.checkpoint, output_dir=f.output_dir,
            compare_checkpoint=f.compare_checkpoint, files=f.files, max_clips=f.max_clips,
            gradcam=f.gradcam, gradcam_layer=f.gradcam_layer, tables=tables,
            num_clips=num_clips, batch_size=f.batch_size, precision=f.precision,
            corrections=f.corrections,
            log=lambda text: print(text, file=sys.stderr, flush=True))
    except EvaluationError as e:
        _fail(str(e))
    except Exception as e:  # a full disk, from PIL, matplotlib or our own writes
        line = disk_full_message(e, f.output_dir)
        if line is None:
            raise
        print(f"stabn_tf.report: error: {line} (what was drawn is kept: the next run "
              "draws the rest)", file=sys.stderr)
        sys.exit(1)
    print(f"open {result['index']} ({result['clips']} clips)")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
