"""The explanation browser: one command turns a checkpoint and its validation split into a
static web site (summary, gallery of every clip, a page per clip) that opens from disk.

    python -m stabn_tf.report --checkpoint=runs/demo/checkpoints/final.keras \\
        --output_dir=runs/demo/report

Modules: `site` (`build_report`: what the command does, as one call: it chooses the
clips, runs the models, and keeps per-clip results so a re-run draws nothing twice),
`clips` (one clip's pictures, through `stabn_tf.explain.render`, and its record:
prediction, thumbnail, ground-truth scores and what the box editor shows), `drawing`
(the clips drawn in a pool of processes, in order), `pages` (the pages, from the Jinja2
templates in `templates/`, with the scripts and CSS of `static/`), `corrections` (the box
file the clip pages' editor exports, read back with `--corrections`), `charts` (the
confusion matrix).
"""

from stabn_tf.report.models import ReportModel, checkpoint_key
from stabn_tf.report.site import build_report

__all__ = ["ReportModel", "build_report", "checkpoint_key"]
