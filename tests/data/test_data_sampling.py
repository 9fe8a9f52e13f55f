"""Segment sampling: one frame per segment, deterministic eval, even repetition, offsets."""

import numpy as np
import pytest
import tensorflow as tf

from stabn_tf.data.sampling import segment_indices


def _segments(n, t):
    """[start, end) frame range of each of the t segments of an n-frame video."""
    edges = np.arange(t + 1) * n / t
    return np.floor(edges[:-1]).astype(int), np.maximum(np.ceil(edges[1:]).astype(int), 1)


@pytest.mark.parametrize("n,t", [(48, 32), (100, 8), (32, 32), (33, 32), (240, 16)])
def test_training_indices_are_one_per_segment_and_in_bounds(n, t):
    lo, hi = _segments(n, t)
    draws = []
    for k in range(20):
        idx = segment_indices(n, t, training=True, seed=[k, 1]).numpy()
        assert idx.shape == (1, t) and idx.dtype == np.int32
        idx = idx[0]
        assert np.all(idx >= 0) and np.all(idx < n)
        assert np.all((idx >= lo) & (idx < hi)), (idx, lo, hi)
        assert np.all(np.diff(idx) >= 0)
        draws.append(idx)
    if n >= 2 * t:  # segments longer than a frame: positions really are random
        assert len({tuple(d) for d in draws}) > 1


def test_training_draw_is_reproducible_from_its_seed():
    a = segment_indices(100, 8, training=True, seed=[3, 4]).numpy()
    b = segment_indices(100, 8, training=True, seed=[3, 4]).numpy()
    np.testing.assert_array_equal(a, b)


def test_eval_indices_are_the_segment_centres_and_deterministic():
    idx = segment_indices(64, 8, training=False).numpy()
    np.testing.assert_array_equal(idx[0], np.arange(8) * 8 + 4)
    np.testing.assert_array_equal(idx, segment_indices(64, 8, training=False).numpy())
    np.testing.assert_array_equal(segment_indices(32, 32, training=False).numpy()[0],
                                  np.arange(32))


@pytest.mark.parametrize("n", [2, 3, 5, 10, 17, 31])
@pytest.mark.parametrize("training", [False, True])
def test_short_videos_repeat_frames_evenly(n, training):
    t = 32
    idx = segment_indices(n, t, training=training, seed=[1, 2]).numpy()[0]
    counts = np.bincount(idx, minlength=n)
    assert np.all(idx < n) and np.all(np.diff(idx) >= 0)
    assert counts.max() < t  # never one frame T times
    # even repetition: each frame about t/n times (random draws may skip or add one)
    assert counts.max() <= int(np.ceil(t / n)) + int(training)
    if not training:
        assert set(idx.tolist()) == set(range(n))  # every frame used
        assert counts.max() - counts.min() <= 1


def test_single_frame_video_is_all_zeros():
    np.testing.assert_array_equal(segment_indices(1, 4, training=False).numpy(), [[0] * 4])


def test_multi_clip_offsets_differ_and_interleave():
    idx = segment_indices(64, 8, training=False, num_clips=2).numpy()
    assert idx.shape == (2, 8)
    assert not np.array_equal(idx[0], idx[1])
    np.testing.assert_array_equal(idx[0], np.arange(8) * 8 + 2)  # 1/4 into each segment
    np.testing.assert_array_equal(idx[1], np.arange(8) * 8 + 6)  # 3/4 into each segment
    three = segment_indices(90, 10, training=False, num_clips=3).numpy()
    assert len({tuple(r) for r in three}) == 3


def test_works_inside_tf_function_with_tensor_length():
    fn = tf.function(lambda n: segment_indices(n, 4, training=False))
    np.testing.assert_array_equal(fn(tf.constant(8)).numpy(), [[1, 3, 5, 7]])


def test_rejects_empty_videos_and_bad_arguments():
    with pytest.raises(tf.errors.InvalidArgumentError):
        segment_indices(0, 4, training=False)
    with pytest.raises(ValueError):
        segment_indices(10, 0, training=False)
