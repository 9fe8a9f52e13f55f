"""Attention supervision losses: zero without annotations, the right direction with them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from stabn_tf.training.supervision import (
    SpatialSupervisionLoss,
    TemporalSupervisionLoss,
    spatial_supervision_loss,
    temporal_supervision_loss,
)

B, T, S = 2, 3, 4


def _targets(annotated=True, known=True):
    mask = np.zeros((B, T, S, S), np.float32)
    mask[:, :, 1:3, 0:2] = 1.0
    mask[:, :, 1:3, 2] = 0.5  # a soft border column
    frames = np.ones((B, T), np.float32) if annotated else np.zeros((B, T), np.float32)
    active = np.tile(np.array([0, 1, 1], np.float32), (B, 1))
    return {"box_mask": tf.constant(mask * frames[..., None, None]),
            "box_frames": tf.constant(frames), "active": tf.constant(active),
            "active_known": tf.constant(np.full([B], float(known), np.float32))}


def _ms(values):
    return tf.constant(np.asarray(values, np.float32)[..., None])


def test_losses_are_exactly_zero_without_annotations():
    targets = _targets(annotated=False, known=False)
    ms = tf.Variable(np.random.default_rng(0).uniform(size=(B, T, S, S, 1)).astype("float32"))
    mt = tf.Variable(np.random.default_rng(1).uniform(size=(B, T)).astype("float32"))
    with tf.GradientTape() as tape:
        spatial = spatial_supervision_loss(targets, ms)
        temporal = temporal_supervision_loss(targets, mt)
    assert float(spatial) == 0.0 and float(temporal) == 0.0
    grads = tape.gradient(spatial + temporal, [ms, mt])
    assert all(g is None or not np.any(g.numpy()) for g in grads)
    # Saturated maps (exact 0 and 1) stay finite: still exactly zero.
    zeros = {**targets, "box_mask": tf.zeros((B, T, S, S))}
    assert float(spatial_supervision_loss(zeros, tf.ones((B, T, S, S, 1)))) == 0.0
    assert float(spatial_supervision_loss(targets, tf.zeros((B, T, S, S)), balanced=False)) \
        == 0.0


def test_spatial_loss_prefers_the_box_and_ignores_unannotated_frames():
    targets = _targets()
    mask = targets["box_mask"].numpy()
    on_box = spatial_supervision_loss(targets, _ms(np.clip(mask, 0.01, 0.99)))
    inverted = spatial_supervision_loss(targets, _ms(np.clip(1 - mask, 0.01, 0.99)))
    flat = spatial_supervision_loss(targets, _ms(np.full(mask.shape, 0.5)))
    assert float(on_box) < float(flat) < float(inverted)
    # Known answer: Ms = 0.5 everywhere gives BCE log 2 on every cell, balanced or not.
    np.testing.assert_allclose(float(flat), np.log(2.0), rtol=1e-5)
    np.testing.assert_allclose(float(spatial_supervision_loss(
        targets, _ms(np.full(mask.shape, 0.5)), balanced=False)), np.log(2.0), rtol=1e-5)
    # Known answer, balanced: Ms = 0.9 everywhere → ½(-log 0.9) + ½(-log 0.1).
    np.testing.assert_allclose(
        float(spatial_supervision_loss(targets, _ms(np.full(mask.shape, 0.9)))),
        0.5 * (-np.log(0.9) - np.log(0.1)), rtol=1e-5)
    # Changing Ms on frames nobody annotated changes nothing.
    part = dict(targets)
    frames = np.ones((B, T), np.float32)
    frames[0, 1] = 0
    part["box_frames"] = tf.constant(frames)
    part["box_mask"] = targets["box_mask"] * frames[..., None, None]
    ms = np.full(mask.shape, 0.3, np.float32)
    other = ms.copy()
    other[0, 1] = 0.99
    np.testing.assert_array_equal(spatial_supervision_loss(part, _ms(ms)).numpy(),
                                  spatial_supervision_loss(part, _ms(other)).numpy())


def test_annotated_frame_without_a_box_pushes_the_map_down():
    targets = {"box_mask": tf.zeros((1, 1, S, S)), "box_frames": tf.ones((1, 1))}
    low = spatial_supervision_loss(targets, tf.fill((1, 1, S, S, 1), 0.1))
    high = spatial_supervision_loss(targets, tf.fill((1, 1, S, S, 1), 0.9))
    np.testing.assert_allclose(float(low), -0.5 * np.log(0.9), rtol=1e-5)
    assert float(low) < float(high)


def test_temporal_loss_known_answer_and_unknown_clips():
    targets = _targets()
    mt = np.tile(np.array([0.2, 0.7, 0.9], np.float32), (B, 1))
    expected = np.mean([-np.log(0.8), -np.log(0.7), -np.log(0.9)])
    np.testing.assert_allclose(float(temporal_supervision_loss(targets, tf.constant(mt))),
                               expected, rtol=1e-5)
    # Clip 1 unknown: its Mt does not matter, the mean is over clip 0's frames only.
    targets["active_known"] = tf.constant([1.0, 0.0])
    other = mt.copy()
    other[1] = 0.01
    np.testing.assert_allclose(float(temporal_supervision_loss(targets, tf.constant(other))),
                               expected, rtol=1e-5)


def test_keras_losses_serialise_and_accept_mixed_precision():
    targets = _targets()
    ms = tf.cast(_ms(np.full((B, T, S, S), 0.25)), tf.float16)
    loss = SpatialSupervisionLoss(balanced=False)
    value = loss(targets, ms)
    assert value.dtype == tf.float32 and value.shape == ()
    np.testing.assert_allclose(float(value), float(spatial_supervision_loss(
        targets, ms, balanced=False)), rtol=1e-6)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, SpatialSupervisionLoss) and again.balanced is False
    temporal = keras.losses.deserialize(keras.losses.serialize(TemporalSupervisionLoss()))
    mt = tf.fill((B, T), 0.5)
    np.testing.assert_allclose(float(temporal(targets, mt)), np.log(2.0), rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_losses_compile_in_a_graph(jit):
    targets = _targets()

    @tf.function(jit_compile=jit)
    def both(ms, mt):
        return spatial_supervision_loss(targets, ms) + temporal_supervision_loss(targets, mt)

    value = both(tf.fill((B, T, S, S, 1), 0.5), tf.fill((B, T), 0.5))
    np.testing.assert_allclose(float(value), 2 * np.log(2.0), rtol=1e-5)
