"""Conv3DAs2D / FrameMaxPool2D compute what Conv3D / MaxPool3D compute, in both
implementations (2D ops over frames; one 5D op)."""

import keras
import numpy as np
import pytest
from keras import ops

from stabn_tf.layers import Conv3DAs2D, FrameMaxPool2D


def _reference_conv3d(x, kernel, strides, padding):
    """keras.layers.Conv3D with the reference's symmetric k//2 padding made explicit."""
    kt, kh, kw = kernel.shape[:3]
    pads = ((0, 0), (kt // 2,) * 2, (kh // 2,) * 2 if padding == "same" else (0, 0),
            (kw // 2,) * 2 if padding == "same" else (0, 0), (0, 0))
    conv = keras.layers.Conv3D(kernel.shape[-1], (kt, kh, kw), strides=(1, *strides),
                               padding="valid", use_bias=False)
    conv.build(x.shape)
    conv.kernel.assign(kernel)
    return np.asarray(conv(np.pad(x, pads)))


@pytest.mark.parametrize(
    "kernel_size,strides,padding",
    [
        ((1, 1, 1), (1, 1), "same"),
        ((1, 1, 1), (2, 2), "same"),
        ((1, 3, 3), (1, 1), "same"),
        ((1, 3, 3), (2, 2), "same"),  # strided: symmetric padding, not TF's asymmetric one
        ((1, 7, 7), (2, 2), "same"),
        ((1, 3, 3), (1, 1), "valid"),
        ((3, 1, 1), (1, 1), "same"),
        ((3, 1, 1), (2, 2), "same"),
        ((3, 3, 3), (1, 1), "same"),
        ((3, 3, 3), (2, 2), "same"),
        ((5, 3, 3), (1, 1), "same"),
    ],
)
@pytest.mark.parametrize("implementation", ["2d", "3d"])
def test_conv3d_as_2d_matches_conv3d(kernel_size, strides, padding, implementation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 10, 12, 3)).astype("float32")
    layer = Conv3DAs2D(4, kernel_size, strides=strides, padding=padding,
                       implementation=implementation)
    y = np.asarray(layer(x))
    expected = _reference_conv3d(x, layer.kernel.numpy(), strides, padding)
    assert y.shape == expected.shape == layer.compute_output_shape(x.shape)
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("implementation", ["2d", "3d"])
def test_conv3d_as_2d_bias_and_config_round_trip(implementation):
    layer = Conv3DAs2D(6, (3, 1, 1), strides=1, use_bias=True, name="c",
                       implementation=implementation)
    x = np.random.default_rng(1).normal(size=(1, 4, 3, 3, 2)).astype("float32")
    layer(x)
    layer.bias.assign(np.arange(6, dtype="float32"))
    clone = Conv3DAs2D.from_config(layer.get_config())
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), layer(x))
    assert clone.get_config() == layer.get_config()


def test_conv3d_as_2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        Conv3DAs2D(4, (2, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        Conv3DAs2D(4, 3, padding="causal")
    with pytest.raises(ValueError, match="strides"):
        Conv3DAs2D(4, 3, strides=(1, 2, 2))
    with pytest.raises(ValueError, match="implementation"):
        Conv3DAs2D(4, 3, implementation="conv3d")
    with pytest.raises(ValueError, match="implementation"):
        FrameMaxPool2D(implementation="5d")


@pytest.mark.parametrize("implementation", ["2d", "3d"])
def test_frame_max_pool_matches_max_pool3d(implementation):
    x = np.random.default_rng(2).normal(size=(2, 3, 9, 8, 4)).astype("float32")
    y = FrameMaxPool2D(3, 2, padding=1, implementation=implementation)(x)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
    expected = keras.layers.MaxPooling3D((1, 3, 3), (1, 2, 2), padding="valid")(padded)
    np.testing.assert_allclose(y, expected)
    assert tuple(ops.shape(y)) == FrameMaxPool2D(3, 2, 1).compute_output_shape(x.shape)
    clone = FrameMaxPool2D.from_config(
        FrameMaxPool2D(3, 2, 1, name="p", implementation=implementation).get_config())
    assert (clone.pool_size, clone.strides, clone.pad, clone.implementation) == (
        3, 2, 1, implementation)
