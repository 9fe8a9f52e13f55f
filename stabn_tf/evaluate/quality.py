"""Explanation quality against ground truth: ST-ABN's attention next to a 3D Grad-CAM of
each model and two references (random maps, a centre prior), scored by pointing game,
attention mass in the box, temporal AUROC and deletion curves (`stabn_tf.explain.metrics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from stabn_tf.evaluate.accuracy import check_labels, softmax, traced_forward
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.evaluate.passes import Pass, fixed, in_order, plan_shards, run_pass
from stabn_tf.evaluate.state import ScoreStore
from stabn_tf.explain import metrics as em
from stabn_tf.inference.gradcam import GradCAM
from stabn_tf.models.stabn import VideoClassifier, explanation_model
from stabn_tf.outputs import PERCEPTION, SPATIAL_ATTENTION, TEMPORAL_ATTENTION

#: The classic pointing game forgives 15 px at 224 px input.
POINTING_TOLERANCE = 15 / 224


@dataclasses.dataclass
class _Method:
    """One row of the table: an explanation method applied to one model."""

    name: str
    model_name: str
    explain: Callable  # (clips, labels, rng) -> (spatial [B,T,h,w], temporal [B,T] or None)
    forward: Callable  # clips -> {"perception": logits}


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
            probs.append(softmax(forward(tf.constant(np.stack(pending)))[PERCEPTION]))
            pending = []
    if pending:
        probs.append(softmax(forward(tf.constant(np.stack(pending)))[PERCEPTION]))
    steps = len(masks[0])
    curves = np.concatenate(probs).reshape(len(clips), steps, -1)
    curves = curves[np.arange(len(clips)), :, labels]  # [B, S]
    return np.array([em.deletion_auc(c) for c in curves])


def _mean(values: np.ndarray) -> float:
    """The mean of the values that are not NaN (NaN marks "not scored"); NaN if none."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


@dataclasses.dataclass
class Quality:
    """The explanation-quality table as a pass: `score` reduces a batch to per-video
    scores (per method and frame: pointing, mass in box, temporal weight; per method and
    video: the two deletion AUCs), `summary` turns a split's scores into the table's
    numbers. Build it with `quality_table`."""

    models: dict[str, VideoClassifier]
    methods: list[_Method]
    preprocessor: object
    map_size: tuple[int, int]
    pointing_tolerance: float
    deletion_grid: int
    deletion_batch: int
    seed: int

    def score(self, clips_t, targets: dict, where) -> dict[str, np.ndarray]:
        clips = clips_t.numpy()
        labels = targets[PERCEPTION].numpy()
        for model in self.models.values():
            check_labels(labels, model, where.path)
        size, grid = self.preprocessor.image_size, self.deletion_grid
        b, t = clips.shape[:2]
        truth = "gt_box" in targets
        active = targets["gt_active"].numpy().astype(bool) if truth else np.zeros((b, t), bool)
        scored = active & em.box_visible(targets["gt_box"].numpy()) if truth else active
        out = {"truth": np.full(b, truth), "active": active}
        rng = where.rng(self.seed)
        for i, method in enumerate(self.methods):
            spatial, temporal = method.explain(clips, labels, rng)
            # float32 per frame (NaN: not scored): the bulk of what a split keeps.
            pointing, mass = (np.full((b, t), np.nan, np.float32) for _ in range(2))
            if scored.any():
                boxes = targets["gt_box"].numpy()[scored]
                pointing[scored] = em.pointing_game(spatial[scored], boxes, size,
                                                    tolerance=self.pointing_tolerance)
                mass[scored] = em.mass_in_box(spatial[scored], boxes, size)
            out[f"{i}/pointing"], out[f"{i}/mass"] = pointing, mass
            frame_auc = np.full(b, np.nan)
            if temporal is not None:
                out[f"{i}/weights"] = np.asarray(temporal)
                frame_masks = [em.frame_deletion_masks(temporal[v]) for v in range(b)]
                frame_auc = deletion_aucs(method.forward, clips, labels, frame_masks,
                                          em.apply_frame_mask, self.deletion_batch)
            out[f"{i}/frame_auc"] = frame_auc
            region_masks = [em.region_deletion_masks(em.grid_scores(spatial[v], grid, size))
                            for v in range(b)]
            out[f"{i}/region_auc"] = deletion_aucs(
                method.forward, clips, labels, region_masks,
                lambda clip, mask: em.apply_region_mask(clip, mask, grid), self.deletion_batch)
        return out

    def summary(self, scores: dict[str, np.ndarray]) -> dict:
        """`explanation_quality`'s result from the split's per-video scores."""
        truth = scores["truth"].astype(bool)
        rows = []
        for i, method in enumerate(self.methods):
            pointing = scores[f"{i}/pointing"]
            temporal = {"per_clip": float("nan"), "pooled": float("nan"), "clips": 0}
            if f"{i}/weights" in scores and truth.any():
                temporal = em.temporal_auroc(scores[f"{i}/weights"][truth],
                                             scores["active"][truth])
            rows.append({"method": method.name, "model": method.model_name,
                         "pointing_game": _mean(pointing), "mass_in_box":
                         _mean(scores[f"{i}/mass"]), "temporal_auroc": temporal["per_clip"],
                         "temporal_auroc_pooled": temporal["pooled"],
                         "frame_deletion_auc": _mean(scores[f"{i}/frame_auc"]),
                         "region_deletion_auc": _mean(scores[f"{i}/region_auc"]),
                         "frames_scored": int((~np.isnan(pointing)).sum()),
                         "clips_with_both_kinds_of_frame": temporal["clips"]})
        return {"methods": rows, "videos": len(truth), "ground_truth": bool(truth.any()),
                "pointing_tolerance": self.pointing_tolerance,
                "deletion_grid": self.deletion_grid, "map_size": list(self.map_size),
                "image_size": self.preprocessor.image_size,
                "num_frames": self.preprocessor.num_frames}

    def as_pass(self, *, key: str = "explanation", title: str = "",
                limit: int | None = None) -> Pass:
        return Pass(key, title, self.preprocessor, fixed(self.score), limit=limit,
                    ground_truth=None)


