"""`run`: everything `python -m stabn_tf.evaluate` does, as one library call that returns
its results (the CLI only parses flags and prints); and `write_figures`, Figure 3 for a
few clips of the split through the same runner and renderer as `stabn_tf.explain`.

The models describe themselves (`model.has_attention`, `model.backbone_name`,
`model.preprocessor`, `model.class_names`), so a `.keras` file alone is enough; the run
directory is read only to find the default validation split.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence

import tensorflow as tf

from stabn_tf.data import list_files
from stabn_tf.disk import write_atomic
from stabn_tf.evaluate.accuracy import (
    accuracy_of,
    accuracy_pass,
    check_inversions,
    check_labels,
    inversion_ordering,
    inversion_pass,
)
from stabn_tf.evaluate.devices import Devices, evaluation_devices
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.evaluate.inputs import check_files, load_checkpoint, validation_files
from stabn_tf.evaluate.passes import Pass, first_videos_of, in_order, plan_shards, run_pass
from stabn_tf.evaluate.quality import POINTING_TOLERANCE, quality_table
from stabn_tf.evaluate.state import PARTIAL, Scores, ScoreStore, from_bytes, to_bytes
from stabn_tf.evaluate.tables import results_tables
from stabn_tf.explain.render import render_prediction
from stabn_tf.inference import KerasRunner, OutputNames, tfrecord_clips
from stabn_tf.layers.attention import INVERSIONS
from stabn_tf.models.policy import with_precision
from stabn_tf.models.stabn import VideoClassifier, inversion_of
from stabn_tf.outputs import PERCEPTION
from stabn_tf.precision import choose_precision
from stabn_tf.runs import RunError, check_writable_dir, file_sha256
from stabn_tf.training.distribute import gather_bytes
from stabn_tf.training.signals import Interrupted

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
    if stabn is not None:
        runners.append((KerasRunner(stabn), ""))
    if baseline is not None:
        runners.append((KerasRunner(baseline, method="gradcam",
                                    gradcam_layer=gradcam_layer), "_gradcam_baseline"))
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


def _settings(**settings) -> dict:
    """What the per-video scores depend on, as JSON values: an unfinished evaluation
    resumes only with the same (the checkpoints by content too)."""
    for name in ("checkpoint", "baseline_checkpoint"):
        path = settings[name]
        settings[name] = {"path": os.fspath(path), "sha256": file_sha256(path)} if path else ""
    return json.loads(json.dumps(settings, default=list))


def _passes(stabn: VideoClassifier | None, baseline: VideoClassifier | None, *,
            tables: Sequence[str], num_clips: Sequence[int], invert: Sequence[str],
            limit: int | None, explain_limit: int | None, quality: dict,
            devices: Devices, log: Callable[[str], None]):
    """The passes the tables need, and for each table how its results come from the
    passes' per-video scores (`{table: scores by pass key → result}`)."""
    passes: list[Pass] = []
    summaries: dict[str, Callable[[dict], dict]] = {}
    entries = []  # (row label, role, model), baseline first like the paper
    if baseline is not None:
        entries.append((baseline.backbone_name, "baseline", baseline))
    if stabn is not None:
        entries.append((f"{stabn.backbone_name} + ST-ABN", "stabn", stabn))
    if "table1" in tables:
        keys = {}
        for label, role, model in entries:
            for n in num_clips:
                keys[label, n] = f"table1-{role}-{n}clip"
                passes.append(accuracy_pass(
                    model, n, key=keys[label, n], title=f"Table 1: {label}, {n} clip(s)",
                    limit=limit, replicate=devices.replicate))

        def table1(scores: dict) -> dict:
            rows = {}
            for label, _, model in entries:
                row = {"frames": model.preprocessor.num_frames,
                       "image_size": model.preprocessor.image_size}
                for n in num_clips:
                    row[str(n)] = accuracy_of(scores[keys[label, n]])
                    row["videos"] = len(scores[keys[label, n]][f"{PERCEPTION}/rank"])
                rows[label] = row
            return rows

        summaries["table1"] = table1
    if "table2" in tables and stabn is not None and invert:
        check_inversions(stabn, invert)
        # The setting the model runs with is Table 1's own pass at that clip count (the
        # same clips, the same forward): its scores are used, not a second pass.
        key_of = {mode: f"table2-{mode}" for mode in invert}
        if "table1" in tables and inversion_of(stabn) in key_of:
            key_of[inversion_of(stabn)] = keys[entries[-1][0], num_clips[0]]
        for mode in invert:
            if key_of[mode] == f"table2-{mode}":
                passes.append(inversion_pass(
                    stabn, mode, num_clips[0], key=key_of[mode],
                    title=f"Table 2: attention inversion {mode!r}", limit=limit,
                    replicate=devices.replicate))

        def table2(scores: dict) -> dict:
            results = {mode: accuracy_of(scores[key_of[mode]])[PERCEPTION]
                       for mode in invert}
            return {**results, "ordering": inversion_ordering(results),
                    "num_clips": num_clips[0]}

        summaries["table2"] = table2
    elif "table2" in tables:
        log("Table 2 skipped: it needs an ST-ABN checkpoint and --invert settings.")
    if "explanation" in tables:
        table = quality_table(stabn, baseline, replicate=devices.replicate, **quality)
        passes.append(table.as_pass(title="Explanation quality", limit=explain_limit))
        summaries["explanation"] = lambda scores: table.summary(scores["explanation"])
    return passes, summaries


