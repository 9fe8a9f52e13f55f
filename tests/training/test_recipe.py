"""The learning-rate schedule: its values at every step, and that a saved optimizer reloads."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from stabn_tf.training.recipe import WarmupSchedule, build_optimizer


def _cosine(step: int, peak: float, total: int, warmup: int) -> float:
    """The schedule in closed form: a linear ramp of `peak/warmup` per step, then a
    half cosine from `peak` to 0 over the remaining steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(max((step - warmup) / max(total - warmup, 1), 0.0), 1.0)
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


# The demo (lr 0.2 per 64 at batch 16, 15 epochs of 36 steps, 1 warm-up epoch), a longer
# run with a longer warm-up, and one without warm-up.
@pytest.mark.parametrize("peak, total, warmup", [(0.05, 540, 36), (0.0123, 1000, 100),
                                                 (0.1, 300, 0)])
def test_cosine_schedule_at_every_step(peak, total, warmup):
    schedule = WarmupSchedule(peak, total_steps=total, warmup_steps=warmup, kind="cosine")
    in_graph = tf.function(schedule)  # as the optimizer calls it while training
    steps = range(total + 20)
    want = np.array([_cosine(s, peak, total, warmup) for s in steps])
    for call in (schedule, in_graph):
        got = np.array([float(call(tf.constant(s, tf.int64))) for s in steps])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=peak * 1e-7)
        if warmup:
            assert got[0] == pytest.approx(peak / warmup)
            assert got[warmup - 1] == pytest.approx(peak) and got[warmup] == pytest.approx(peak)


def test_an_optimizer_saved_with_the_schedule_reloads():
    optimizer = build_optimizer(global_batch_size=16, steps_per_epoch=36, epochs=15,
                                base_lr=0.2, schedule="cosine", warmup_epochs=1)
    # How a checkpoint's optimizer config names the schedule (the same as older runs').
    config = keras.optimizers.serialize(optimizer)
    assert config["config"]["learning_rate"]["registered_name"] == "stabn_tf>WarmupSchedule"
    assert config["config"]["learning_rate"]["config"] == {
        "peak": 0.05, "total_steps": 540, "warmup_steps": 36, "kind": "cosine",
        "boundaries": [], "decay_factor": 0.1}
    restored = keras.optimizers.deserialize(config)
    for step in (0, 35, 36, 200, 539, 600):
        optimizer.iterations.assign(step)
        restored.iterations.assign(step)
        assert float(restored.learning_rate) == float(optimizer.learning_rate)
