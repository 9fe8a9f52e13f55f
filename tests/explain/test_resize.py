"""The one bilinear resize: score maps exactly as TensorFlow's half-pixel bilinear resize,
pictures exactly as PIL sizes them, and the two alike."""

import numpy as np
import tensorflow as tf
from PIL import Image

from stabn_tf.explain.resize import resize


def test_score_maps_match_bilinear_half_pixel_resize():
    rng = np.random.default_rng(0)
    maps = rng.uniform(size=(3, 4, 5))
    ours = resize(maps, (16, 20))
    assert ours.dtype == np.float64
    theirs = tf.image.resize(maps[..., None], (16, 20), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(resize(maps, (4, 5)), maps)  # same size: identity
    assert resize(maps[0], 8).shape == (8, 8)


def test_pictures_are_sized_as_pil_sizes_them_and_like_the_maps():
    rng = np.random.default_rng(1)
    smooth = resize(rng.uniform(0, 255, size=(2, 4, 5, 3)).transpose(0, 3, 1, 2), (12, 15))
    frames = np.round(smooth).astype(np.uint8).transpose(0, 2, 3, 1)  # [2, 12, 15, 3]
    for size in [(30, 40), (7, 9)]:  # up, and down (PIL anti-aliases)
        pictures = resize(frames, size)
        assert pictures.dtype == np.uint8 and pictures.shape == (2, *size, 3)
        for picture, frame in zip(pictures, frames):
            pil = Image.fromarray(frame).resize(size[::-1], Image.BILINEAR)
            np.testing.assert_array_equal(picture, np.asarray(pil))
    as_maps = resize(frames.transpose(0, 3, 1, 2).astype(np.float64), (30, 40))
    up = resize(frames, (30, 40)).transpose(0, 3, 1, 2).astype(float)
    assert np.abs(up - as_maps).max() <= 1.0
