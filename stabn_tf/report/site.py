"""`build_report`: everything `python -m stabn_tf.report` does, as one library call.

Layout of the site (every link relative, so the folder can be opened from disk, zipped or
served as it is):

    index.html                 summary: Tables 1/2, explanation quality, top-1 per class,
                               confusion matrices, the two models side by side
    gallery.html               one card per clip, filters and sort (assets/gallery.js)
    corrections.html           the clips corrected in the editor, and their export
    clips.json, models.json    the data: each clip's predictions; each model's kind,
                               content key and precision
    clips/<clip>.html          a page per clip, with the box editor (assets/editor.js)
    assets/                    report.css and the scripts (stabn_tf/report/static), and
                               corrections-data.js: the file loaded with --corrections
    media/<model>-<hash>/      per model, keyed on the checkpoint's content: each clip's
                               pictures (Figure 3, GIF, thumbnail, the strip of sampled
                               frames the editor shows) and `<clip>.record.json`;
                               `evaluation/` holds the tables (`stabn_tf.evaluate.run`)

A re-run with the same checkpoint finds each clip's record and draws nothing again; a
changed checkpoint has another hash, so another folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from stabn_tf.data import list_files, tfrecord
from stabn_tf.disk import write_atomic
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.evaluate.inputs import check_files, validation_files
from stabn_tf.evaluate.report import TABLES, check_output_dir
from stabn_tf.evaluate.report import run as run_evaluation
from stabn_tf.evaluate.tables import Table, results_tables
from stabn_tf.explain.metrics import pearson, upsample
from stabn_tf.inference import (
    EXPORTED_MODELS,
    InferenceError,
    OutputNames,
    tfrecord_clips,
)
from stabn_tf.precision import PrecisionError, check_precision
from stabn_tf.report import pages
from stabn_tf.report.clips import explain_clip, load_record, spatial_maps
from stabn_tf.report.corrections import load_corrections
from stabn_tf.report.models import ReportModel, open_model


def _labels(paths: Sequence[str]) -> list[str]:
    """Short names for the models: file names, or their last path parts when equal."""
    names = [os.path.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return ["/".join(os.path.normpath(p).split(os.sep)[-3:]) for p in paths]


def count_clips(files, models: Sequence[ReportModel], max_clips: int) -> int:
    """How many clips the report will show; reads every record's id and label (no frame
    is decoded) before any model runs, so an empty split and labels outside a model's
    classes (a checkpoint of other data) fail in one line first."""
    labels = []
    try:
        for record in tf.data.TFRecordDataset(list_files(files)):
            parsed = tfrecord.parse_sequence_example(record)
            labels.append((parsed[tfrecord.CLIP_ID].numpy().decode("utf-8"),
                           int(parsed[tfrecord.LABEL_INDEX])))
    except tf.errors.OpError as e:
        reason = (e.message or type(e).__name__).splitlines()[0]
        raise EvaluationError(f"cannot read the clips of {files!r} ({reason})") from None
    if not labels:
        raise EvaluationError(f"no clips in {files!r}: the validation split is empty")
    for m in models:
        classes = len(m.runner.class_names)
        outside = [(clip, label) for clip, label in labels if not 0 <= label < classes]
        if outside:
            raise EvaluationError(
                f"{files!r}: clip {outside[0][0]!r} has label {outside[0][1]} but "
                f"{m.label} has {classes} classes: the records and the checkpoint do not match")
    return min(len(labels), max_clips) if max_clips else len(labels)


def _check_same_clips(models: Sequence[ReportModel]) -> None:
    shapes = {m.label: (m.runner.preprocessor.num_frames, m.runner.preprocessor.image_size)
              for m in models}
    if len(set(shapes.values())) > 1:
        raise EvaluationError(f"the models take different clips (frames, size: {shapes}); "
                              "the report compares them on the same clips")
    names = [m.runner.class_names for m in models]
    if any(len(n) != len(names[0]) for n in names):
        raise EvaluationError(f"the models have different numbers of classes "
                              f"({[len(n) for n in names]}): they cannot be compared")


def _tables(model: ReportModel, folder: str, *, files, tables: Sequence[str],
            num_clips: Sequence[int], max_videos: int, batch_size: int,
            log: Callable[[str], None]) -> dict[str, Table]:
    """The model's evaluation tables by table name, from the evaluation's
    `results.json`; reused from an earlier run with the same settings (the folder is
    already keyed on the checkpoint)."""
    if model.keras is None or not tables:
        return {}
    out = os.path.join(folder, "evaluation")
    settings = {"files": files if isinstance(files, str) else list(files),
                "tables": list(tables), "num_clips": list(num_clips),
                "max_videos": max_videos, "precision": model.precision}
    settings_path = os.path.join(out, "report_settings.json")
    results_path = os.path.join(out, "results.json")
    try:
        with open(settings_path, encoding="utf-8") as f:
            same = json.load(f) == settings
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f) if same else None
    except (OSError, ValueError):  # absent or unreadable: evaluated again below
        results = None
    if results is None:
        log(f"evaluation tables for {model.label} ...")
        run_evaluation(checkpoint=model.path, files=files, tables=tables, num_clips=num_clips,
                       output_dir=out, batch_size=batch_size, max_videos=max_videos,
                       precision=model.precision, log=log)
        with open(results_path, encoding="utf-8") as f:
            results = json.load(f)
        write_atomic(settings_path, json.dumps(settings))
    return {k: t for k, t in results_tables(results).items() if k in tables}


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """`pearson` rounded for the JSON; None (not NaN, which JSON lacks) where the two do
    not pair up or either is constant."""
    if np.size(a) != np.size(b) or np.size(a) < 2:
        return None
    value = pearson(a, b)
    return None if np.isnan(value) else round(value, 4)


def compare_clip(first: dict, second: dict, first_folder: str,
                 second_folder: str) -> dict:
    """How two models' explanations of one clip agree: same prediction, Pearson
    correlation of Mt, and of Ms (per frame, at the larger map size, averaged)."""
    out = {"agree": first["predicted"] == second["predicted"],
           "mt_correlation": _correlation(first["temporal"], second["temporal"]),
           "ms_correlation": None}
    a, b = spatial_maps(first_folder, first), spatial_maps(second_folder, second)
    if a is not None and b is not None and len(a) == len(b):
        size = (max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]))
        a, b = upsample(a, size), upsample(b, size)
        values = [c for c in (_correlation(x, y) for x, y in zip(a, b)) if c is not None]
        out["ms_correlation"] = round(float(np.mean(values)), 4) if values else None
    return out


def build_report(
    *,
    checkpoint: str,
    output_dir: str,
    compare_checkpoint: str = "",
    files: str | Sequence[str] = "",
    max_clips: int = 0,
    gradcam: bool = False,
    gradcam_layer: str | None = None,
    tables: Sequence[str] = TABLES,
    num_clips: Sequence[int] = (1, 2),
    batch_size: int = 8,
    precision: str = "auto",
    corrections: str = "",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Writes the site into `output_dir` and returns `{"index", "gallery", "clips",
    "rendered", "seconds"}` (rendered: clips that were drawn, not reused).

    `checkpoint` / `compare_checkpoint`: `.keras`, `.tflite` or OpenVINO `.xml` files (the
    second is shown beside the first: a baseline, another ST-ABN, or an exported int8 model).
    `files` defaults to the validation split of the (Keras) checkpoint's run. `tables` are
    the `stabn_tf.evaluate` tables, computed for the Keras models only. The Keras models run
    in `precision` (auto, float32, bfloat16; logged once, and each model's shows on the
    summary and in `models.json`); an exported model runs in its own precision,
    which an explicit `precision` must then name for the first model (a compared
    `.tflite` is there to be compared, in whatever it computes in). Every input that makes
    the report impossible raises `EvaluationError` (one line) before a model runs where it
    can.

    `corrections`: a box file the editor exported earlier (`load_corrections`), loaded
    into every page's editor under the browser's own edits (a clip edited in the browser
    keeps the browser's version).
    """
    start = time.perf_counter()
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise EvaluationError(f"unknown table(s) {unknown}; choose from {TABLES}, all or none")
    if max_clips < 0:
        raise EvaluationError(f"--max_clips must be >= 0, got {max_clips}")
    try:
        check_precision(precision)
    except PrecisionError as e:
        raise EvaluationError(str(e)) from None
    paths = [os.fspath(checkpoint)] + ([os.fspath(compare_checkpoint)]
                                       if compare_checkpoint else [])
    if not files:
        keras_paths = [p for p in paths if not p.endswith(EXPORTED_MODELS)]
        if not keras_paths:
            raise EvaluationError("an exported model has no run config: pass --files")
        files = validation_files(keras_paths[0])
        log(f"reporting on the run's validation split: {files}")
    check_files(files)
    loaded = load_corrections(corrections) if corrections else {}
    models = [open_model(p, gradcam=gradcam, gradcam_layer=gradcam_layer, log=log,
                         precision="auto" if i and p.endswith(EXPORTED_MODELS) else precision)
              for i, p in enumerate(paths)]
    shown = next((m for m in models if m.keras is not None), models[0])
    log(shown.runner.precision_choice.describe())
    for model, label in zip(models, _labels(paths)):
        model.label = label
    _check_same_clips(models)
    check_output_dir(output_dir)  # created once the checkpoints are accepted
    count = count_clips(files, models, max_clips)
    folders = [os.path.join(output_dir, "media", m.key) for m in models]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    tables_shown = [_tables(m, f, files=files, tables=tables, num_clips=num_clips,
                        max_videos=max_clips, batch_size=batch_size, log=log)
                for m, f in zip(models, folders)]

    names = OutputNames()
    entries, rendered = [], 0
    clips = tfrecord_clips(files, models[0].runner.preprocessor, max_clips=count)
    bar = tqdm(total=count, desc="report", unit="clip", disable=not progress)
    try:
        for clip in clips:
            stem = names.claim(clip.name)
            records, drew = [], False
            for model, folder in zip(models, folders):
                record = load_record(folder, stem, clip)
                if record is None:
                    record = explain_clip(model.runner, clip, folder, stem,
                                          gradcam=model.gradcam)
                    drew = True
                records.append(record)
            rendered += drew
            entry = {"stem": stem, "clip": clip.name, "true_label": clip.true_label,
                     "records": records}
            if len(records) == 2:
                entry["comparison"] = compare_clip(records[0], records[1], *folders)
            entries.append(entry)
            bar.update()
    except (InferenceError, ValueError, tf.errors.OpError) as e:
        reason = str(getattr(e, "message", "") or e).splitlines()[0]
        raise EvaluationError(f"cannot explain the clips of {files!r} with "
                              f"{models[0].label} ({reason})") from None
    finally:
        bar.close()
    written = pages.write_site(output_dir, models, entries, tables_shown, loaded,
                               os.path.basename(corrections) if corrections else "")
    seconds = time.perf_counter() - start
    log(f"report: {written['index']} ({len(entries)} clips, {rendered} drawn, "
        f"{seconds:.1f} s)")
    return {**written, "clips": len(entries), "rendered": rendered, "seconds": seconds}
