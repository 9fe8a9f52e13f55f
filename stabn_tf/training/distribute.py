"""Choosing a `tf.distribute` strategy, and who writes files under it."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str = "auto", tpu_address: str = "") -> tf.distribute.Strategy:
    """`auto`: Mirrored over all GPUs when there are several, else the default strategy.

    `multi_worker` reads the cluster from `TF_CONFIG`; `tpu` connects to `tpu_address`
    (empty: the local or environment-configured TPU).
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}.")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the cluster in the TF_CONFIG "
                             "environment variable.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def task_identity(strategy: tf.distribute.Strategy) -> tuple[str, int]:
    """(task type, index) of this process; ("chief", 0) when not multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "chief", 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The chief writes checkpoints and summaries: task "chief", or worker 0 without one."""
    task_type, task_id = task_identity(strategy)
    if task_type == "chief":
        return True
    if task_type == "worker" and task_id == 0:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        return "chief" not in cluster
    return False


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True for `MultiWorkerMirroredStrategy` with a cluster of several tasks."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())  # noqa: SLF001 (no public query)


class _MultiWorkerTrainer(keras.Model):
    """`model`'s layers, with the per-step logs as `[1]` vectors instead of scalars.

    Keras 3's TF trainer reduces each step's logs under collective ops with
    `strategy.reduce(MEAN, value, axis=0)`, which has no axis 0 on a scalar
    (keras-team/keras#20585); a length-1 vector reduces to the replicas' mean.
    """

    def train_step(self, data):
        return _as_vectors(super().train_step(data))

    def test_step(self, data):
        return _as_vectors(super().test_step(data))


def _as_vectors(logs: dict) -> dict:
    return {name: ops.reshape(value, (1,)) for name, value in logs.items()}


def multi_worker_trainer(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers and weights that `fit`/`evaluate` can run under
    `MultiWorkerMirroredStrategy` (Keras 3.15 cannot run the model itself there).

    Build `model` under the strategy's scope, call this *outside* it, then compile the
    trainer, build its optimizer and call `fit` under the scope (Keras's own build, which
    would create the optimizer's variables, is skipped). Made outside the scope, the
    trainer takes the strategy from the context in `fit`, which skips Keras's symbolic build
    (it reduces the first batch with a collective that rejects nested batches, the other
    half of keras-team/keras#20585). Save `model`, not the trainer.
    """
    if tf.distribute.has_strategy():
        raise RuntimeError("multi_worker_trainer must be called outside the strategy's scope.")
    return _MultiWorkerTrainer(model.input, model.output, name=model.name)


def worker_position(strategy: tf.distribute.Strategy) -> tuple[int, int]:
    """(this process's index, number of processes) in the cluster: the chief (if any)
    first, then the workers by index; (0, 1) when not multi-worker. Work split by
    process (e.g. shards `i::n`) uses it."""
    if not is_multi_worker(strategy):
        return 0, 1
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    tasks = [("chief", i) for i in range(len(cluster.get("chief", [])))] + \
        [("worker", i) for i in range(len(cluster.get("worker", [])))]
    return tasks.index(task_identity(strategy)), len(tasks)


def gather_bytes(strategy: tf.distribute.Strategy, data: bytes) -> list[bytes]:
    """Every process's `data` (not empty), on every process, in the collective's replica
    order (say in the data whose it is where it matters): each process of the cluster
    calls it once, with its own bytes. `[data]` when not multi-worker."""
    if not is_multi_worker(strategy):
        return [data]
    sent = []

    def mine(values: np.ndarray, empty: np.ndarray):
        """`values` from this process's first replica, `empty` from the others."""
        def value(context):
            first = not sent
            sent.append(True)
            return tf.constant(values if first else empty)
        sent.clear()
        return strategy.experimental_distribute_values_from_function(value)

    length = np.array([len(data)], np.int64)
    lengths = strategy.gather(mine(length, np.zeros(1, np.int64)), axis=0).numpy()
    width = (int(lengths.max()) + 3) // 4
    padded = np.zeros([1, width * 4], np.uint8)
    padded[0, :len(data)] = np.frombuffer(data, np.uint8)
    rows = strategy.gather(mine(padded.view(np.int32), np.zeros([1, width], np.int32)),
                           axis=0).numpy()
    return [row.view(np.uint8)[:n].tobytes() for row, n in zip(rows, lengths, strict=True)
            if n]  # data is never empty: a 0 is a process's further replica
