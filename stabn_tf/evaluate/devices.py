"""Where an evaluation runs: every local GPU (each batch split over them, as training's
`MirroredStrategy` does) and, with `--strategy=multi_worker` (`TF_CONFIG`), several
processes, each evaluating its own shards; the chief merges their per-video scores.

Under multi-worker the strategy serves only that merge (`gather_bytes`): the processes
score different numbers of batches, so no collective may run per batch; within a process
the local GPUs are used as `mirrored` would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.training.distribute import (
    STRATEGIES,
    is_multi_worker,
    make_strategy,
    worker_position,
)


@dataclasses.dataclass
class Devices:
    """`local`: the strategy that splits each batch over this process's devices (None:
    the default device); `cluster`: the strategy of the whole run (multi-worker or not);
    `position` of `processes`: this process's place in it (shards `position::processes`)."""

    local: tf.distribute.Strategy | None
    cluster: tf.distribute.Strategy
    position: int = 0
    processes: int = 1

    @property
    def chief(self) -> bool:
        return self.position == 0

    @property
    def replicas(self) -> int:
        return 1 if self.local is None else self.local.num_replicas_in_sync

    def describe(self) -> str:
        where = f"{self.replicas} local device(s)"
        if self.processes > 1:
            where += f", process {self.position + 1} of {self.processes}"
        return f"evaluating on {where}"

    def replicate(self, forward: Callable) -> Callable:
        """`forward` (a batch → a structure of `[B, ...]` tensors) with each batch split
        over the local devices, the outputs joined in the batch's order. A batch smaller
        than the number of devices runs on the default one."""
        strategy = self.local
        if strategy is None:
            return forward
        replicas = strategy.num_replicas_in_sync

        def call(batch):
            batch = tf.convert_to_tensor(batch)
            count = int(batch.shape[0])
            if count < replicas:
                return forward(batch)
            sizes = [len(part) for part in np.array_split(np.arange(count), replicas)]
            parts = tf.split(batch, sizes)
            values = strategy.experimental_distribute_values_from_function(
                lambda context: parts[context.replica_id_in_sync_group])
            outputs = strategy.run(forward, args=(values,))
            return tf.nest.map_structure(
                lambda v: tf.concat(strategy.experimental_local_results(v), axis=0), outputs)

        return call


def evaluation_devices(strategy: str | tf.distribute.Strategy = "auto") -> Devices:
    """The `Devices` of `--strategy` (training's names: auto, default, mirrored,
    multi_worker; tpu is refused), or of a strategy object (a test's two logical CPUs).
    Call it before any other TensorFlow work: a multi-worker strategy must be made first."""
    if isinstance(strategy, str):
        if strategy == "tpu":
            raise EvaluationError("--strategy=tpu: evaluation runs on GPUs and CPUs; choose "
                                  f"from {[s for s in STRATEGIES if s != 'tpu']}")
        try:
            strategy = make_strategy(strategy)
        except ValueError as e:
            raise EvaluationError(str(e).replace("`strategy`", "--strategy")) from None
    if is_multi_worker(strategy):
        position, processes = worker_position(strategy)
        local = tf.distribute.MirroredStrategy() \
            if len(tf.config.list_logical_devices("GPU")) > 1 else None
        return Devices(local, strategy, position, processes)
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return Devices(strategy, strategy)
    return Devices(None, strategy)
