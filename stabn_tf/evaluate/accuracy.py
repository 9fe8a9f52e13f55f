"""Accuracy: the paper's Table 1 (multi-clip top-1/top-5) and Table 2 (attention inversion).

- `score_videos`: per-video class probabilities of a split with `num_clips` clips per
  video (each clip's softmax, averaged over the clips: 2 clips = the paper's "32+32").
- `accuracy`, `evaluate_accuracy`: Table 1's numbers; `evaluate_inversions` and
  `inversion_ordering`: Table 2's, and whether the paper's ordering holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from stabn_tf.data import make_dataset
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.layers.attention import INVERSIONS
from stabn_tf.models.policy import inference_graph
from stabn_tf.models.stabn import VideoClassifier, attention_inversion
from stabn_tf.outputs import ATTENTION, PERCEPTION

HEADS = (PERCEPTION, ATTENTION)


def traced_forward(model: VideoClassifier) -> Callable:
    """A traced inference call of `inference_graph(model)` (its outputs include
    "perception" and, for ST-ABN, "attention" and the maps), made anew per call of this
    function, so the attention inversion and weights of that moment are the ones run."""
    graph = inference_graph(model)
    return tf.function(lambda x: graph(x, training=False), reduce_retracing=True)


def softmax(logits) -> np.ndarray:
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()


def first_videos(ds: tf.data.Dataset, batch_size: int, max_videos: int | None) -> tf.data.Dataset:
    """The dataset limited to its first `max_videos` videos (all when None or 0)."""
    if max_videos:
        ds = ds.unbatch().take(max_videos).batch(batch_size)
    return ds


def check_labels(labels: np.ndarray, model: VideoClassifier, file_pattern) -> None:
    """One line when the records' labels are not classes of the model (a checkpoint trained
    on other data): the scores would index past the model's classes."""
    labels = np.asarray(labels)
    outside = labels[(labels < 0) | (labels >= model.num_classes)]
    if outside.size:
        raise EvaluationError(
            f"{file_pattern!r} has label {int(outside[0])} but {model.name!r} has "
            f"{model.num_classes} classes: the records and the checkpoint do not match")


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


def score_videos(model: VideoClassifier, file_pattern: str | Sequence[str], *,
                 num_clips: int = 1, batch_size: int = 8,
                 max_videos: int | None = None) -> VideoScores:
    """Runs `model` on every video of the split with `num_clips` evenly offset clips
    (`stabn_tf.data` eval sampling) and averages each head's softmax over the clips."""
    ds = make_dataset(file_pattern, preprocessor=model.preprocessor, training=False,
                      batch_size=batch_size, num_clips=num_clips, with_metadata=True,
                      with_ground_truth=False)
    forward = traced_forward(model)
    per_clip: dict[str, list[np.ndarray]] = {}
    labels, clip_ids = [], []
    for clips, targets in first_videos(ds, batch_size, max_videos):
        batch_labels = targets[PERCEPTION].numpy()
        check_labels(batch_labels, model, file_pattern)
        count = int(clips.shape[0])
        flat = tf.reshape(clips, [-1, *clips.shape[-4:]])  # [B·n, T, S, S, 3]
        outputs = forward(flat)
        for head in HEADS:
            if head in outputs:
                probs = softmax(outputs[head]).reshape(count, num_clips, -1)
                per_clip.setdefault(head, []).append(probs)
        labels.append(batch_labels)
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


def evaluate_accuracy(model: VideoClassifier, file_pattern, num_clips: Sequence[int] = (1, 2),
                      *, batch_size: int = 8, max_videos: int | None = None) -> dict:
    """Table 1 numbers for one model: `{"<n>": {head: {"top1", "top5"}}, "videos": N}`."""
    results: dict = {}
    for n in num_clips:
        scores = score_videos(model, file_pattern, num_clips=n, batch_size=batch_size,
                              max_videos=max_videos)
        results[str(n)] = accuracy(scores)
        results["videos"] = len(scores.labels)
    return results


def evaluate_inversions(model: VideoClassifier, file_pattern,
                        modes: Sequence[str] = INVERSIONS, *, num_clips: int = 1,
                        batch_size: int = 8, max_videos: int | None = None) -> dict:
    """Table 2: perception top-1/top-5 with Ms and/or Mt replaced by 1−M at inference.

    Returns `{mode: {"top1", "top5"}, "ordering": {...}}`; the model's own inversion mode is
    restored afterwards.
    """
    if not model.has_attention:
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
