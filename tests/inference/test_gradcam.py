"""3D Grad-CAM: the analytic answer on a linear model, layer choice, real tiny models."""

import keras
import numpy as np
import pytest

import stabn_tf
from stabn_tf.inference.gradcam import GradCAM, grad_cam, resolve_layer

TINY = dict(num_classes=5)  # overrides of the stabn_tiny preset


LINEAR_LAYER = "res5_block1_out"


def _linear_model(weights):
    """clips → ReLU (named like a stage output) → GAP → dense: Grad-CAM is known exactly.
    A plain Keras model has no depth, so the layer is always named."""
    clips = keras.Input((3, 4, 4, 2))
    acts = keras.layers.ReLU(name=LINEAR_LAYER)(clips)
    pooled = keras.layers.GlobalAveragePooling3D()(acts)
    dense = keras.layers.Dense(weights.shape[1], name="perception", use_bias=False)
    model = keras.Model(clips, {"perception": dense(pooled)})
    dense.set_weights([weights])
    return model


def test_gradcam_equals_the_closed_form_on_a_linear_head():
    rng = np.random.default_rng(0)
    weights = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)  # [C=2, K=2]
    model = _linear_model(weights)
    clips = rng.uniform(0, 1, size=(2, 3, 4, 4, 2)).astype(np.float32)
    clips[0, 1, 2, 3] = [5.0, 0.0]  # a strong channel-0 spot in frame 1 of clip 0
    result = grad_cam(model, clips, class_indices=[0, 1], layer=LINEAR_LAYER)
    # d logit_k / dA = W[c, k] / (T·h·w) everywhere, so α_c ∝ W[c, k].
    for b, k in enumerate([0, 1]):
        expected = np.maximum(clips[b] @ weights[:, k], 0.0)
        expected /= expected.max()
        np.testing.assert_allclose(result.maps[b], expected, rtol=1e-5, atol=1e-6)
        frames = expected.mean(axis=(1, 2))
        np.testing.assert_allclose(result.frame_scores[b], frames / frames.max(), rtol=1e-5)
    assert np.unravel_index(result.maps[0].argmax(), result.maps[0].shape) == (1, 2, 3)
    assert result.frame_scores[0].argmax() == 1
    np.testing.assert_array_equal(result.class_indices, [0, 1])


def test_gradcam_explains_the_predicted_class_by_default():
    weights = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)
    model = _linear_model(weights)
    clips = np.random.default_rng(1).uniform(size=(3, 3, 4, 4, 2)).astype(np.float32)
    predicted = model.predict(clips, verbose=0)["perception"].argmax(-1)
    result = grad_cam(model, clips, layer=LINEAR_LAYER, batch_size=2)
    np.testing.assert_array_equal(result.class_indices, predicted)


def test_layer_choice_prefers_the_prediction_path():
    stabn = stabn_tf.STABN.from_preset("stabn_tiny", **TINY)
    baseline = stabn_tf.ResNet3D.from_preset("stabn_tiny", **TINY)
    assert resolve_layer(stabn, None) == "res5_block2_out"  # not att_res5_block2_out
    assert resolve_layer(baseline, None) == "res5_block2_out"
    assert resolve_layer(stabn, "res5") == "res5_block2_out"
    assert resolve_layer(stabn, "res4") == "res4_block2_out"
    assert resolve_layer(stabn, "att_res5_block2_out") == "att_res5_block2_out"
    with pytest.raises(ValueError, match="res9"):
        resolve_layer(stabn, "res9")
    with pytest.raises(ValueError):
        resolve_layer(stabn, "no_such_layer")


@pytest.mark.slow
@pytest.mark.parametrize("model_class", ["STABN", "ResNet3D"])
def test_gradcam_on_tiny_models(model_class):
    model = getattr(stabn_tf, model_class).from_preset("stabn_tiny", **TINY)
    clips = np.random.default_rng(2).normal(size=(3, 4, 32, 32, 3)).astype(np.float32)
    cam = GradCAM(model)
    result = cam(clips, class_indices=[0, 1, 2], batch_size=2)
    assert result.maps.shape == (3, 4, 1, 1)  # res5 at 32 px input: 1×1 per frame
    assert result.frame_scores.shape == (3, 4)
    assert np.isfinite(result.maps).all() and result.maps.min() >= 0 and result.maps.max() <= 1
    res4 = GradCAM(model, "res4")(clips, batch_size=3)
    assert res4.maps.shape == (3, 4, 2, 2) and res4.layer == "res4_block2_out"
