"""`build_report`: everything `python -m stabn_tf.report` does, as one library call.

Layout of the site (every link relative, so the folder can be opened from disk, zipped or
served as it is):

    index.html                 summary: Tables 1/2, explanation quality, top-1 per class,
                               confusion matrices, the two models side by side
    gallery.html               every clip's card data, drawn (the cards in view), filtered
                               and sorted by assets/gallery.js
    corrections.html           the clips corrected in the editor, and their export
    clips.json, models.json    the data: each clip's predictions; each model's kind,
                               content key and precision
    clips/<clip>.html          a page per clip, with the box editor (assets/editor.js)
    assets/                    report.css and the scripts (stabn_tf/report/static), and
                               corrections-data.js: the file loaded with --corrections
    media/<model>-<hash>/      per model, keyed on the checkpoint's content: each clip's
                               pictures (Figure 3, thumbnail, the strip of sampled frames
                               the editor shows; GIF and Grad-CAM panel when asked for)
                               and `<clip>.record.json`; `evaluation/` holds the tables
                               (`stabn_tf.evaluate.run`)

A re-run with the same checkpoint finds each clip's record and draws nothing again; a
changed checkpoint has another hash, so another folder.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from stabn_tf.data import list_files, tfrecord
from stabn_tf.disk import is_disk_full, write_atomic
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.evaluate.inputs import check_files, validation_files
from stabn_tf.evaluate.report import TABLES, check_output_dir
from stabn_tf.evaluate.report import run as run_evaluation
from stabn_tf.evaluate.tables import Table, results_tables
from stabn_tf.explain.figures import SPATIAL_CMAP, check_colormap
from stabn_tf.explain.glyphs import check_names
from stabn_tf.explain.metrics import pearson
from stabn_tf.explain.resize import resize
from stabn_tf.inference import (
    EXPORTED_MODELS,
    InferenceError,
    OutputNames,
    tfrecord_clips,
)
from stabn_tf.precision import check_precision
from stabn_tf.report import pages
from stabn_tf.report.clips import Drawing, load_record, spatial_maps
from stabn_tf.report.corrections import known_corrections, load_corrections
from stabn_tf.report.drawing import Drawer, default_workers
from stabn_tf.report.models import ReportModel, open_model


def _labels(paths: Sequence[str]) -> list[str]:
    """Short names for the models: file names, or their last path parts when equal."""
    names = [os.path.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return ["/".join(os.path.normpath(p).split(os.sep)[-3:]) for p in paths]


def clip_labels(files, models: Sequence[ReportModel]) -> list[tuple[str, int]]:
    """Every record's (clip id, label), read without decoding a frame before any model
    runs, so an empty split and labels outside a model's classes (a checkpoint of other
    data) fail in one line first; `--sample` chooses its clips from these."""
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
    return labels


def sample_clips(clip_ids: Sequence[str], n: int, seed: int) -> list[str]:
    """`n` of the clips, chosen by a keyed hash of each id: the same clips for the same
    split and seed whatever the records' order, in record order."""
    def rank(clip_id: str) -> bytes:
        return hashlib.blake2b(clip_id.encode("utf-8"), digest_size=8,
                               key=str(seed).encode()).digest()
    chosen = set(sorted(clip_ids, key=rank)[:n])
    return [c for c in clip_ids if c in chosen]


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


