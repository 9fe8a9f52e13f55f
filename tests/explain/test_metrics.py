"""Explanation metrics on hand-made maps whose answers are known."""

import numpy as np
import pytest

from stabn_tf.explain import metrics as em

# A box covering the top-left quarter of the frame.
TOP_LEFT = np.array([0.0, 0.0, 0.5, 0.5])


def _peaked(h, w, y, x):
    m = np.zeros((h, w))
    m[y, x] = 1.0
    return m


def test_box_mask_uses_pixel_centres_and_tolerance():
    mask = em.box_mask(TOP_LEFT, 4)
    assert mask.sum() == 4 and mask[:2, :2].all()
    grown = em.box_mask(TOP_LEFT, 4, tolerance=0.25)  # reaches the next pixel centres
    assert grown.sum() == 9
    assert not em.box_mask(np.zeros(4), 4).any()  # the "not visible" box


def test_pointing_game_peak_inside_scores_one_outside_zero():
    maps = np.stack([_peaked(4, 4, 0, 1), _peaked(4, 4, 3, 3), _peaked(4, 4, 2, 2)])
    boxes = np.stack([TOP_LEFT] * 3)
    np.testing.assert_array_equal(em.pointing_game(maps, boxes, 32), [1.0, 0.0, 0.0])


def test_pointing_game_low_resolution_map_judged_on_frame_pixels():
    # A 2×2 map peaked top-left: its upsampled peak is near (0.25, 0.25), inside the box.
    m = _peaked(2, 2, 0, 0)[None]
    assert em.pointing_game(m, TOP_LEFT[None], 64)[0] == 1.0
    assert em.pointing_game(m, np.array([[0.6, 0.6, 1.0, 1.0]]), 64)[0] == 0.0


def test_pointing_game_tolerance_and_ties():
    m = _peaked(8, 8, 4, 4)[None]  # peak centre at 0.5625
    box = np.array([[0.0, 0.0, 0.5, 0.5]])
    assert em.pointing_game(m, box, 8)[0] == 0.0
    assert em.pointing_game(m, box, 8, tolerance=0.07)[0] == 1.0
    # A flat map ties everywhere: the score is the box's share of the frame, chance level.
    flat = np.full((1, 4, 4), 0.3)
    assert em.pointing_game(flat, TOP_LEFT[None], 16)[0] == pytest.approx(0.25)


def test_mass_in_box_known_shares():
    inside = _peaked(4, 4, 0, 0)[None]
    assert em.mass_in_box(inside, TOP_LEFT[None], 4)[0] == pytest.approx(1.0)
    outside = _peaked(4, 4, 3, 3)[None]
    assert em.mass_in_box(outside, TOP_LEFT[None], 4)[0] == pytest.approx(0.0)
    flat = np.full((1, 4, 4), 0.7)
    assert em.mass_in_box(flat, TOP_LEFT[None], 4)[0] == pytest.approx(0.25)
    # Normalisation removes a constant offset; without it the offset dilutes the share.
    offset = 0.5 + 0.5 * inside
    assert em.mass_in_box(offset, TOP_LEFT[None], 4)[0] == pytest.approx(1.0)
    raw = em.mass_in_box(offset, TOP_LEFT[None], 4, normalize=False)[0]
    assert raw == pytest.approx((1.0 + 3 * 0.5) / (1.0 + 15 * 0.5))


def test_auroc_perfect_inverted_chance_and_ties():
    labels = np.array([0, 0, 1, 1, 0, 1])
    assert em.auroc([0.1, 0.2, 0.8, 0.9, 0.3, 0.7], labels) == 1.0
    assert em.auroc([0.9, 0.8, 0.2, 0.1, 0.7, 0.3], labels) == 0.0
    assert em.auroc(np.full(6, 0.5), labels) == 0.5
    # One of the 9 positive-negative pairs inverted.
    assert em.auroc([0.1, 0.2, 0.8, 0.9, 0.75, 0.7], labels) == pytest.approx(8 / 9)
    assert np.isnan(em.auroc([0.1, 0.2], [1, 1]))


def test_auroc_is_the_share_of_correctly_ordered_pairs_with_many_ties():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 40))
        scores = rng.integers(0, 4, n) / 4 if trial % 2 else rng.random(n)  # ties, or few
        labels = rng.random(n) < 0.5
        positives, negatives = scores[labels], scores[~labels]
        if not len(positives) or not len(negatives):
            assert np.isnan(em.auroc(scores, labels))
            continue
        above = positives[:, None] - negatives[None, :]
        pairs = ((above > 0) + 0.5 * (above == 0)).mean()
        assert abs(em.auroc(scores, labels) - pairs) < 1e-12