def quality_table(
    stabn: VideoClassifier | None,
    baseline: VideoClassifier | None,
    *,
    batch_size: int = 8,
    pointing_tolerance: float = POINTING_TOLERANCE,
    deletion_grid: int = 4,
    deletion_batch: int | None = None,
    gradcam_layers: Sequence[str] = ("res5", "res4"),
    seed: int = 0,
    replicate: Callable[[Callable], Callable] = lambda f: f,
) -> Quality:
    """The methods `explanation_quality` compares, ready to score batches (see there);
    `replicate` spreads each forward call of a model over the local devices."""
    deletion_batch = deletion_batch or batch_size
    models = {name: m for name, m in (("ST-ABN", stabn), ("baseline", baseline)) if m is not None}
    if not models:
        raise EvaluationError("explanation quality needs at least one model")
    preprocessors = {name: m.preprocessor for name, m in models.items()}
    clip_shapes = {name: (p.num_frames, p.image_size) for name, p in preprocessors.items()}
    if len(set(clip_shapes.values())) > 1:
        raise EvaluationError(f"the models take different clips (frames, size: {clip_shapes}); "
                              "explanation quality compares them on the same clips")
    preprocessor = next(iter(preprocessors.values()))
    size = preprocessor.image_size
    methods: list[_Method] = []
    forwards = {name: replicate(traced_forward(m)) for name, m in models.items()}
    map_size = None
    if stabn is not None:
        explained = forwards["ST-ABN"]  # the explanation graph: Ms and Mt are outputs

        def attention(clips, labels, rng):
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
            try:
                cam = GradCAM(models[name], layer)
            except ValueError as e:
                raise EvaluationError(f"Grad-CAM layer {layer!r}: {e}") from None

            def gradcam(clips, labels, rng, cam=cam):
                result = cam(clips, labels, batch_size=len(clips))
                return result.maps, result.frame_scores

            methods.append(_Method(f"Grad-CAM {cam.layer}", name, gradcam, forwards[name]))
    if map_size is None:  # no ST-ABN: the resolution its Ms would have (f, at H/16)
        map_size = (max(1, size // 16),) * 2
    for name in models:
        def random_maps(clips, labels, rng, size=map_size):
            b, t = clips.shape[:2]
            return rng.uniform(size=(b, t, *size)), rng.uniform(size=(b, t))

        def centre(clips, labels, rng, size=map_size):
            b, t = clips.shape[:2]
            return np.broadcast_to(em.centre_prior(size), (b, t, *size)), None

        methods.append(_Method("random", name, random_maps, forwards[name]))
        methods.append(_Method("centre prior", name, centre, forwards[name]))
    return Quality(models, methods, preprocessor, map_size, pointing_tolerance,
                   deletion_grid, deletion_batch, seed)


def explanation_quality(
    stabn: VideoClassifier | None,
    baseline: VideoClassifier | None,
    file_pattern,
    *,
    batch_size: int = 8,
    max_videos: int | None = None,
    pointing_tolerance: float = POINTING_TOLERANCE,
    deletion_grid: int = 4,
    deletion_batch: int | None = None,
    gradcam_layers: Sequence[str] = ("res5", "res4"),
    seed: int = 0,
) -> dict:
    """Explanation metrics for each method, on the split's ground truth (`clip/gt/*`).

    The deletion curves run `deletion_batch` masked clips per forward call (default
    `batch_size`: the memory the caller chose; 64 full-size 32×224² clips need more than
    24 GB).

    Methods: "ST-ABN attention" (Ms, Mt); "Grad-CAM" at each of `gradcam_layers` (layer
    or stage names; "res5", the last stage, is ST-ABN's perception branch; "res4" has
    twice the resolution: ST-ABN's f, and the same resolution as Ms) on each model; and two
    references per model: "random" (uniform noise maps at Ms's resolution, H/16, and
    random frame weights, drawn per batch from `seed` and the batch's place in the split)
    and "centre prior" (a fixed Gaussian at the frame centre, `metrics.centre_prior`; no
    temporal part). Grad-CAM explains the true class.

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
    quality = quality_table(stabn, baseline, batch_size=batch_size,
                            pointing_tolerance=pointing_tolerance, deletion_grid=deletion_grid,
                            deletion_batch=deletion_batch, gradcam_layers=gradcam_layers,
                            seed=seed)
    p = quality.as_pass(limit=max_videos)
    shards = plan_shards(file_pattern, p.limit)
    if not shards:
        raise EvaluationError(f"no videos in {file_pattern!r}")
    scores = in_order(run_pass(p, shards, batch_size=batch_size, store=ScoreStore(),
                               log=lambda line: None, bar=False))
    return quality.summary(scores)