def compare_clip(first: dict, second: dict) -> dict:
    """How two models' explanations of one clip agree: same prediction, Pearson
    correlation of Mt, and of Ms (per frame, at the larger map size, averaged)."""
    out = {"agree": first["predicted"] == second["predicted"],
           "mt_correlation": _correlation(first["temporal"], second["temporal"]),
           "ms_correlation": None}
    a, b = spatial_maps(first), spatial_maps(second)
    if a is not None and b is not None and len(a) == len(b):
        size = (max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]))
        a, b = resize(a, size), resize(b, size)
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
    sample: int = 0,
    seed: int = 0,
    errors_only: bool = False,
    animations: bool = False,
    gradcam: bool = False,
    gradcam_layer: str | None = None,
    tables: Sequence[str] = TABLES,
    num_clips: Sequence[int] = (1, 2),
    batch_size: int = 8,
    precision: str = "auto",
    corrections: str = "",
    colormap: str = SPATIAL_CMAP,
    workers: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Writes the site into `output_dir` and returns `{"index", "gallery", "clips",
    "rendered", "failed", "seconds"}` (rendered: clips that were drawn, not reused;
    failed: clips left out, each said in one line).

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

    Which clips: a `sample` of that many chosen by a hash of (`seed`, clip id) (0: all),
    the first `max_clips` of those as they are read (0: all), and with `errors_only` only
    those the first
    model gets wrong (decided as each clip is predicted: nothing is read twice). Each clip
    gets Figure 3, a thumbnail and the editor's frames (about 30 KB at the demo's size);
    `animations` adds the GIF and `gradcam` a 3D Grad-CAM panel (each several times that).
    The drawing runs in `workers` processes (None: every core); the site is the same for
    any number.

    `corrections`: a box file the editor exported earlier (`load_corrections`), loaded
    into every page's editor under the browser's own edits (a clip edited in the browser
    keeps the browser's version).

    `colormap`: the spatial maps' colour map (`figures.SPATIAL_COLORMAPS`) in every
    picture, the editor's overlay and the gallery's legend.
    """
    start = time.perf_counter()
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise EvaluationError(f"unknown table(s) {unknown}; choose from {TABLES}, all or none")
    for name, value in (("max_clips", max_clips), ("sample", sample)):
        if value < 0:
            raise EvaluationError(f"--{name} must be >= 0, got {value}")
    try:
        check_colormap(colormap)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise EvaluationError(f"--workers must be >= 1, got {workers}")
    check_precision(precision)
    paths = [os.fspath(checkpoint)] + ([os.fspath(compare_checkpoint)]
                                       if compare_checkpoint else [])
    if not files:
        keras_paths = [p for p in paths if not p.endswith(EXPORTED_MODELS)]
        if not keras_paths:
            raise EvaluationError("an exported model has no run config: pass --files")
        files = validation_files(keras_paths[0])
        log(f"reporting on the run's validation split: {files}")
    check_files(files)
    loaded = load_corrections(corrections, log) if corrections else {}
    models = [open_model(p, gradcam=gradcam, gradcam_layer=gradcam_layer, log=log,
                         precision="auto" if i and p.endswith(EXPORTED_MODELS) else precision)
              for i, p in enumerate(paths)]
    shown = next((m for m in models if m.keras is not None), models[0])
    log(shown.runner.precision_choice.describe())
    for model, label in zip(models, _labels(paths)):
        model.label = label
    _check_same_clips(models)
    check_output_dir(output_dir)  # created once the checkpoints are accepted
    clip_ids = [clip for clip, _ in clip_labels(files, models)]
    if corrections:
        loaded = known_corrections(loaded, clip_ids, corrections, log)
    sampled = 0 < sample < len(clip_ids)
    if sampled:
        clip_ids = sample_clips(clip_ids, sample, seed)
        log(f"a sample of {len(clip_ids)} clips (seed {seed})")
    count = min(len(clip_ids), max_clips or len(clip_ids))
    check_names([*models[0].runner.class_names, *clip_ids])  # once, not in every worker
    workers = min(workers, count)  # a pool for one clip costs more than it saves
    folders = [os.path.join(output_dir, "media", m.key) for m in models]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    tables_shown = [_tables(m, f, files=files, tables=tables, num_clips=num_clips,
                        max_videos=max_clips, batch_size=batch_size, log=log)
                for m, f in zip(models, folders)]

    names = OutputNames()
    entries, pending, counts = [], collections.deque(), {"rendered": 0, "failed": 0}

    def finish(entry: dict, records: list) -> None:
        """The clip's records, once drawn; a clip that cannot be drawn is one line."""
        try:
            entry["records"] = [r.result() if hasattr(r, "result") else r for r in records]
        except Exception as e:
            if is_disk_full(e):
                raise
            counts["failed"] += 1
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            log(f"clip {entry['clip']!r}: cannot draw it ({reason}); left out")
            return
        if len(models) == 2:
            entry["comparison"] = compare_clip(*entry["records"])
        entries.append(entry)

    clips = tfrecord_clips(files, models[0].runner.preprocessor, max_clips=count,
                           clip_ids=clip_ids if sampled else ())
    bar = tqdm(total=count, desc="report", unit="clip", disable=not progress)
    try:
        with Drawer(workers) as drawer:
            for clip in itertools.islice(clips, count):
                bar.update()
                stem = names.claim(clip.name)
                records = [load_record(folder, stem, clip, animation=animations,
                                       gradcam=model.gradcam is not None, colormap=colormap)
                           for model, folder in zip(models, folders)]
                outputs = [None] * len(models)
                try:
                    if errors_only:
                        if records[0] is None:
                            outputs[0] = models[0].runner.predict(clip)
                        predicted = (records[0]["predicted"] if records[0] is not None
                                     else outputs[0].top_k(1)[0][0])
                        if clip.true_label is None or predicted == clip.true_label:
                            continue
                    for i, (model, folder) in enumerate(zip(models, folders)):
                        if records[i] is None:
                            records[i] = drawer.submit(Drawing.of(
                                clip, outputs[i] or model.runner.predict(clip), folder, stem,
                                animation=animations, gradcam=None if model.gradcam is None
                                else model.gradcam.predict(clip), colormap=colormap))
                except (InferenceError, ValueError) as e:
                    counts["failed"] += 1
                    log(f"clip {clip.name!r}: cannot explain it "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                        "left out")
                    continue
                counts["rendered"] += any(hasattr(r, "result") for r in records)
                pending.append(({"stem": stem, "clip": clip.name,
                                 "true_label": clip.true_label}, records))
                while len(pending) > 2 * workers:  # bounded: records come back in order
                    finish(*pending.popleft())
            while pending:
                finish(*pending.popleft())
    except tf.errors.OpError as e:
        reason = (str(getattr(e, "message", "") or e).splitlines() or [type(e).__name__])[0]
        raise EvaluationError(f"cannot explain the clips of {files!r} with "
                              f"{models[0].label} ({reason})") from None
    finally:
        bar.close()
    if not entries:
        raise EvaluationError(f"no clips to show from {files!r}" + (
            " (--errors_only: the model gets every chosen clip right)" if errors_only else ""))
    written = pages.write_site(output_dir, models, entries, tables_shown, loaded,
                               os.path.basename(corrections) if corrections else "")
    seconds = time.perf_counter() - start
    log(f"report: {written['index']} ({len(entries)} clips, {counts['rendered']} drawn, "
        f"{counts['failed']} left out, {seconds:.1f} s)")
    return {**written, "clips": len(entries), **counts, "seconds": seconds}
