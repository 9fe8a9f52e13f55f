"""Evaluation as passes over the split, shard by shard and batch by batch, each batch
reduced at once to a few numbers per video (`Scores`) and kept in a `ScoreStore`.

Why this shape: memory holds one batch of clips and the per-video scores, whatever the
split's size; a pass resumes from its last finished batch; and a shard's batches are the
same whichever process reads it (a batch never spans two shards), so workers that each
evaluate their own shards (`--strategy=multi_worker`) give the one-process numbers.
Videos are taken shard by shard in file order (the first N videos: `--max_videos`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from stabn_tf.data import count_examples, list_files, make_dataset
from stabn_tf.evaluate.progress import Progress
from stabn_tf.evaluate.state import Scores, ScoreStore, concatenate


@dataclasses.dataclass(frozen=True)
class Shard:
    """One file of the split: its index in the sorted file list and how many of its
    videos are evaluated."""

    index: int
    path: str
    videos: int


@dataclasses.dataclass(frozen=True)
class Where:
    """The batch being scored: its shard (index and file) and its own index in that shard
    (a seed for anything random, so it is the same in a resumed or a multi-worker run)."""

    shard: int
    batch: int
    path: str = ""

    def rng(self, seed: int) -> np.random.Generator:
        return np.random.default_rng([seed, self.shard, self.batch])


#: (clips, targets, where) → per-video scores of the batch, each array `[B, ...]`.
ScoreBatch = Callable[[tf.Tensor, dict, Where], Scores]


@dataclasses.dataclass
class Pass:
    """One pass over (the first `limit` videos of) the split.

    `key` names its scores in the store (a folder name); `title` is what the progress
    shows; `open()` is entered around the pass and yields its `ScoreBatch` (e.g. with the
    attention inverted for the pass). Clips are read as `preprocessor` makes them,
    `num_clips` per video, with the records' ground truth when `ground_truth` (None: when
    the records have it).
    """

    key: str
    title: str
    preprocessor: object
    open: Callable[[], contextlib.AbstractContextManager[ScoreBatch]]
    num_clips: int = 1
    limit: int | None = None
    ground_truth: bool | None = False


def fixed(score: ScoreBatch) -> Callable[[], contextlib.AbstractContextManager[ScoreBatch]]:
    """A `Pass.open` for a scorer that needs no setup."""
    return lambda: contextlib.nullcontext(score)


def plan_shards(files: str | Sequence[str], limit: int | None = None) -> list[Shard]:
    """The split's shards in file order with their video counts (the converter's record
    of them, else counted), cut after the first `limit` videos (None: all); shards
    without videos are left out."""
    shards = []
    for index, path in enumerate(list_files(files)):
        shards.append(Shard(index, path, count_examples(path)))
    return first_videos_of(shards, limit)


def first_videos_of(shards: Sequence[Shard], limit: int | None) -> list[Shard]:
    """`shards` cut after their first `limit` videos (None: all), empty ones left out."""
    kept, total = [], 0
    for shard in shards:
        count = shard.videos if limit is None else min(shard.videos, limit - total)
        if count > 0:
            kept.append(dataclasses.replace(shard, videos=count))
        total += count
    return kept


def _batches(shard: Shard, p: Pass, batch_size: int, skip: int) -> tf.data.Dataset:
    ds = make_dataset(shard.path, preprocessor=p.preprocessor, training=False,
                      batch_size=batch_size, num_clips=p.num_clips, with_metadata=True,
                      with_ground_truth=p.ground_truth)
    ds = ds.unbatch().take(shard.videos).batch(batch_size)
    return ds.skip(skip)


def run_pass(p: Pass, shards: Sequence[Shard], *, batch_size: int, store: ScoreStore,
             log: Callable[[str], None] = print, bar: bool | None = None,
             on_batch: Callable[[str, Where], None] | None = None) -> dict[int, Scores]:
    """Scores `shards` (this process's) with pass `p`, resuming from what `store` holds;
    returns each shard's per-video scores by shard index. `on_batch(key, where)` is
    called after each batch is kept (a test stops the evaluation there)."""
    done = {s.index: (s.videos if store.finished(p.key, s.index) else
                      min(s.videos, store.batches_done(p.key, s.index) * batch_size))
            for s in shards}
    progress = Progress(p.title, sum(s.videos for s in shards), sum(done.values()),
                        log=log, bar=bar)
    if 0 < progress.done < progress.total:
        log(f"{p.title}: resuming after {progress.done} videos")
    try:
        pending = [s for s in shards if not store.finished(p.key, s.index)]
        if pending:
            with p.open() as score:
                for shard in pending:
                    first = store.batches_done(p.key, shard.index)
                    for b, (clips, targets) in enumerate(
                            _batches(shard, p, batch_size, first), start=first):
                        where = Where(shard.index, b, shard.path)
                        store.save_batch(p.key, shard.index, b, score(clips, targets, where))
                        progress.update(int(clips.shape[0]))
                        if on_batch is not None:
                            on_batch(p.key, where)
                    store.finish(p.key, shard.index)
    finally:
        progress.close()
    return {s.index: store.shard(p.key, s.index) for s in shards}


def in_order(by_shard: dict[int, Scores]) -> Scores:
    """Per-shard scores joined in shard order: the split's videos in file order."""
    return concatenate([by_shard[i] for i in sorted(by_shard)])
