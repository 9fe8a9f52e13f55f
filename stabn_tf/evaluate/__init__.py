"""Evaluation: the paper's Table 1 (multi-clip top-1/top-5), Table 2 (attention inversion),
and the quality of the explanations against ground truth, next to Grad-CAM and chance.

    python -m stabn_tf.evaluate --checkpoint=runs/demo/checkpoints/final.keras \\
        --baseline_checkpoint=runs/demo_baseline/checkpoints/final.keras \\
        --tables=all --figures=4 --output_dir=runs/demo/evaluation

Modules: `inputs` (checkpoint and shards to evaluate), `accuracy` (Tables 1 and 2),
`quality` (explanation metrics), `passes` (a table as passes over the split, shard by
shard, a few numbers kept per video), `state` (those numbers kept on disk: resume),
`progress` (time left), `devices` (local GPUs, several machines), `tables` (Markdown),
`report` (`run`: the whole CLI as one call, and the figures), `errors`
(`EvaluationError`, one line for the user).
"""

from stabn_tf.evaluate.accuracy import (
    HEADS,
    VideoScores,
    accuracy,
    evaluate_accuracy,
    evaluate_inversions,
    inversion_ordering,
    score_videos,
    topk_accuracy,
    true_class_rank,
)
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.evaluate.inputs import load_checkpoint, validation_files
from stabn_tf.evaluate.quality import POINTING_TOLERANCE, deletion_aucs, explanation_quality
from stabn_tf.evaluate.report import TABLES, run, write_figures
from stabn_tf.evaluate.tables import (
    explanation_markdown,
    frames_label,
    table1_markdown,
    table2_markdown,
)

__all__ = [
    "HEADS",
    "POINTING_TOLERANCE",
    "TABLES",
    "EvaluationError",
    "VideoScores",
    "accuracy",
    "deletion_aucs",
    "evaluate_accuracy",
    "evaluate_inversions",
    "explanation_markdown",
    "explanation_quality",
    "frames_label",
    "inversion_ordering",
    "load_checkpoint",
    "run",
    "score_videos",
    "table1_markdown",
    "table2_markdown",
    "topk_accuracy",
    "true_class_rank",
    "validation_files",
    "write_figures",
]
