"""Evaluation: the paper's Table 1 (multi-clip top-1/top-5), Table 2 (attention inversion),
and the quality of the explanations against ground truth, next to Grad-CAM and chance.

    python -m stabn_tf.evaluate --checkpoint=runs/demo/checkpoints/final.keras \\
        --baseline_checkpoint=runs/demo_baseline/checkpoints/final.keras \\
        --tables=all --figures=4 --output_dir=runs/demo/evaluation

(`--files=<glob>` picks the TFRecords; by default the validation split the checkpoint's
training run used, read from its config.json.)

The CLI (`main`) is a thin layer over the library functions here:

- `load_checkpoint`, `model_spec`: a `.keras` file → model, and what input it needs.
- `score_videos`: per-video class probabilities of a split with `num_clips` clips per
  video (each clip's softmax, averaged over the clips: 2 clips = the paper's "32+32").
- `accuracy`, `evaluate_accuracy`, `evaluate_inversions`: Table 1 and Table 2 numbers.
- `explanation_quality`: pointing game, attention mass in the box, temporal AUROC and
  deletion curves (`stabn_tf.explanation_metrics`) for ST-ABN's attention, Grad-CAM
  (`stabn_tf.gradcam`) on the baseline and on ST-ABN's perception branch, and random maps.
- `table1_markdown`, `table2_markdown`, `explanation_markdown`: the tables.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

import stabn_tf  # noqa: F401  (registers the custom objects `.keras` files name)
from stabn_tf import data as data_lib
from stabn_tf import explanation_metrics as em
from stabn_tf.gradcam import GradCAM
from stabn_tf.layers.attention import INVERSIONS
from stabn_tf.models.backbone import RESNET_SPECS, STEM_WIDTH
from stabn_tf.models.stabn import (
    ATTENTION,
    PERCEPTION,
    SPATIAL_ATTENTION,
    TEMPORAL_ATTENTION,
    attention_inversion,
    explanation_model,
    is_stabn,
)

HEADS = (PERCEPTION, ATTENTION)
TABLES = ("table1", "table2", "explanation")
#: The classic pointing game forgives 15 px at 224 px input.
POINTING_TOLERANCE = 15 / 224


class EvaluationError(ValueError):
    """An input that makes the evaluation impossible; `str()` is one line for the user."""


# --- models --------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike) -> keras.Model:
    """Loads a `.keras` checkpoint of an ST-ABN or baseline model (without its optimizer).

    Raises `EvaluationError` with one line naming the file when it is missing or not a
    loadable Keras model.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EvaluationError(f"{path}: no such checkpoint file")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises many exception types for a bad file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvaluationError(f"{path}: cannot load as a Keras model ({reason})") from e


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model needs and is: input frames and size, classes, kind, backbone name."""

    num_frames: int
    image_size: int
    num_classes: int
    is_stabn: bool
    backbone: str


def model_spec(model: keras.Model) -> ModelSpec:
    shape = model.input.shape  # (None, T, H, W, 3)
    if len(shape) != 5 or shape[2] != shape[3] or shape[4] != 3:
        raise EvaluationError(f"model {model.name!r} takes {tuple(shape)}, not square clips "
                              "[B, T, S, S, 3]")
    classes = int(model.get_layer(PERCEPTION).output.shape[-1])
    return ModelSpec(int(shape[1]), int(shape[2]), classes, is_stabn(model),
                     describe_backbone(model))


def describe_backbone(model: keras.Model) -> str:
    """"3D ResNet-50" / "3D ResNet-18 ×0.25", read off the layers (depth from the blocks
    per stage and block type, width from the stem)."""
    names = [layer.name for layer in model.layers]
    blocks = tuple(len({n.split("_")[1] for n in names if n.startswith(f"res{s}_block")
                        and n.endswith("_out")}) for s in range(2, 6))
    bottleneck = any(n.startswith("res2_block1_conv_c") for n in names)
    depth = next((d for d, spec in RESNET_SPECS.items()
                  if spec.blocks == blocks and spec.bottleneck == bottleneck), None)
    name = f"3D ResNet-{depth}" if depth else "3D ResNet"
    try:
        width = model.get_layer("stem_conv_a").filters / STEM_WIDTH
    except (ValueError, AttributeError):
        width = 1.0
    return name if width == 1.0 else f"{name} ×{width:g}"


def run_validation_files(checkpoint: str | os.PathLike) -> str:
    """The validation shards a training run used, from its `config.json` (the run
    directory holds `checkpoints/<file>.keras`): `val_files`, or the built-in synthetic set
    (found in, or regenerated into, the run's `cache_dir`)."""
    from stabn_tf.training.trainer import data_patterns, load_run_config

    try:
        config = load_run_config(checkpoint)
    except (OSError, ValueError, TypeError) as e:
        raise EvaluationError(f"no --files given and the training config next to "
                              f"{checkpoint} is unreadable ({e})") from None
    if config is None:
        raise EvaluationError(f"no --files given and no training config (config.json) next "
                              f"to {checkpoint}")
    val_pattern = data_patterns(config)[1]
    if not val_pattern:
        raise EvaluationError(f"no --files given and the training config next to "
                              f"{checkpoint} names no val_files: pass --files")
    return val_pattern


def _forward(model: keras.Model) -> Callable:
    """A traced inference call (traced anew per call of this function, so the attention
    inversion set at that moment is the one compiled in)."""
    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def _softmax(logits) -> np.ndarray:
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()


# --- Table 1 and Table 2 ------------------------------------------------------------------


@dataclasses.dataclass
class VideoScores:
    """Per-video results of one pass over a split.

    probabilities: head → `[N, K]`, the clips' softmax averaged; per_clip: head →
    `[N, n, K]`, each clip's softmax; labels `[N]`; clip_ids `[N]`.
    """

    probabilities: dict[str, np.ndarray]
    per_clip: dict[str, np.ndarray]
    labels: np.ndarray
    clip_ids: list[str]
    num_clips: int


def _batches(ds: tf.data.Dataset, batch_size: int, max_videos: int | None) -> Iterable:
    if max_videos:
        ds = ds.unbatch().take(max_videos).batch(batch_size)
    return ds


def score_videos(model: keras.Model, file_pattern: str | Sequence[str], *, num_clips: int = 1,
                 batch_size: int = 8, max_videos: int | None = None) -> VideoScores:
    """Runs `model` on every video of the split with `num_clips` evenly offset clips
    (`stabn_tf.data` eval sampling) and averages each head's softmax over the clips."""
    spec = model_spec(model)
    ds = data_lib.make_dataset(file_pattern, training=False, batch_size=batch_size,
                               num_frames=spec.num_frames, image_size=spec.image_size,
                               num_clips=num_clips, with_metadata=True,
                               with_ground_truth=False)
    forward = _forward(model)
    per_clip: dict[str, list[np.ndarray]] = {}
    labels, clip_ids = [], []
    for clips, targets in _batches(ds, batch_size, max_videos):
        count = int(clips.shape[0])
        flat = tf.reshape(clips, [-1, *clips.shape[-4:]])  # [B·n, T, S, S, 3]
        outputs = forward(flat)
        for head in HEADS:
            if head in outputs:
                probs = _softmax(outputs[head]).reshape(count, num_clips, -1)
                per_clip.setdefault(head, []).append(probs)
        labels.append(targets[PERCEPTION].numpy())
        clip_ids += [c.decode("utf-8") for c in targets["clip_id"].numpy()]
    if not labels:
        raise EvaluationError(f"no videos in {file_pattern!r}")
    stacked = {head: np.concatenate(v) for head, v in per_clip.items()}
    return VideoScores({head: v.mean(axis=1) for head, v in stacked.items()}, stacked,
                       np.concatenate(labels), clip_ids, num_clips)


def topk_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the k highest scores (ties broken by index)."""
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    k = min(k, probabilities.shape[-1])
    top = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def accuracy(scores: VideoScores) -> dict[str, dict[str, float]]:
    """head → {"top1", "top5", "true_class_probability"} of the averaged scores (the last
    is the mean probability of the true class: finer than top-1 on small splits)."""
    rows = np.arange(len(scores.labels))
    return {head: {"top1": topk_accuracy(p, scores.labels, 1),
                   "top5": topk_accuracy(p, scores.labels, 5),
                   "true_class_probability": float(p[rows, scores.labels].mean())}
            for head, p in scores.probabilities.items()}


def evaluate_accuracy(model: keras.Model, file_pattern, num_clips: Sequence[int] = (1, 2), *,
                      batch_size: int = 8, max_videos: int | None = None) -> dict:
    """Table 1 numbers for one model: `{"<n>": {head: {"top1", "top5"}}, "videos": N}`."""
    results: dict = {}
    for n in num_clips:
        scores = score_videos(model, file_pattern, num_clips=n, batch_size=batch_size,
                              max_videos=max_videos)
        results[str(n)] = accuracy(scores)
        results["videos"] = len(scores.labels)
    return results


def evaluate_inversions(model: keras.Model, file_pattern, modes: Sequence[str] = INVERSIONS, *,
                        num_clips: int = 1, batch_size: int = 8,
                        max_videos: int | None = None) -> dict:
    """Table 2: perception top-1/top-5 with Ms and/or Mt replaced by 1−M at inference.

    Returns `{mode: {"top1", "top5"}, "ordering": {...}}`; the model's own inversion mode is
    restored afterwards.
    """
    if not is_stabn(model):
        raise EvaluationError("attention inversion needs an ST-ABN model (this one has no "
                              "attention branch)")
    unknown = [m for m in modes if m not in INVERSIONS]
    if unknown:
        raise EvaluationError(f"unknown inversion setting(s) {unknown}; choose from {INVERSIONS}")
    results: dict = {}
    for mode in modes:
        with attention_inversion(mode, model):
            scores = score_videos(model, file_pattern, num_clips=num_clips,
                                  batch_size=batch_size, max_videos=max_videos)
        results[mode] = accuracy(scores)[PERCEPTION]
    results["ordering"] = inversion_ordering(results)
    return results


def inversion_ordering(results: dict) -> dict:
    """Checks the paper's Table 2 ordering on top-1: both < temporal < none, spatial < none
    (each check is None when a setting is missing)."""
    def top1(mode):
        return results[mode]["top1"] if mode in results else None

    def less(a, b):
        return None if top1(a) is None or top1(b) is None else bool(top1(a) < top1(b))

    checks = {"both < temporal": less("both", "temporal"),
              "temporal < none": less("temporal", "none"),
              "spatial < none": less("spatial", "none")}
    known = [v for v in checks.values() if v is not None]
    return {**checks, "reproduced": bool(known) and all(known) and len(known) == 3}


# --- explanation quality --------------------------------------------------------------------


@dataclasses.dataclass
class _Method:
    name: str
    model_name: str
    explain: Callable  # (clips, labels) -> (spatial [B,T,h,w], temporal [B,T] or None)
    forward: Callable  # clips -> {"perception": logits}


class _Accumulator:
    def __init__(self):
        self.pointing, self.mass, self.frame_auc, self.region_auc = [], [], [], []
        self.weights, self.active = [], []

    def summary(self) -> dict:
        temporal = (em.temporal_auroc(np.concatenate(self.weights), np.concatenate(self.active))
                    if self.weights else {"per_clip": float("nan"), "pooled": float("nan"),
                                          "clips": 0})

        def mean(values):
            values = np.concatenate(values) if values else np.zeros(0)
            return float(values.mean()) if len(values) else float("nan")

        return {"pointing_game": mean(self.pointing), "mass_in_box": mean(self.mass),
                "temporal_auroc": temporal["per_clip"], "temporal_auroc_pooled":
                temporal["pooled"], "frame_deletion_auc": mean(self.frame_auc),
                "region_deletion_auc": mean(self.region_auc),
                "frames_scored": int(sum(len(v) for v in self.pointing)),
                "clips_with_both_kinds_of_frame": temporal["clips"]}


def deletion_aucs(forward: Callable, clips: np.ndarray, labels: np.ndarray,
                  masks: Sequence[np.ndarray], apply: Callable, chunk: int = 64) -> np.ndarray:
    """Deletion AUC `[B]` per clip: `apply(clip, masks[b])` gives clip b's inputs after
    each deletion step `[S, T, H, W, 3]`; each goes through `forward` (≤ `chunk` clips at a
    time) and the true-class probability curve is summarised by `deletion_auc`."""
    def inputs():
        for b in range(len(clips)):
            yield from apply(clips[b], masks[b])

    probs, pending = [], []
    for clip in inputs():
        pending.append(clip)
        if len(pending) == chunk:
            probs.append(_softmax(forward(tf.constant(np.stack(pending)))[PERCEPTION]))
            pending = []
    if pending:
        probs.append(_softmax(forward(tf.constant(np.stack(pending)))[PERCEPTION]))
    steps = len(masks[0])
    curves = np.concatenate(probs).reshape(len(clips), steps, -1)
    curves = curves[np.arange(len(clips)), :, labels]  # [B, S]
    return np.array([em.deletion_auc(c) for c in curves])


def explanation_quality(
    stabn: keras.Model | None,
    baseline: keras.Model | None,
    file_pattern,
    *,
    batch_size: int = 8,
    max_videos: int | None = None,
    pointing_tolerance: float = POINTING_TOLERANCE,
    deletion_grid: int = 4,
    deletion_batch: int = 64,
    gradcam_layers: Sequence[str] = ("res5", "res4"),
    seed: int = 0,
) -> dict:
    """Explanation metrics for each method, on the split's ground truth (`clip/gt/*`).

    Methods: "ST-ABN attention" (Ms, Mt); "Grad-CAM" at each of `gradcam_layers` (layer
    or stage names; "res5", the last stage, is ST-ABN's perception branch; "res4" has
    twice the resolution: ST-ABN's f, and the same resolution as Ms) on each model; and two
    references per model: "random" (uniform noise maps at Ms's resolution, H/16, and
    random frame weights) and "centre prior" (a fixed
    Gaussian at the frame centre, `explanation_metrics.centre_prior`; no temporal part).
    Grad-CAM explains the true class.

    - pointing game / mass in box: over active frames where the object is visible; the
      pointing game forgives `pointing_tolerance` (fraction of the frame side).
    - temporal AUROC: active vs static frames, mean over clips that have both (and pooled).
    - deletion AUC (lower = more faithful): true-class probability of the method's own
      model while frames (by temporal score), or `deletion_grid`² cells per frame (by
      spatial score), are replaced by the mean colour, most important first. Compare with
      the random row of the same model.

    Returns `{"methods": [{"method", "model", metrics...}], "videos": N, "ground_truth":
    bool, settings...}`.
    """
    models = {name: m for name, m in (("ST-ABN", stabn), ("baseline", baseline)) if m is not None}
    if not models:
        raise EvaluationError("explanation quality needs at least one model")
    specs = {name: model_spec(m) for name, m in models.items()}
    if len({(s.num_frames, s.image_size) for s in specs.values()}) > 1:
        raise EvaluationError(f"the models take different clips ({specs}); explanation "
                              "quality compares them on the same clips")
    spec = next(iter(specs.values()))
    rng = np.random.default_rng(seed)
    methods: list[_Method] = []
    forwards = {name: _forward(m) for name, m in models.items()}
    map_size = None
    if stabn is not None:
        explained = _forward(explanation_model(stabn))

        def attention(clips, labels):
            out = explained(tf.constant(clips))
            return (out[SPATIAL_ATTENTION].numpy()[..., 0],
                    out[TEMPORAL_ATTENTION].numpy())

        methods.append(_Method("ST-ABN attention (Ms, Mt)", "ST-ABN", attention,
                               forwards["ST-ABN"]))
        map_size = tuple(explanation_model(stabn).output[SPATIAL_ATTENTION].shape[2:4])
    for layer in gradcam_layers:
        for name in ("ST-ABN", "baseline"):
            if name not in models:
                continue
            cam = GradCAM(models[name], layer)

            def gradcam(clips, labels, cam=cam):
                result = cam(clips, labels, batch_size=len(clips))
                return result.maps, result.frame_scores

            methods.append(_Method(f"Grad-CAM {cam.layer}", name, gradcam, forwards[name]))
    if map_size is None:  # no ST-ABN: the resolution its Ms would have (f, at H/16)
        map_size = (max(1, spec.image_size // 16),) * 2
    for name in models:
        def random_maps(clips, labels, size=map_size):
            b, t = clips.shape[:2]
            return rng.uniform(size=(b, t, *size)), rng.uniform(size=(b, t))

        def centre(clips, labels, size=map_size):
            b, t = clips.shape[:2]
            return np.broadcast_to(em.centre_prior(size), (b, t, *size)), None

        methods.append(_Method("random", name, random_maps, forwards[name]))
        methods.append(_Method("centre prior", name, centre, forwards[name]))

    ds = data_lib.make_dataset(file_pattern, training=False, batch_size=batch_size,
                               num_frames=spec.num_frames, image_size=spec.image_size,
                               with_metadata=True)
    acc = {id(m): _Accumulator() for m in methods}
    videos, has_truth = 0, None
    size = spec.image_size
    for clips_t, targets in _batches(ds, batch_size, max_videos):
        clips = clips_t.numpy()
        labels = targets[PERCEPTION].numpy()
        videos += len(clips)
        has_truth = "gt_box" in targets
        if has_truth:
            active = targets["gt_active"].numpy().astype(bool)
            boxes = targets["gt_box"].numpy()
            scored = active & em.box_visible(boxes)  # [B, T]
        for method in methods:
            a = acc[id(method)]
            spatial, temporal = method.explain(clips, labels)
            if has_truth:
                if scored.any():
                    a.pointing.append(em.pointing_game(spatial[scored], boxes[scored], size,
                                                       tolerance=pointing_tolerance))
                    a.mass.append(em.mass_in_box(spatial[scored], boxes[scored], size))
                if temporal is not None:
                    a.weights.append(temporal)
                    a.active.append(active)
            if temporal is not None:
                frame_masks = [em.frame_deletion_masks(temporal[b]) for b in range(len(clips))]
                a.frame_auc.append(deletion_aucs(method.forward, clips, labels, frame_masks,
                                                 em.apply_frame_mask, deletion_batch))
            cell_scores = [em.grid_scores(spatial[b], deletion_grid, size)
                           for b in range(len(clips))]
            region_masks = [em.region_deletion_masks(c) for c in cell_scores]
            a.region_auc.append(deletion_aucs(
                method.forward, clips, labels, region_masks,
                lambda clip, mask: em.apply_region_mask(clip, mask, deletion_grid),
                deletion_batch))
    if not videos:
        raise EvaluationError(f"no videos in {file_pattern!r}")
    rows = [{"method": m.name, "model": m.model_name, **acc[id(m)].summary()} for m in methods]
    return {"methods": rows, "videos": videos, "ground_truth": bool(has_truth),
            "pointing_tolerance": pointing_tolerance, "deletion_grid": deletion_grid,
            "map_size": list(map_size), "image_size": size, "num_frames": spec.num_frames}


def write_figures(stabn: keras.Model | None, baseline: keras.Model | None, file_pattern,
                  output_dir: str, count: int, *, gradcam_layer: str | None = None,
                  class_names: Sequence[str] | None = None) -> list[str]:
    """Figure 3 (PNG + GIF + JSON, `stabn_tf.explain`) for the split's first `count` clips:
    `<id>.png` with ST-ABN's attention and, given a baseline, `<id>_gradcam_baseline.png`
    with its Grad-CAM; ground-truth boxes are drawn when the records have them. Class
    names default to labels.txt beside the shards. Returns the PNG paths."""
    from stabn_tf import explain  # explain imports this module

    if class_names is None:
        files = data_lib.list_files(file_pattern)
        path = os.path.join(os.path.dirname(files[0]), "labels.txt")
        class_names = data_lib.read_labels(path) if os.path.exists(path) else None
    explainers = []
    for model, method, suffix in ((stabn, "attention", ""),
                                  (baseline, "gradcam", "_gradcam_baseline")):
        if model is None:
            continue
        spec = model_spec(model)
        names = list(class_names) if class_names and len(class_names) == spec.num_classes \
            else [f"class {i}" for i in range(spec.num_classes)]
        explainers.append((explain.Explainer(model, names, method,
                                             gradcam_layer=gradcam_layer), suffix))
    written = []
    for explainer, suffix in explainers:
        spec = explainer.spec
        for item in explain.tfrecord_clips(file_pattern, spec.num_frames, spec.image_size,
                                           max_clips=count):
            explanation = explainer.explain(item["name"] + suffix, item["clip"], item["frames"],
                                            frame_numbers=item["frame_numbers"],
                                            true_label=item["true_label"], boxes=item["boxes"])
            written.append(explain.render_explanation(explanation, output_dir)["png"])
    return written


# --- tables ---------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{100 * value:.1f}"


def _num(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def frames_label(num_frames: int, num_clips: int) -> str:
    """"32" for one clip, "32+32" for two (the paper's notation), "32×3" beyond."""
    if num_clips <= 2:
        return "+".join([str(num_frames)] * num_clips)
    return f"{num_frames}×{num_clips}"


def table1_markdown(entries: Sequence[tuple[str, ModelSpec, dict]]) -> str:
    """Table 1 layout: model | frames | top-1 | top-5 (perception, the prediction), plus
    the attention branch's own head. `entries`: (label, spec, `evaluate_accuracy` result),
    baseline first; rows grouped by clip count like the paper."""
    lines = ["| Model | Frames | top-1 (%) | top-5 (%) | attention branch top-1 / top-5 (%) |",
             "|---|---|---|---|---|"]
    counts = sorted({int(n) for _, _, r in entries for n in r if n.isdigit()})
    for n in counts:
        for label, spec, results in entries:
            if str(n) not in results:
                continue
            r = results[str(n)]
            att = (f"{_pct(r[ATTENTION]['top1'])} / {_pct(r[ATTENTION]['top5'])}"
                   if ATTENTION in r else "—")
            lines.append(f"| {label} | {frames_label(spec.num_frames, n)} | "
                         f"{_pct(r[PERCEPTION]['top1'])} | {_pct(r[PERCEPTION]['top5'])} | "
                         f"{att} |")
    return "\n".join(lines)


def table2_markdown(results: dict) -> str:
    """Table 2 layout: inversion setting | top-1 | top-5, then the ordering check."""
    names = {"none": "none (ST-ABN)", "spatial": "spatial inverted (1−Ms)",
             "temporal": "temporal inverted (1−Mt)", "both": "both inverted"}
    lines = ["| Attention | top-1 (%) | top-5 (%) | mean p(true class) |", "|---|---|---|---|"]
    for mode in INVERSIONS:
        if mode in results:
            lines.append(f"| {names[mode]} | {_pct(results[mode]['top1'])} | "
                         f"{_pct(results[mode]['top5'])} | "
                         f"{_num(results[mode].get('true_class_probability'))} |")
    order = results.get("ordering", {})
    if order:
        marks = ", ".join(f"{k}: {'yes' if v else 'no' if v is not None else '—'}"
                          for k, v in order.items() if k != "reproduced")
        lines.append("")
        lines.append(f"Paper's ordering (top-1) reproduced: "
                     f"{'yes' if order.get('reproduced') else 'no'} ({marks}).")
    return "\n".join(lines)


def explanation_markdown(quality: dict) -> str:
    """method × metric table of `explanation_quality`'s result."""
    lines = ["| Method | Model | Pointing game ↑ | Mass in box ↑ | Temporal AUROC ↑ "
             "(per clip / pooled) | Frame deletion AUC ↓ | Region deletion AUC ↓ |",
             "|---|---|---|---|---|---|---|"]
    for row in quality["methods"]:
        lines.append(f"| {row['method']} | {row['model']} | {_num(row['pointing_game'])} | "
                     f"{_num(row['mass_in_box'])} | {_num(row['temporal_auroc'])} / "
                     f"{_num(row['temporal_auroc_pooled'])} | "
                     f"{_num(row['frame_deletion_auc'])} | {_num(row['region_deletion_auc'])} |")
    size = quality["image_size"]
    h, w = quality["map_size"]
    lines += ["", f"{quality['videos']} videos, {quality['num_frames']} frames at {size}×{size} "
              f"(Ms and the reference maps: {h}×{w} per frame). Spatial metrics on active "
              "frames with the object visible; pointing tolerance "
              f"{quality['pointing_tolerance'] * size:.1f} px; maps are bilinearly upsampled "
              "to the frame. Temporal AUROC: active vs static frames. "
              f"Deletion replaces frames / {quality['deletion_grid']}×"
              f"{quality['deletion_grid']} cells per frame with the mean colour, most important "
              "first, and integrates the true-class probability of the row's model (lower = "
              "more faithful; compare with the random row of the same model). Grad-CAM "
              "explains the true class; on ST-ABN its last stage (res5) is the perception "
              "branch. Centre prior: a fixed central Gaussian (no temporal part)."]
    if not quality["ground_truth"]:
        lines.append("The records carry no ground truth (`clip/gt/*`): only deletion is scored.")
    return "\n".join(lines)


# --- the CLI --------------------------------------------------------------------------------


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


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
    log: Callable[[str], None] = print,
) -> dict:
    """Everything `python -m stabn_tf.evaluate` does; returns the results it writes.

    Writes (with `output_dir`): `results.json` and `table1.md` / `table2.md` /
    `explanation_quality.md` / `tables.md` (all three); with `figures=N`, Figure 3 for
    the split's first N clips under `figures/` (`write_figures`).
    """
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise EvaluationError(f"unknown table(s) {unknown}; choose from {TABLES} or all")
    if not files:
        files = run_validation_files(checkpoint)
        log(f"evaluating the run's validation split: {files}")
    if any(n < 1 for n in num_clips):
        raise EvaluationError(f"--num_clips must be >= 1, got {list(num_clips)}")
    try:
        data_lib.list_files(files)
    except FileNotFoundError as e:
        raise EvaluationError(str(e)) from None
    model = load_checkpoint(checkpoint)
    baseline = load_checkpoint(baseline_checkpoint) if baseline_checkpoint else None
    if baseline is not None and is_stabn(baseline):
        raise EvaluationError(f"{baseline_checkpoint}: --baseline_checkpoint is an ST-ABN model")
    if baseline is not None and not is_stabn(model):
        raise EvaluationError(f"{checkpoint}: --checkpoint is a baseline; pass the ST-ABN "
                              "model there when giving --baseline_checkpoint")
    stabn = model if is_stabn(model) else None
    if baseline is None and stabn is None:
        baseline = model
    limit = max_videos or None
    results: dict = {"checkpoint": os.fspath(checkpoint),
                     "baseline_checkpoint": os.fspath(baseline_checkpoint) or None,
                     "files": files if isinstance(files, str) else list(files)}
    markdown: dict[str, str] = {}
    entries = []  # (row label, spec, model), baseline first like the paper
    if baseline is not None:
        entries.append((model_spec(baseline).backbone, model_spec(baseline), baseline))
    if stabn is not None:
        entries.append((f"{model_spec(stabn).backbone} + ST-ABN", model_spec(stabn), stabn))
    if "table1" in tables:
        rows = []
        for label, spec, m in entries:
            log(f"Table 1: {label}, {list(num_clips)} clip(s) per video ...")
            rows.append((label, spec, evaluate_accuracy(m, files, num_clips,
                                                        batch_size=batch_size,
                                                        max_videos=limit)))
        results["table1"] = {label: {"frames": spec.num_frames, "image_size": spec.image_size,
                                     **r} for label, spec, r in rows}
        markdown["table1"] = table1_markdown(rows)
    if "table2" in tables and stabn is not None and invert:
        log(f"Table 2: attention inversion {list(invert)} ...")
        results["table2"] = evaluate_inversions(stabn, files, invert, num_clips=num_clips[0],
                                                batch_size=batch_size, max_videos=limit)
        results["table2"]["num_clips"] = num_clips[0]
        markdown["table2"] = table2_markdown(results["table2"])
    elif "table2" in tables:
        log("Table 2 skipped: it needs an ST-ABN checkpoint and --invert settings.")
    if "explanation" in tables:
        log("Explanation quality (ST-ABN attention, Grad-CAM, random) ...")
        results["explanation"] = explanation_quality(
            stabn, baseline, files, batch_size=batch_size,
            max_videos=explain_max_videos or limit, pointing_tolerance=pointing_tolerance,
            deletion_grid=deletion_grid, gradcam_layers=gradcam_layers, seed=seed)
        markdown["explanation"] = explanation_markdown(results["explanation"])
    if figures and output_dir:
        results["figures"] = write_figures(stabn, baseline, files, os.path.join(output_dir,
                                                                                "figures"),
                                           figures, gradcam_layer=(gradcam_layers or [None])[0])
        log(f"Figure 3 for {figures} clip(s) in {os.path.join(output_dir, 'figures')}")
    titles = {"table1": "Table 1: accuracy (single clip and multi-clip)",
              "table2": f"Table 2: attention inversion ({num_clips[0]} clip(s) per video)",
              "explanation": "Explanation quality against ground truth"}
    combined = "\n\n".join(f"### {titles[k]}\n\n{v}" for k, v in markdown.items())
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2, allow_nan=True)
        names = {"table1": "table1.md", "table2": "table2.md",
                 "explanation": "explanation_quality.md"}
        for key, text in markdown.items():
            _write(os.path.join(output_dir, names[key]), text + "\n")
        _write(os.path.join(output_dir, "tables.md"), combined + "\n")
    results["markdown"] = combined
    return results


def _define_flags():
    from absl import flags

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
    flags.mark_flag_as_required("checkpoint")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        raise SystemExit(f"stabn_tf.evaluate: error: unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    tables = list(TABLES) if f.tables == ["all"] else f.tables
    try:
        results = run(
            checkpoint=f.checkpoint, files=f.files, baseline_checkpoint=f.baseline_checkpoint,
            tables=tables, num_clips=[int(n) for n in f.num_clips], invert=f.invert,
            output_dir=f.output_dir, batch_size=f.batch_size, max_videos=f.max_videos,
            explain_max_videos=f.explain_max_videos, pointing_tolerance=f.pointing_tolerance,
            deletion_grid=f.deletion_grid, gradcam_layers=f.gradcam_layers, seed=f.seed,
            figures=f.figures, log=lambda text: print(text, file=sys.stderr, flush=True))
    except (EvaluationError, OSError, data_lib.LabelFileError) as e:
        print(f"stabn_tf.evaluate: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(results["markdown"])
    if f.output_dir:
        print(f"\nwritten to {f.output_dir}")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