def _merge(devices: Devices, by_pass: dict[str, dict[int, Scores]]) -> dict[str, Scores]:
    """Each pass's per-video scores over the whole split, in file order: this process's
    own, or under multi-worker every process's (each sends its shards' to all)."""
    if devices.processes > 1:
        mine = {f"{key}|{shard}|{name}": array for key, shards in by_pass.items()
                for shard, scores in shards.items() for name, array in scores.items()}
        by_pass = {key: {} for key in by_pass}
        for data in gather_bytes(devices.cluster, to_bytes(mine)):
            for label, array in from_bytes(data).items():
                key, shard, name = label.split("|")
                by_pass[key].setdefault(int(shard), {})[name] = array
    return {key: in_order(shards) for key, shards in by_pass.items()}


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
    strategy: str | tf.distribute.Strategy = "auto",
    restart: bool = False,
    log: Callable[[str], None] = print,
    progress: bool | None = None,
    on_batch: Callable | None = None,
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

    Each table is one or more passes over the split, shard by shard (`passes`); each
    pass shows its progress and time left (`progress`: a bar; None: when stderr is a
    terminal, else lines through `log`). With `output_dir`, every finished batch's
    per-video scores are kept in `<output_dir>/partial/` (`state`), so an interrupted
    evaluation (`Interrupted`: Ctrl-C, SIGTERM; a full disk) resumes from its last
    finished batch when run again with the same settings; other settings are refused in
    one line; `restart` drops what is kept. The folder goes once `results.json` is
    written. `strategy` (`devices`): every local GPU, or `multi_worker` processes each
    scoring its own shards, the chief writing the merged results. `on_batch(pass key,
    where)` runs after each kept batch.
    """
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise EvaluationError(f"unknown table(s) {unknown}; choose from {TABLES} or all")
    if not num_clips or any(n < 1 for n in num_clips):
        raise EvaluationError(f"--num_clips must be >= 1, got {list(num_clips)}")
    if batch_size < 1:
        raise EvaluationError(f"--batch_size must be >= 1, got {batch_size}")
    devices = evaluation_devices(strategy)  # before other TF work (multi-worker needs it)
    choice = choose_precision(precision)
    if not files:
        files = validation_files(checkpoint)
        log(f"evaluating the run's validation split: {files}")
    check_files(files)
    stabn, baseline = (None if m is None else with_precision(m, choice.precision)
                       for m in _models(checkpoint, baseline_checkpoint))
    if output_dir:  # created once the checkpoints are accepted
        check_output_dir(output_dir)
    log(choice.describe())
    if devices.replicas > 1 or devices.processes > 1:
        log(devices.describe())
    limit = max_videos or None
    quality = dict(batch_size=batch_size, pointing_tolerance=pointing_tolerance,
                   deletion_grid=deletion_grid, gradcam_layers=gradcam_layers, seed=seed)
    passes, summaries = _passes(stabn, baseline, tables=tables, num_clips=num_clips,
                                invert=invert, limit=limit,
                                explain_limit=explain_max_videos or limit, quality=quality,
                                devices=devices, log=log)
    folder = None
    if output_dir:
        folder = os.path.join(output_dir, PARTIAL)
        if devices.processes > 1:  # output_dir may be shared: one folder per process
            folder = os.path.join(folder, f"process-{devices.position}")
    store = ScoreStore(folder)
    resumed = store.begin(_settings(
        checkpoint=checkpoint, baseline_checkpoint=baseline_checkpoint,
        files=list_files(files), tables=list(tables), num_clips=list(num_clips),
        invert=list(invert), batch_size=batch_size, max_videos=max_videos,
        explain_max_videos=explain_max_videos, pointing_tolerance=pointing_tolerance,
        deletion_grid=deletion_grid, gradcam_layers=list(gradcam_layers), seed=seed,
        precision=choice.precision), restart=restart)
    if resumed:
        log(f"resuming the unfinished evaluation in {folder}")
    counted = plan_shards(files)
    if not counted:
        raise EvaluationError(f"no videos in {files!r}")
    by_pass = {}
    try:
        for i, p in enumerate(passes, start=1):
            p.title = f"[{i}/{len(passes)}] {p.title}"
            mine = first_videos_of(counted, p.limit)[devices.position::devices.processes]
            by_pass[p.key] = run_pass(p, mine, batch_size=batch_size, store=store, log=log,
                                      bar=progress, on_batch=on_batch)
    except Interrupted as e:
        kept = (f"the finished batches are kept in {folder}: run the same command again "
                "to resume" if folder else "nothing is kept without --output_dir")
        e.message = f"stopped by {e.signal_name}; {kept}"
        raise
    scores = _merge(devices, by_pass)
    results: dict = {"checkpoint": os.fspath(checkpoint),
                     "baseline_checkpoint": os.fspath(baseline_checkpoint) or None,
                     "files": files if isinstance(files, str) else list(files),
                     "precision": choice.to_json()}
    for table, summary in summaries.items():
        results[table] = summary(scores)
    if figures and output_dir and devices.chief:
        figures_dir = os.path.join(output_dir, "figures")
        results["figures"] = write_figures(stabn, baseline, files, figures_dir, figures,
                                           gradcam_layer=(gradcam_layers or [None])[0])
        log(f"Figure 3 for {figures} clip(s) in {figures_dir}")
    titles = {"table1": "Table 1: accuracy (single clip and multi-clip)",
              "table2": f"Table 2: attention inversion ({num_clips[0]} clip(s) per video)",
              "explanation": "Explanation quality against ground truth"}
    # The Markdown files come from results.json's data, as the explanation browser's tables do.
    markdown = {key: table.markdown() for key, table in results_tables(results).items()}
    combined = "\n\n".join(f"### {titles[k]}\n\n{v}" for k, v in markdown.items())
    if output_dir and devices.chief:
        _write_outputs(output_dir, results, markdown, combined)
    store.clear()
    if output_dir and not devices.chief:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(output_dir, PARTIAL))
    results["markdown"] = combined if devices.chief else ""  # the chief prints the tables
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
