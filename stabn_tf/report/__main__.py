"""`python -m stabn_tf.report`: the explanation browser, a static site of every validation
clip's explanation.

    python -m stabn_tf.report --checkpoint=runs/demo/checkpoints/final.keras \\
        --output_dir=runs/demo/report            # then open runs/demo/report/index.html

`--compare_checkpoint` shows a second model beside the first (a baseline, another ST-ABN,
or an exported `.tflite`); each clip gets Figure 3, a thumbnail and the editor's frames;
`--animations` adds the animated GIF and `--gradcam` each Keras ST-ABN's 3D Grad-CAM
panel (each several times the size). `--sample=N` keeps a seeded random N clips of the
split, `--max_clips=N` the first N (of those), `--errors_only` the misclassified ones;
`--workers` drawing processes (0: every core); `--tables=none` skips the evaluation tables;
`--precision` (auto: bfloat16 where the machine has bf16 units) is logged once and shown
per model on the summary and in `models.json`; `--corrections=FILE` loads a box file
the clip pages' editor exported (see docs/explanations.md, "Correcting explanations").
Flags only: the work is `stabn_tf.report.build_report`. A usage error prints one line,
`stabn_tf.report: error: ...`, and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.disk import disk_full_as_error
from stabn_tf.evaluate import TABLES
from stabn_tf.explain.render import define_colormap_flag
from stabn_tf.report import build_report

FLAGS = flags.FLAGS


def define_flags() -> None:
    cli.define_checkpoint("The model to show: a .keras checkpoint or an exported .tflite or "
                          "OpenVINO .xml file.")
    flags.DEFINE_string("compare_checkpoint", "", "A second model (.keras, .tflite or .xml) shown "
                        "beside the first on the same clips.")
    cli.define_files("Glob(s) of the TFRecord shards; default: the validation split of the "
                     "checkpoint's training run (its config.json).")
    flags.DEFINE_string("output_dir", None, "Folder of the site (index.html, gallery.html).")
    cli.define_max_clips(0, "Show only the first N clips (0: all).")
    flags.DEFINE_integer("sample", 0, "Show a random sample of N clips, the same for the same "
                         "split and --seed (0: all).")
    flags.DEFINE_integer("seed", 0, "Seed of --sample.")
    flags.DEFINE_boolean("errors_only", False, "Show only the clips the (first) model gets "
                         "wrong.")
    flags.DEFINE_boolean("animations", False, "Add the animated GIF of each clip (about 5x "
                         "the size of the rest of a clip).")
    flags.DEFINE_boolean("gradcam", False, "Add a 3D Grad-CAM panel to each clip page.")
    define_colormap_flag()
    flags.DEFINE_string("gradcam_layer", "res5", "Layer or stage of the Grad-CAM.")
    cli.define_tables(f"Evaluation tables on the summary: {list(TABLES)}, all or none.")
    cli.define_num_clips_list("Clips per video for Table 1.")
    cli.define_batch_size("Videos per batch for the tables.")
    cli.define_precision(extra=" A compared .tflite model runs in its own.")
    flags.DEFINE_string("corrections", "", "A box file the editor exported earlier: its boxes "
                        "and action frames are loaded into the clip pages' editors (a clip "
                        "the browser already holds edits of keeps the browser's).")
    flags.DEFINE_integer("workers", 0, "Drawing processes; 0 = all cores, 1 = no pool.")
    flags.mark_flag_as_required("output_dir")


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    f = FLAGS
    num_clips = cli.num_clips_list()
    tables = {"all": list(TABLES), "none": []}.get(",".join(f.tables), f.tables)
    with disk_full_as_error(f.output_dir, resumes="what was drawn is kept: the next run "
                            "draws the rest"):  # from PIL, matplotlib or our own writes
        result = build_report(
            checkpoint=f.checkpoint, output_dir=f.output_dir,
            compare_checkpoint=f.compare_checkpoint, files=f.files, max_clips=f.max_clips,
            sample=f.sample, seed=f.seed, errors_only=f.errors_only,
            animations=f.animations, workers=f.workers or None,
            gradcam=f.gradcam, gradcam_layer=f.gradcam_layer, tables=tables,
            num_clips=num_clips, batch_size=f.batch_size, precision=f.precision,
            corrections=f.corrections, colormap=f.colormap,
            log=cli.log)
    print(f"open {result['index']} ({result['clips']} clips)")


command = cli.Command("stabn_tf.report", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
