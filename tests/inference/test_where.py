"""Every "where" is in the source frame's coordinates, through the preprocessor's centre
crop: portrait, landscape and extreme aspect ratios (pure functions, no model)."""

import numpy as np
import pytest
from PIL import Image

from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.inference import load_clip
from stabn_tf.inference.prediction import Prediction, to_frame

# (height, width) → the crop (y, x, h, w) in source pixels: the centre 224/256 of the short
# side, worked out by hand.
FRAMES = {
    "landscape": ((480, 640), (30, 110, 420, 420)),
    "portrait": ((640, 480), (110, 30, 420, 420)),
    "square": ((256, 256), (16, 16, 224, 224)),
    "tall strip": ((1000, 10), (495, 0, 9, 9)),
    "wide strip": ((10, 10000), (0, 4995, 9, 9)),
}


@pytest.mark.parametrize("name", FRAMES)
def test_crop_in_frame_is_the_preprocessor_crop(name):
    (height, width), (y, x, h, w) = FRAMES[name]
    crop = ClipPreprocessor(num_frames=2, image_size=8).crop_in_frame(height, width)
    np.testing.assert_allclose(crop, (y / height, x / width, h / height, w / width))


def _prediction(frame_size, map_size=(2, 2), cell=(0, 1)):
    spatial = np.zeros((1, 2, *map_size), np.float32)
    spatial[0, :, cell[0], cell[1]] = 1.0  # both frames peak at `cell`
    crop = None if frame_size is None else \
        ClipPreprocessor(num_frames=2, image_size=8).crop_in_frame(*frame_size)
    return Prediction(name="v", class_names=["a", "b"], probabilities=np.array([0.3, 0.7]),
                      per_clip=np.array([[0.3, 0.7]]), frame_indices=np.array([[0, 1]]),
                      spatial=spatial, temporal=np.array([[0.2, 0.9]]),
                      frame_size=frame_size, crop=crop)


@pytest.mark.parametrize("name", FRAMES)
def test_peaks_text_and_json_are_in_source_frame_fractions(name):
    (height, width), (y, x, h, w) = FRAMES[name]
    prediction = _prediction((height, width))
    # Peak cell (0, 1) of a 2×2 map: centre at (0.25, 0.75) of the crop.
    want = ((y + 0.25 * h) / height, (x + 0.75 * w) / width)
    for got in prediction.peaks(0):
        np.testing.assert_allclose(got, want, atol=1e-9)
    text = prediction.format_text()
    assert f"fractions of the {width}×{height} source frame" in text
    assert f"({want[0]:.2f},{want[1]:.2f})" in text
    out = prediction.to_json()
    np.testing.assert_allclose(out["where"], [[want, want]], atol=1e-4)
    assert out["frame_size"] == [height, width]
    np.testing.assert_allclose(out["spatial_attention_crop"],
                               (y / height, x / width, h / height, w / width), atol=1e-6)


def test_extreme_strip_lands_mid_frame_not_where_the_crop_says():
    # Before: (0.25, 0.75) "of the frame" for a 1000×10 (H×W) video whose crop is 9 rows
    # in the middle; the peak is really at mid-height.
    y, x = _prediction((1000, 10)).peaks(0)[0]
    assert abs(y - 0.497) < 0.001 and abs(x - 0.675) < 1e-9


def test_unknown_frame_says_model_view():
    prediction = _prediction(None)
    assert prediction.peaks(0)[0] == (0.25, 0.75)
    assert "fractions of the model's view" in prediction.format_text()
    assert "frame_size" not in prediction.to_json() and prediction.view_caption() is None


def test_to_frame_maps_the_crop_corners_onto_the_crop():
    crop = (0.1, 0.2, 0.5, 0.25)
    assert to_frame(0.0, 0.0, crop) == (0.1, 0.2)
    assert to_frame(1.0, 1.0, crop) == pytest.approx((0.6, 0.45))


@pytest.mark.parametrize("size", [(12, 40), (40, 12)])
def test_a_loaded_clip_knows_its_source_frame(tmp_path, size):
    for i in range(3):
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(tmp_path / f"{i:05d}.png")
    clip = load_clip(tmp_path, ClipPreprocessor(num_frames=2, image_size=8))
    assert clip.frame_size == size
