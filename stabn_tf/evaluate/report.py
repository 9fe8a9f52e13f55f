"""`run`: everything `python -m stabn_tf.evaluate` does, as one library call that returns
its results (the CLI only parses flags and prints); and `write_figures`, Figure 3 for a
few clips of the split through the same runner and renderer as `stabn_tf.explain`.

The models describe themselves (`model.has_attention`, `model.backbone_name`,
`model.preprocessor`, `model.class_names`), so a `.keras` file alone is enough; the run
directory is read only to find the default validation split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

from stabn_tf.disk import write_atomic
from stabn_tf.evaluate.accuracy import check_labels, evaluate_accuracy, evaluate_inversions
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.evaluate.inputs import check_files, load_checkpoint, validation_files
from stabn_tf.evaluate.quality import POINTING_TOLERANCE, explanation_quality
from stabn_tf.evaluate.tables import results_tables
from stabn_tf.explain.render import render_prediction
from stabn_tf.inference import InferenceError, KerasRunner, OutputNames, tfrecord_clips
from stabn_tf.layers.attention import INVERSIONS
from stabn_tf.models.policy import with_precision
from stabn_tf.models.stabn import VideoClassifier
from stabn_tf.precision import PrecisionError, choose_precision
from stabn_tf.runs import RunError, check_writable_dir

TABLES = ("table1", "table2", "explanation")
#: The Markdown file of each table in `output_dir` (all of them together: `tables.md`).
TABLE_FILES = {"table1": "table1.md", "table2": "table2.md",
               "explanation": "explanation_quality.md"}


def check_output_dir(path: str) -> None:
    """Creates `path` and proves it can hold files, in one line otherwise; called once
    the checkpoints are accepted (a refused one leaves nothing behind) and before any
    model runs, so a typo does not cost a whole evaluation."""
    try:
        check_writable_dir(path)
    except RunError as e:
        raise EvaluationError(f"--output_dir: {e}") from None


def write_figures(stabn: VideoClassifier | None, baseline: VideoClassifier | None,
                  file_pattern, output_dir: str, count: int, *,
                  gradcam_layer: str | None = None) -> list[str]:
    """Figure 3 (PNG + GIF + JSON) for the split's first `count` clips: `<id>.png` with
    ST-ABN's attention and, given a baseline, `<id>_gradcam_baseline.png` with its
    Grad-CAM (of the predicted class); ground-truth boxes are drawn when the records have
    them, class names are the models' own. Returns the PNG paths."""
    runners = []
    try:
        if stabn is not None:
            runners.append((KerasRunner(stabn), ""))
        if baseline is not None:
            runners.append((KerasRunner(baseline, method="gradcam",
                                        gradcam_layer=gradcam_layer), "_gradcam_baseline"))
    except InferenceError as e:
        raise EvaluationError(str(e)) from None
    os.makedirs(output_dir, exist_ok=True)
    names = OutputNames()
    written = []
    for runner, suffix in runners:
        for clip in tfrecord_clips(file_pattern, runner.preprocessor, max_clips=count):
            check_labels([clip.true_label], runner.model, file_pattern)
            paths = render_prediction(runner.predict(clip), output_dir,
                                      names.claim(clip.name + suffix))
            written.append(paths["png"])
    return written


def _models(checkpoint: str, baseline_checkpoint: str
            ) -> tuple[VideoClassifier | None, VideoClassifier | None]:
    """(ST-ABN, baseline) from the two checkpoints; a lone baseline checkpoint is the
    baseline."""
    model = load_checkpoint(checkpoint)
    baseline = load_checkpoint(baseline_checkpoint) if baseline_checkpoint else None
    if baseline is not None and baseline.has_attention:
        raise EvaluationError(f"{baseline_checkpoint}: --baseline_checkpoint is an ST-ABN model")
    if baseline is not None and not model.has_attention:
        raise EvaluationError(f"{checkpoint}: --checkpoint is a baseline; pass the ST-ABN "
                              "model there when giving --baseline_checkpoint")
    if not model.has_attention:
        return None, model
    return model, baseline


