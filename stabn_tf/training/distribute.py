"""Choosing a `tf.distribute` strategy, and who writes files under it."""

from __future__ import annotations

import json
import os

import keras
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
