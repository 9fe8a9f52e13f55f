"""ImageNet inflation: identical frames through the 3D net give the 2D net's features."""

import keras
import numpy as np
import pytest

import stabn_tf
from stabn_tf.models.inflate import inflate_resnet50, keras_resnet50_name

FRAMES, SIZE = 20, 64
# res4 (6 blocks) and res5 (3 blocks) each have one 3×1×1 conv per block: with zero
# temporal padding, frames within 9 of either end also see the padding.
REACH = 9
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def resnet2d():
    """A randomly initialised 2D ResNet50 with non-trivial biases and BN statistics."""
    net = keras.applications.ResNet50(weights=None, include_top=False,
                                      input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
        elif isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([rng.uniform(0.2, 0.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, gamma.shape), rng.uniform(0.5, 2.0, gamma.shape)])
    return net


def _baseline(**kwargs):
    return stabn_tf.build_baseline(num_classes=10, num_frames=FRAMES, image_size=SIZE, depth=50,
                                   **kwargs)


def _features(model, layer_name, clip):
    return keras.Model(model.input, model.get_layer(layer_name).output)(clip, training=False)


def test_identical_frames_give_the_2d_features(resnet2d):
    model = _baseline(stride_in_1x1=True)
    copied = inflate_resnet50(model, resnet2d, fold_input_normalization=False)
    # stem, 16 blocks × 3 convs, 4 shortcuts; each a conv and a BN
    assert len(copied) == 2 * (1 + 3 * 16 + 4)
    frame = np.random.default_rng(1).normal(size=(1, SIZE, SIZE, 3)).astype("float32")
    clip = np.repeat(frame[:, None], FRAMES, axis=1)

    expected = np.asarray(resnet2d(frame, training=False))[0]
    got = np.asarray(_features(model, "res5_block3_out", clip))[0]
    scale = np.abs(expected).max()
    assert scale > 0
    for t in range(REACH, FRAMES - REACH):
        np.testing.assert_allclose(got[t], expected, atol=1e-5 * scale, rtol=1e-4)
    # The ends see the zero temporal padding, which is why they are not compared.
    assert np.abs(got[0] - expected).max() > 1e-3 * scale


def test_default_layout_takes_the_same_weights_with_the_stride_in_the_3x3(resnet2d):
    model = _baseline()
    inflate_resnet50(model, resnet2d, fold_input_normalization=False)
    np.testing.assert_allclose(model.get_layer("res4_block1_conv_a").kernel.numpy(),
                               np.repeat(resnet2d.get_layer("conv4_block1_1_conv").kernel.numpy()[None],
                                         3, axis=0) / 3, rtol=1e-6)
    assert model.get_layer("res4_block1_conv_b").strides == (2, 2)
    assert resnet2d.get_layer("conv4_block1_1_conv").strides == (2, 2)


def test_folded_input_normalization_matches_caffe_preprocessing(resnet2d):
    model = _baseline(stride_in_1x1=True)
    inflate_resnet50(model, resnet2d, mean=MEAN, std=STD)
    rgb = np.random.default_rng(2).uniform(size=(1, SIZE, SIZE, 3)).astype("float32")
    ours = (rgb - np.array(MEAN, "float32")) / np.array(STD, "float32")
    caffe = keras.applications.resnet50.preprocess_input(rgb * 255.0)
    expected = keras.Model(resnet2d.input, resnet2d.get_layer("conv1_bn").output)(caffe)
    got = _features(model, "stem_bn_a", np.repeat(ours[:, None], FRAMES, axis=1))[0, 0]
    # Interior pixels: the zero padding of the 7×7 stem means "0" in each input space.
    np.testing.assert_allclose(np.asarray(got)[2:-2, 2:-2], np.asarray(expected)[0, 2:-2, 2:-2],
                               atol=1e-3, rtol=1e-4)


def test_attention_branch_copy_is_not_inflated_and_wrong_depths_are_refused(resnet2d):
    assert keras_resnet50_name("att_res5_block1_conv_a") is None
    assert keras_resnet50_name("res3_block2_bn_b") == "conv3_block2_2_bn"
    assert keras_resnet50_name("stem_conv_a") == "conv1_conv"
    with pytest.raises(ValueError, match="width_multiplier"):
        inflate_resnet50(_baseline(width_multiplier=0.5), resnet2d)
