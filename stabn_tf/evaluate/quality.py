"""Explanation quality against ground truth: ST-ABN's attention next to a 3D Grad-CAM of
each model and two references (random maps, a centre prior), scored by pointing game,
attention mass in the box, temporal AUROC and deletion curves (`stabn_tf.explain.metrics`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from stabn_tf.data import make_dataset
from stabn_tf.evaluate.accuracy import check_labels, first_videos, softmax, traced_forward
from stabn_tf.evaluate.errors import EvaluationError
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
    explain: Callable  # (clips, labels) -> (spatial [B,T,h,w], temporal [B,T] or None)
    forward: Callable  # clips -> {"perception": logits}


class _Accumulator:
    """A method's per-batch scores, kept until the split is done (AUROC needs them all)."""

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
            probs.append(softmax(forward(tf.constant(np.stack(pending)))[PERCEPTION]))
            pending = []
    if pending:
        probs.append(softmax(forward(tf.constant(np.stack(pending)))[PERCEPTION]))
    steps = len(masks[0])
    curves = np.concatenate(probs).reshape(len(clips), steps, -1)
    curves = curves[np.arange(len(clips)), :, labels]  # [B, S]
    return np.array([em.deletion_auc(c) for c in curves])


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
    random frame weights) and "centre prior" (a fixed
    Gaussian at the frame centre, `metrics.centre_prior`; no temporal part).
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
    rng = np.random.default_rng(seed)
    methods: list[_Method] = []
    forwards = {name: traced_forward(m) for name, m in models.items()}
    map_size = None
    if stabn is not None:
        explained = forwards["ST-ABN"]  # the explanation graph: Ms and Mt are outputs

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
            try:
                cam = GradCAM(models[name], layer)
            except ValueError as e:
                raise EvaluationError(f"Grad-CAM layer {layer!r}: {e}") from None

            def gradcam(clips, labels, cam=cam):
                result = cam(clips, labels, batch_size=len(clips))
                return result.maps, result.frame_scores

            methods.append(_Method(f"Grad-CAM {cam.layer}", name, gradcam, forwards[name]))
    if map_size is None:  # no ST-ABN: the resolution its Ms would have (f, at H/16)
        map_size = (max(1, size // 16),) * 2
    for name in models:
        def random_maps(clips, labels, size=map_size):
            b, t = clips.shape[:2]
            return rng.uniform(size=(b, t, *size)), rng.uniform(size=(b, t))

        def centre(clips, labels, size=map_size):
            b, t = clips.shape[:2]
            return np.broadcast_to(em.centre_prior(size), (b, t, *size)), None

        methods.append(_Method("random", name, random_maps, forwards[name]))
        methods.append(_Method("centre prior", name, centre, forwards[name]))

    ds = make_dataset(file_pattern, preprocessor=preprocessor, training=False,
                      batch_size=batch_size, with_metadata=True)
    acc = {id(m): _Accumulator() for m in methods}
    videos, has_truth = 0, None
    for clips_t, targets in first_videos(ds, batch_size, max_videos):
        clips = clips_t.numpy()
        labels = targets[PERCEPTION].numpy()
        for model in models.values():
            check_labels(labels, model, file_pattern)
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
            "map_size": list(map_size), "image_size": size, "num_frames": preprocessor.num_frames}

