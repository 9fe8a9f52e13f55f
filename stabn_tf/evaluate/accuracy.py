"""Accuracy: the paper's Table 1 (multi-clip top-1/top-5) and Table 2 (attention inversion).

- `score_videos`: per-video class probabilities of a split with `num_clips` clips per
  video (each clip's softmax, averaged over the clips: 2 clips = the paper's "32+32").
- `accuracy`, `evaluate_accuracy`: Table 1's numbers; `evaluate_inversions` and
  `inversion_ordering`: Table 2's, and whether the paper's ordering holds.
- `accuracy_scorer`, `accuracy_pass`, `inversion_pass`, `accuracy_of`: the same as passes
  over the split (`stabn_tf.evaluate.passes`) that keep per video only the true class's
  rank (`true_class_rank`) and probability.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from stabn_tf.data import make_dataset
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.evaluate.passes import Pass, ScoreBatch, fixed, in_order, plan_shards, run_pass
from stabn_tf.evaluate.state import Scores, ScoreStore
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
    (`stabn_tf.data` eval sampling) and averages each head's softmax over the clips.

    Keeps every clip's K scores: for looking at a few videos' scores. The tables
    (`evaluate_accuracy`, `run`) keep only a rank and a probability per video."""
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


def true_class_rank(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row, how many classes come before the true one in `topk_accuracy`'s order
    (higher scores first, ties by index): the label is in the top k when the rank is < k.
    Kept per video instead of the K scores."""
    probabilities = np.asarray(probabilities)
    rows = np.arange(len(labels))
    true = probabilities[rows, labels][:, None]
    before = np.arange(probabilities.shape[-1])[None, :] < np.asarray(labels)[:, None]
    return ((probabilities > true) | ((probabilities == true) & before)).sum(axis=1
                                                                         ).astype(np.int32)


def accuracy_scorer(model: VideoClassifier, num_clips: int, heads: Sequence[str] = HEADS,
                    replicate: Callable[[Callable], Callable] = lambda f: f) -> ScoreBatch:
    """Per-video scores of a batch for Table 1 / 2: per head, the true class's rank
    (`<head>/rank`) and probability (`<head>/p_true`) of the clips' averaged softmax.
    `replicate` spreads each forward call over the local devices."""
    forward = replicate(traced_forward(model))

    def score(clips, targets, where) -> Scores:
        labels = targets[PERCEPTION].numpy()
        check_labels(labels, model, where.path)
        count = int(clips.shape[0])
        outputs = forward(tf.reshape(clips, [-1, *clips.shape[-4:]]))  # [B·n, T, S, S, 3]
        scores = {}
        for head in heads:
            if head in outputs:
                probs = softmax(outputs[head]).reshape(count, num_clips, -1).mean(axis=1)
                scores[f"{head}/rank"] = true_class_rank(probs, labels)
                scores[f"{head}/p_true"] = probs[np.arange(count), labels]
        return scores

    return score


def accuracy_of(scores: Scores) -> dict[str, dict[str, float]]:
    """`accuracy`'s numbers from the per-video scores of `accuracy_scorer`."""
    heads = [name.split("/")[0] for name in scores if name.endswith("/rank")]
    return {head: {"top1": float((scores[f"{head}/rank"] < 1).mean()),
                   "top5": float((scores[f"{head}/rank"] < 5).mean()),
                   "true_class_probability": float(scores[f"{head}/p_true"].mean())}
            for head in heads}


def accuracy_pass(model: VideoClassifier, num_clips: int, *, key: str, title: str,
                  limit: int | None = None,
                  replicate: Callable[[Callable], Callable] = lambda f: f) -> Pass:
    """Table 1's pass for one model and clip count."""
    return Pass(key, title, model.preprocessor,
                fixed(accuracy_scorer(model, num_clips, replicate=replicate)),
                num_clips=num_clips, limit=limit)


def inversion_pass(model: VideoClassifier, mode: str, num_clips: int, *, key: str,
                   title: str, limit: int | None = None,
                   replicate: Callable[[Callable], Callable] = lambda f: f) -> Pass:
    """Table 2's pass for one inversion setting: the forward is traced with it set."""
    @contextlib.contextmanager
    def inverted():
        with attention_inversion(mode, model):
            yield accuracy_scorer(model, num_clips, (PERCEPTION,), replicate)

    return Pass(key, title, model.preprocessor, inverted, num_clips=num_clips, limit=limit)


def check_inversions(model: VideoClassifier, modes: Sequence[str]) -> None:
    if not model.has_attention:
        raise EvaluationError("attention inversion needs an ST-ABN model (this one has no "
                              "attention branch)")
    unknown = [m for m in modes if m not in INVERSIONS]
    if unknown:
        raise EvaluationError(f"unknown inversion setting(s) {unknown}; choose from {INVERSIONS}")


def _scores(p: Pass, file_pattern, batch_size: int) -> Scores:
    """A pass over the split in memory, quietly (the library calls below)."""
    shards = plan_shards(file_pattern, p.limit)
    if not shards:
        raise EvaluationError(f"no videos in {file_pattern!r}")
    return in_order(run_pass(p, shards, batch_size=batch_size, store=ScoreStore(),
                             log=lambda line: None, bar=False))


def evaluate_accuracy(model: VideoClassifier, file_pattern, num_clips: Sequence[int] = (1, 2),
                      *, batch_size: int = 8, max_videos: int | None = None) -> dict:
    """Table 1 numbers for one model: `{"<n>": {head: {"top1", "top5"}}, "videos": N}`."""
    results: dict = {}
    for n in num_clips:
        scores = _scores(accuracy_pass(model, n, key=f"clips{n}", title="", limit=max_videos),
                         file_pattern, batch_size)
        results[str(n)] = accuracy_of(scores)
        results["videos"] = len(scores[f"{PERCEPTION}/rank"])
    return results


def evaluate_inversions(model: VideoClassifier, file_pattern,
                        modes: Sequence[str] = INVERSIONS, *, num_clips: int = 1,
                        batch_size: int = 8, max_videos: int | None = None) -> dict:
    """Table 2: perception top-1/top-5 with Ms and/or Mt replaced by 1−M at inference.

    Returns `{mode: {"top1", "top5"}, "ordering": {...}}`; the model's own inversion mode is
    restored afterwards.
    """
    check_inversions(model, modes)
    results: dict = {}
    for mode in modes:
        p = inversion_pass(model, mode, num_clips, key=mode, title="", limit=max_videos)
        results[mode] = accuracy_of(_scores(p, file_pattern, batch_size))[PERCEPTION]
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
