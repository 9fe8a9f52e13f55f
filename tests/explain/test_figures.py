"""How a spatial map is drawn: the colour map, the fixed scale, cells as cells, the grid size."""

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from stabn_tf.explain import figures

GREY = 128


def _frames(count=1, size=32):
    return np.full((count, size, size, 3), GREY, np.uint8)


def _expected(value, colormap="viridis", alpha=figures.OVERLAY_ALPHA):
    colour = np.asarray(matplotlib.colormaps[colormap](value)[:3]) * 255
    return (1 - alpha) * GREY + alpha * colour


def _spatial_scale(fig):
    return next(ax for ax in fig.axes if ax.get_ylabel().startswith("spatial"))


def _scale_colours(fig):
    """The colour map the spatial colour scale is painted in."""
    return next(c for c in _spatial_scale(fig).collections if isinstance(c, QuadMesh)).cmap.name


def test_the_default_colour_map_is_perceptually_uniform():
    assert figures.SPATIAL_CMAP == "viridis"
    picture = figures.overlay_attention(_frames(), np.ones((1, 2, 2)))
    np.testing.assert_allclose(picture[0, 5, 5], _expected(1.0), atol=1)
    fig = figures.attention_figure(_frames(2), np.ones((2, 2, 2)), np.ones(2))
    assert _scale_colours(fig) == "viridis"


def test_jet_keeps_the_papers_look_and_other_names_are_refused():
    picture = figures.overlay_attention(_frames(), np.ones((1, 2, 2)), colormap="jet")
    np.testing.assert_allclose(picture[0, 5, 5], _expected(1.0, "jet"), atol=1)
    fig = figures.attention_figure(_frames(2), np.ones((2, 2, 2)), np.ones(2),
                                   colormap="jet")
    assert _scale_colours(fig) == "jet"
    with pytest.raises(ValueError, match="colour map 'rainbow': choose from"):
        figures.overlay_attention(_frames(), np.ones((1, 2, 2)), colormap="rainbow")


def test_cells_are_drawn_as_cells_on_a_fixed_scale():
    """A 2×2 map on a 32×32 frame is four uniform 16×16 blocks, each the colour of its
    own value on the 0..1 scale (not stretched to the map's range)."""
    spatial = np.array([[[0.0, 0.25], [0.5, 1.0]]])
    picture = figures.overlay_attention(_frames(), spatial)[0].astype(float)
    for (i, j), value in np.ndenumerate(spatial[0]):
        block = picture[16 * i:16 * (i + 1), 16 * j:16 * (j + 1)]
        np.testing.assert_allclose(block, np.broadcast_to(_expected(value), block.shape),
                                   atol=1)
    # A map with a range of 0.2..0.3 stays near the middle of the scale.
    narrow = figures.overlay_attention(_frames(), 0.2 + 0.1 * spatial)[0].astype(float)
    assert np.abs(narrow - _expected(0.25)).max() < np.abs(picture - _expected(0.25)).max() / 3


def test_a_flat_map_and_a_peaked_map_look_different():
    flat = np.full((2, 4, 4), 0.5)
    peaked = np.zeros((2, 4, 4))
    peaked[:, 1, 2] = 1.0
    drawn = {name: figures.overlay_attention(_frames(2), maps).astype(float)
             for name, maps in (("flat", flat), ("peaked", peaked))}
    spread = {name: np.ptp(pixels.reshape(2, -1, 3), axis=1).max(axis=-1)
              for name, pixels in drawn.items()}
    assert spread["flat"].max() < 1  # one colour over a uniform frame
    assert spread["peaked"].min() > 60  # the peak cell stands out
    # The figure's frame titles give each map's range: a flat map says so in numbers.
    titles = {name: [ax.get_title() for ax in figures.attention_figure(
        _frames(2), maps, np.ones(2)).axes if ax.get_images()]
        for name, maps in (("flat", flat), ("peaked", peaked))}
    assert titles == {"flat": ["frame 0 · 0.50–0.50", "frame 1 · 0.50–0.50"],
                      "peaked": ["frame 0 · 0.00–1.00", "frame 1 · 0.00–1.00"]}


def test_the_grid_size_is_stated():
    assert figures.grid_size(np.zeros((8, 4, 4, 1))) == "4×4"
    assert figures.grid_size(np.zeros((8, 2, 3))) == "2×3"
    fig = figures.attention_figure(_frames(2), np.zeros((2, 4, 4, 1)), np.ones(2))
    assert _spatial_scale(fig).get_ylabel() == ("spatial attention Ms: 4×4\n"
                                                "0 = not attended, 1 = attended")


@pytest.mark.parametrize("colormap", figures.SPATIAL_COLORMAPS)
def test_the_gif_scale_strip_fits_and_is_readable(colormap):
    """The strip under a 224-pixel GIF frame: the map's colours from 0 to 1, its three
    labels inside the width, in ink that stands out from the colour under it."""
    pictures = figures.animation_frames(_frames(2, 64), np.zeros((2, 4, 4)), np.ones(2),
                                        display_size=224, colormap=colormap)
    picture = np.asarray(pictures[0]).astype(float)
    bar = figures._bar_height(224)
    strip = picture[224 + bar:224 + 2 * bar]
    ramp = np.asarray(matplotlib.colormaps[colormap](np.linspace(0, 1, 224))[:, :3]) * 255
    background = np.all(np.abs(strip - ramp[None]) < 2, axis=-1)
    assert background[:, 0].all() and background[:, -1].all()  # nothing cut at the edges
    ink = ~background
    assert ink.sum() > 200  # the labels are there
    # Ink contrasts with the scale under it (black on the light end, white on the dark).
    luminance = ramp @ np.array([0.2126, 0.7152, 0.0722]) / 255
    ys, xs = np.nonzero(ink)
    contrast = np.abs(strip[ys, xs] @ np.array([0.2126, 0.7152, 0.0722]) / 255 - luminance[xs])
    for end in (xs < 56, xs > 168):  # each end's label, the strokes' cores (not their edges)
        assert np.percentile(contrast[end], 90) > 0.5


def test_colour_stops_for_html_match_the_pictures():
    stops = figures.colormap_stops("viridis", 3)
    assert len(stops) == 3 and all(s.startswith("#") and len(s) == 7 for s in stops)
    middle = np.asarray(matplotlib.colormaps["viridis"](0.5)[:3]) * 255
    np.testing.assert_allclose([int(stops[1][k:k + 2], 16) for k in (1, 3, 5)], middle,
                               atol=1)


def test_a_long_caption_is_shown_whole():
    caption = "Pushing something so that it falls off the table (1.00)"
    picture, = figures.animation_frames(_frames(1, 64), np.zeros((1, 4, 4)), np.ones(1),
                                        display_size=224, caption=caption)
    band = np.asarray(picture)[224 + 2 * figures._bar_height(224):]
    ink = (band < 128).any(axis=-1)
    assert ink.sum() > 100 and not ink[:, :2].any() and not ink[:, -2:].any()