def run(
    *,
    checkpoint: str,
    files: str | Sequence[str] = "",
    baseline_checkpoint: str = "",
    tables: Sequence[str] = TABLES,
    num_clips: Sequence[int] = (1, 2),
    invert: Sequence[str] = INVERSIONS,
    output_dir: str = "",
    batch_size: int = 8,
    max_videos: int = 0,
    explain_max_videos: int = 0,
    pointing_tolerance: float = POINTING_TOLERANCE,
    deletion_grid: int = 4,
    gradcam_layers: Sequence[str] = ("res5", "res4"),
    seed: int = 0,
    figures: int = 0,
    precision: str = "auto",
    log: Callable[[str], None] = print,
) -> dict:
    """Everything `python -m stabn_tf.evaluate` does; returns the results it writes.

    `files` defaults to the validation split of the checkpoint's run. Every table and
    figure runs the models in `precision` (`stabn_tf.precision`: auto, float32,
    bfloat16); the choice is logged once and stored as `results["precision"]`. Writes (with
    `output_dir`): `results.json` and `table1.md` / `table2.md` /
    `explanation_quality.md` / `tables.md` (all three); with `figures=N`, Figure 3 for
    the split's first N clips under `figures/` (`write_figures`). Every input that makes
    this impossible raises `EvaluationError` (one line), checked before a model runs
    where it can be.
    """
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise EvaluationError(f"unknown table(s) {unknown}; choose from {TABLES} or all")
    if not num_clips or any(n < 1 for n in num_clips):
        raise EvaluationError(f"--num_clips must be >= 1, got {list(num_clips)}")
    try:
        choice = choose_precision(precision)
    except PrecisionError as e:
        raise EvaluationError(str(e)) from None
    if not files:
        files = validation_files(checkpoint)
        log(f"evaluating the run's validation split: {files}")
    check_files(files)
    stabn, baseline = (None if m is None else with_precision(m, choice.precision)
                       for m in _models(checkpoint, baseline_checkpoint))
    if output_dir:  # created once the checkpoints are accepted
        check_output_dir(output_dir)
    log(choice.describe())
    limit = max_videos or None
    results: dict = {"checkpoint": os.fspath(checkpoint),
                     "baseline_checkpoint": os.fspath(baseline_checkpoint) or None,
                     "files": files if isinstance(files, str) else list(files),
                     "precision": choice.to_json()}
    entries = []  # (row label, model), baseline first like the paper
    if baseline is not None:
        entries.append((baseline.backbone_name, baseline))
    if stabn is not None:
        entries.append((f"{stabn.backbone_name} + ST-ABN", stabn))
    if "table1" in tables:
        rows = []
        for label, model in entries:
            log(f"Table 1: {label}, {list(num_clips)} clip(s) per video ...")
            rows.append((label, model, evaluate_accuracy(model, files, num_clips,
                                                         batch_size=batch_size,
                                                         max_videos=limit)))
        results["table1"] = {label: {"frames": m.preprocessor.num_frames,
                                     "image_size": m.preprocessor.image_size, **r}
                             for label, m, r in rows}
    if "table2" in tables and stabn is not None and invert:
        log(f"Table 2: attention inversion {list(invert)} ...")
        results["table2"] = evaluate_inversions(stabn, files, invert, num_clips=num_clips[0],
                                                batch_size=batch_size, max_videos=limit)
        results["table2"]["num_clips"] = num_clips[0]
    elif "table2" in tables:
        log("Table 2 skipped: it needs an ST-ABN checkpoint and --invert settings.")
    if "explanation" in tables:
        log("Explanation quality (ST-ABN attention, Grad-CAM, random) ...")
        results["explanation"] = explanation_quality(
            stabn, baseline, files, batch_size=batch_size,
            max_videos=explain_max_videos or limit, pointing_tolerance=pointing_tolerance,
            deletion_grid=deletion_grid, gradcam_layers=gradcam_layers, seed=seed)
    if figures and output_dir:
        folder = os.path.join(output_dir, "figures")
        results["figures"] = write_figures(stabn, baseline, files, folder, figures,
                                           gradcam_layer=(gradcam_layers or [None])[0])
        log(f"Figure 3 for {figures} clip(s) in {folder}")
    titles = {"table1": "Table 1: accuracy (single clip and multi-clip)",
              "table2": f"Table 2: attention inversion ({num_clips[0]} clip(s) per video)",
              "explanation": "Explanation quality against ground truth"}
    # The Markdown files come from results.json's data, as the explanation browser's tables do.
    markdown = {key: table.markdown() for key, table in results_tables(results).items()}
    combined = "\n\n".join(f"### {titles[k]}\n\n{v}" for k, v in markdown.items())
    if output_dir:
        _write_outputs(output_dir, results, markdown, combined)
    results["markdown"] = combined
    return results


def _write_outputs(output_dir: str, results: dict, markdown: dict[str, str],
                   combined: str) -> None:
    """results.json and the Markdown tables, each written whole or not at all."""
    try:
        write_atomic(os.path.join(output_dir, "results.json"),
                     json.dumps(results, indent=2, allow_nan=True))
        for key, text in markdown.items():
            write_atomic(os.path.join(output_dir, TABLE_FILES[key]), text + "\n")
        write_atomic(os.path.join(output_dir, "tables.md"), combined + "\n")
    except OSError as e:
        raise EvaluationError(f"--output_dir: cannot write into {output_dir!r} "
                              f"({e.strerror or e})") from None
