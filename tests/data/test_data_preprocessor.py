"""The preprocessor holds the whole clip: T, S, the crop ratio, mean and std, saved in its
config; configs from before the last three load with today's defaults."""

import numpy as np
import pytest

from stabn_tf.data import preprocess
from stabn_tf.data.preprocessor import ClipPreprocessor


def test_the_defaults_are_the_module_constants_and_old_configs_get_them():
    default = ClipPreprocessor(4, 32)
    config = default.get_config()
    assert (config["crop_ratio"], config["mean"], config["std"]) == (
        preprocess.EVAL_CROP_RATIO, list(preprocess.IMAGENET_MEAN),
        list(preprocess.IMAGENET_STD))
    old = {k: v for k, v in config.items() if k not in ("crop_ratio", "mean", "std")}
    assert ClipPreprocessor.from_config(old).get_config() == config
    assert default.short_side == preprocess.eval_short_side(32) == 37


def test_crop_ratio_mean_and_std_are_used_and_saved():
    own = ClipPreprocessor(2, 8, crop_ratio=0.5, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    assert ClipPreprocessor.from_config(own.get_config()).get_config() == own.get_config()
    assert [int(v) for v in own.crop_window(40, 60)] == [10, 20, 20, 20]
    assert own.short_side == 16
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[:, 10:30, 20:40] = 255  # exactly the crop: white
    clips = np.asarray(own(frames))
    np.testing.assert_allclose(clips, np.broadcast_to([2.0, 1.0, 0.5], clips.shape), atol=1e-5)
    np.testing.assert_array_equal(own.denormalize(clips), np.full(clips.shape, 255, np.uint8))


@pytest.mark.parametrize("bad, message", [
    (dict(crop_ratio=0.0), "`crop_ratio` must be in (0, 1]"),
    (dict(mean=(0.5, 0.5)), "`mean` must be 3 numbers"),
    (dict(std=(0.2, 0.0, 0.2)), "`std` must be 3 numbers (RGB, 0..1 scale), each > 0"),
])
def test_bad_settings_are_one_line(bad, message):
    with pytest.raises(ValueError) as error:
        ClipPreprocessor(4, 32, **bad)
    assert message in str(error.value) and "\n" not in str(error.value)
