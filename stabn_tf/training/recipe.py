"""The training recipe: loss, metrics, SGD Nesterov, L2 on kernels, step or cosine schedule.

Defaults are the paper's: softmax cross-entropy on both heads (weights 1/1), lr 0.01 per
64 clips (scaled linearly with the global batch), momentum 0.9, Nesterov, weight decay
5e-4 on convolution and dense kernels, lr ×0.1 at epochs 75 and 125 of 150, gradients
clipped at global norm 20.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
from keras import ops

from stabn_tf.outputs import ATTENTION, PERCEPTION

REFERENCE_BATCH = 64
SCHEDULES = ("step", "cosine")


def scaled_learning_rate(base_lr: float, global_batch_size: int,
                         reference_batch: int = REFERENCE_BATCH) -> float:
    """Linear scaling: `base_lr` is for `reference_batch` clips."""
    return base_lr * global_batch_size / reference_batch


@keras.saving.register_keras_serializable(package="stabn_tf")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then step decay (×`decay_factor` at each boundary) or cosine.

    All positions are in optimizer steps. The warm-up climbs `peak/warmup_steps` per step
    and reaches `peak` on its last step. Not Keras's `CosineDecay`: its warm-up starts from
    a separate initial rate and reaches `peak` a step later, and even its cosine alone
    differs from this one in the last bits once TensorFlow optimises the graph, so runs
    started before would not repeat.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
                 kind: str = "step", boundaries: Sequence[int] = (), decay_factor: float = 0.1):
        if kind not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {SCHEDULES}, got {kind!r}.")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.boundaries = [int(b) for b in boundaries]
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            lr = 0.5 * self.peak * (1.0 + ops.cos(math.pi * progress))
        else:
            passed = sum(ops.cast(step >= b, "float32") for b in self.boundaries)
            lr = self.peak * ops.power(self.decay_factor, passed) if self.boundaries else (
                self.peak + 0.0 * step)
        if self.warmup_steps:
            ramp = (step + 1.0) / self.warmup_steps
            lr = ops.where(step < self.warmup_steps, self.peak * ramp, lr)
        return lr

    def get_config(self):
        return dict(peak=self.peak, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                    kind=self.kind, boundaries=self.boundaries, decay_factor=self.decay_factor)


def build_optimizer(
    *,
    global_batch_size: int,
    steps_per_epoch: int,
    epochs: int = 150,
    base_lr: float = 0.01,
    momentum: float = 0.9,
    nesterov: bool = True,
    schedule: str = "step",
    decay_epochs: Sequence[int] = (75, 125),
    warmup_epochs: float = 0.0,
    clip_global_norm: float | None = 20.0,
) -> keras.optimizers.SGD:
    """SGD with the (batch-scaled) schedule. Weight decay is `apply_weight_decay`'s job."""
    peak = scaled_learning_rate(base_lr, global_batch_size)
    lr = WarmupSchedule(
        peak,
        total_steps=epochs * steps_per_epoch,
        warmup_steps=round(warmup_epochs * steps_per_epoch),
        kind=schedule,
        boundaries=[e * steps_per_epoch for e in decay_epochs if e < epochs],
    )
    return keras.optimizers.SGD(lr, momentum=momentum, nesterov=nesterov,
                                global_clipnorm=clip_global_norm or None)


def apply_weight_decay(model: keras.Model, weight_decay: float) -> int:
    """L2 penalty `weight_decay/2·‖w‖²` on every conv and dense kernel of `model`.

    Added to the loss, its gradient is `weight_decay·w` before momentum: PyTorch SGD's
    `weight_decay`, which the reference trained with (Keras's own `weight_decay` is
    decoupled, a different recipe). Not stored in `.keras` files; returns how many
    kernels got it.
    """
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None
    kernels = [w for w in model.trainable_weights if w.path.rsplit("/", 1)[-1] == "kernel"]
    for variable in kernels:
        variable.regularizer = regularizer
    return len(kernels)


@keras.saving.register_keras_serializable(package="stabn_tf")
class SparseCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy on integer labels and logits, with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"),
                                   keras.ops.shape(y_pred)[-1])
        return keras.losses.categorical_crossentropy(
            y_true, y_pred, from_logits=True, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


#: The outputs trained with cross-entropy against the class labels.
LOGITS_OUTPUTS = (PERCEPTION, ATTENTION)


def top_k_metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.SparseTopKCategoricalAccuracy(1, name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer, *,
                  label_smoothing: float = 0.0, loss_weights: dict[str, float] | None = None,
                  extra_losses: dict[str, keras.losses.Loss] | None = None,
                  jit_compile: bool | str = False, steps_per_execution: int = 1) -> None:
    """Cross-entropy on each logits output (weights 1/1 by default) and top-1/top-5 per head.

    `extra_losses` adds losses on other outputs (the attention maps of
    `explanation_model(model)`, for attention supervision), weighted by `loss_weights`.
    """
    heads = [head for head in model.output if head in LOGITS_OUTPUTS]
    losses = {head: SparseCrossEntropy(label_smoothing) for head in heads}
    losses |= extra_losses or {}
    weights = {name: 1.0 for name in losses} | (loss_weights or {})
    model.compile(
        optimizer=optimizer,
        loss=losses,
        loss_weights={name: weights[name] for name in losses},
        metrics={head: top_k_metrics() for head in heads},
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
