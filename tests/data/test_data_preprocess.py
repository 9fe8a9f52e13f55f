"""Normalisation constants, crops, box mapping and the fused colour jitter."""

import numpy as np
import pytest
import tensorflow as tf

from stabn_tf.data import preprocess as pp


def test_normalize_uint8_and_unit_float_agree_numpy_and_tf():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(2, 5, 6, 3), dtype=np.uint8)
    a = pp.normalize(img)
    b = pp.normalize(img.astype(np.float32) / 255.0)
    c = pp.normalize(tf.constant(img)).numpy()
    d = pp.normalize(tf.constant(img, tf.float32) / 255.0).numpy()
    expected = (img / 255.0 - np.array(pp.IMAGENET_MEAN)) / np.array(pp.IMAGENET_STD)
    for x in (a, b, c, d):
        assert x.dtype == np.float32
        np.testing.assert_allclose(x, expected, atol=1e-5)


def test_denormalize_inverts_normalize():
    img = np.random.default_rng(1).integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pp.denormalize(pp.normalize(img)), img)
    np.testing.assert_array_equal(pp.denormalize(tf.constant(pp.normalize(img))), img)


def test_color_normalize_without_jitter_is_normalize():
    x = tf.random.uniform([4, 8, 8, 3], 0, 255, seed=1)
    np.testing.assert_allclose(pp.color_normalize(x).numpy(),
                               pp.normalize(x / 255.0).numpy(), atol=1e-5)


def test_eval_crop_window_is_centred_224_of_256():
    y, x, h, w = pp.eval_crop_window(240, 427).numpy()
    assert h == w == 210  # 240 * 224 / 256
    assert (y, x) == (15, 108)
    assert pp.eval_short_side(224) == 256 and pp.eval_short_side(112) == 128


def test_random_crop_window_stays_inside_and_respects_area():
    for k in range(50):
        y, x, h, w = pp.random_crop_window(240, 427, [k, 0], (0.3, 1.0)).numpy()
        assert y >= 0 and y + h <= 240 and x >= 0 and x + w <= 427
        assert 0.25 * 240 * 240 <= h * w <= 1.05 * 240 * 240
    same = [tuple(pp.random_crop_window(100, 100, [5, 5]).numpy()) for _ in range(2)]
    assert same[0] == same[1]


def test_crop_boxes_maps_into_the_window_and_zeroes_invisible():
    # A 100x200 frame, crop window y=10, x=50, 50x100.
    boxes = tf.constant([[0.2, 0.5, 0.4, 0.75],     # inside: y 20..40, x 100..150
                         [0.0, 0.0, 0.05, 0.1],     # outside the crop
                         [0.0, 0.0, 0.0, 0.0]])     # "not visible"
    out = pp.crop_boxes(boxes, [10, 50, 50, 100], 100, 200).numpy()
    np.testing.assert_allclose(out[0], [0.2, 0.5, 0.6, 1.0], atol=1e-6)
    np.testing.assert_array_equal(out[1:], 0)


def test_flip_boxes():
    out = pp.flip_boxes(tf.constant([[0.1, 0.2, 0.3, 0.5], [0, 0, 0, 0]], tf.float32))
    np.testing.assert_allclose(out.numpy(), [[0.1, 0.5, 0.3, 0.8], [0, 0, 0, 0]], atol=1e-6)


def test_color_jitter_is_identity_at_zero_strength_and_keeps_greys():
    matrix, offset = pp.color_jitter_transform(0.0, [1, 2], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(matrix.numpy(), np.eye(3), atol=1e-5)
    np.testing.assert_allclose(offset.numpy(), 0, atol=1e-6)
    # Saturation and hue alone never colour a grey pixel (they act on chroma only).
    for k in range(5):
        m, o = pp.color_jitter_transform(0.4, [k, 9], [0.3, 0.3, 0.3])
        grey = np.array([0.6, 0.6, 0.6], np.float32) @ m.numpy() + o.numpy()
        assert np.ptp(grey) < 1e-3


def test_color_jitter_is_one_transform_for_the_whole_clip():
    rng = np.random.default_rng(2)
    frame = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.float32)
    clip = tf.constant(np.stack([frame] * 4))
    out = pp.color_normalize(clip, jitter=0.4, seed=[3, 3]).numpy()
    for t in range(1, 4):
        np.testing.assert_allclose(out[t], out[0], atol=1e-5)
    assert not np.allclose(out[0], pp.color_normalize(clip).numpy()[0], atol=1e-3)
    lo = (0 - np.array(pp.IMAGENET_MEAN)) / np.array(pp.IMAGENET_STD)
    hi = (1 - np.array(pp.IMAGENET_MEAN)) / np.array(pp.IMAGENET_STD)
    assert np.all(out >= lo - 1e-4) and np.all(out <= hi + 1e-4)


def test_color_jitter_needs_a_seed():
    with pytest.raises(ValueError):
        pp.color_normalize(tf.zeros([1, 2, 2, 3]), jitter=0.2)