def test_pearson_of_flattened_arrays():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 4, 5)), rng.random((3, 4, 5))
    assert em.pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], abs=1e-12)
    assert em.pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert em.pearson(a, -a) == pytest.approx(-1.0)
    assert np.isnan(em.pearson(np.ones(3), np.arange(3)))


def test_temporal_auroc_per_clip_and_pooled():
    active = np.array([[0, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    # Each clip ranks its own frames perfectly, but clip 1's scale is lower overall.
    weights = np.array([[0.5, 0.9, 0.8, 0.4], [0.3, 0.35, 0.1, 0.2], [0.5, 0.5, 0.5, 0.5]])
    result = em.temporal_auroc(weights, active)
    assert result["per_clip"] == 1.0
    assert result["clips"] == 2  # the all-active clip has nothing to separate
    assert result["pooled"] < 1.0


def test_frame_deletion_masks_follow_importance_and_random_order():
    masks = em.frame_deletion_masks(np.array([0.1, 0.9, 0.5, 0.3]))
    assert masks.shape == (5, 4)
    assert not masks[0].any() and masks[-1].all()
    np.testing.assert_array_equal(masks[1], [False, True, False, False])
    np.testing.assert_array_equal(masks[2], [False, True, True, False])
    random = em.frame_deletion_masks(np.zeros(4), rng=np.random.default_rng(0))
    assert (random.sum(axis=1) == np.arange(5)).all()
    assert (np.diff(random.astype(int), axis=0) >= 0).all()  # removed frames stay removed


def test_region_deletion_masks_per_frame_order():
    scores = np.array([[0.1, 0.9, 0.5, 0.2], [0.8, 0.1, 0.2, 0.3]])  # 2 frames, 2×2 grid
    masks = em.region_deletion_masks(scores)
    assert masks.shape == (5, 2, 4)
    np.testing.assert_array_equal(masks[1], [[False, True, False, False],
                                             [True, False, False, False]])
    assert masks[4].all() and not masks[0].any()


def test_grid_scores_average_cells():
    maps = np.zeros((1, 4, 4))
    maps[0, :2, 2:] = 1.0  # top-right quarter
    scores = em.grid_scores(maps, 2, 4)
    np.testing.assert_allclose(scores, [[0.0, 1.0, 0.0, 0.0]])


def test_apply_masks_fill_removed_frames_and_cells():
    clip = np.ones((3, 4, 4, 3), np.float32)
    out = em.apply_frame_mask(clip, np.array([[False, True, False], [True, True, True]]))
    assert out.shape == (2, 3, 4, 4, 3)
    assert out[0, 1].max() == 0.0 and out[0, 0].min() == 1.0 and out[1].max() == 0.0
    cells = np.zeros((3, 4), bool)
    cells[:, 3] = True  # bottom-right cell of a 2×2 grid in every frame
    out = em.apply_region_mask(clip, cells, 2)
    assert out.shape == clip.shape
    assert out[:, 2:, 2:].max() == 0.0 and out[:, :2].min() == 1.0


def test_deletion_auc():
    assert em.deletion_auc([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert em.deletion_auc([1.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert em.deletion_auc([1.0, 0.5, 0.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        em.deletion_auc([1.0])


def test_centre_prior_peaks_at_the_centre_and_scores_centred_boxes():
    prior = em.centre_prior((4, 4))
    assert prior.shape == (4, 4) and np.allclose(prior, prior.T) and np.allclose(prior, prior[::-1])
    np.testing.assert_allclose(prior[1:3, 1:3], prior.max())
    centred = np.array([[0.3, 0.3, 0.7, 0.7]])
    corner = np.array([[0.0, 0.0, 0.25, 0.25]])
    assert em.pointing_game(prior[None], centred, 64)[0] == 1.0
    assert em.pointing_game(prior[None], corner, 64)[0] == 0.0


def test_a_box_thinner_than_a_pixel_is_outlined_not_refused():
    """A box the crop cut to a sliver still draws (as a one-pixel line), not a PIL error."""
    from stabn_tf.explain.figures import overlay_pictures

    frames = np.zeros((1, 32, 40, 3), np.uint8)
    picture, = overlay_pictures(frames, np.zeros((1, 2, 2)), display_size=32,
                                boxes=np.array([[0.2, 0.5, 0.6, 0.5001]]))
    assert picture.size == (40, 32) and np.asarray(picture).max() == 255
