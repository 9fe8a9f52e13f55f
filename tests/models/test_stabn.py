"""Builders: full-size shapes and sizes, save/load, gradients, inversion, fit, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import stabn_tf
from stabn_tf.models.complexity import count_flops, count_trainable_params

TINY = dict(num_classes=5, image_size=64)  # overrides of the stabn_tiny preset


def _clip(batch=2, frames=4, size=64, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, frames, size, size, 3)).astype("float32")


def test_full_size_stabn_matches_the_reference_size_and_shapes():
    model = stabn_tf.STABN.from_preset("stabn_r50_ssv2")
    # Exactly the reference implementation's count at K=174, T=32, 224 px.
    assert count_trainable_params(model) == 55_665_928
    assert model.get_layer("attention_fusion").input[0].shape == (None, 32, 14, 14, 1024)
    outputs = stabn_tf.explanation_model(model).output
    assert outputs["spatial_attention"].shape == (None, 32, 14, 14, 1)
    assert outputs["temporal_attention"].shape == (None, 32)
    assert outputs["perception"].shape == outputs["attention"].shape == (None, 174)
    assert model.get_layer("res5_block3_out").output.shape == (None, 32, 7, 7, 2048)


def test_full_size_baseline_is_slowonly_r50():
    model = stabn_tf.ResNet3D.from_preset("baseline_r50_ssv2")
    assert count_trainable_params(model) == 31_991_022
    assert model.output["perception"].shape == (None, 174)


def test_flops_count_matches_a_hand_count():
    # Stem 1×7×7 conv, 2 frames of 32×32 → 16×16, 3 → 4 channels: 2·(2·16·16·4)·(7·7·3).
    inputs = keras.Input((2, 32, 32, 3))
    x = stabn_tf.layers.Conv3DAs2D(4, (1, 7, 7), strides=2)(inputs)
    x = stabn_tf.layers.Conv3DAs2D(6, (3, 1, 1))(x)  # + 2·(2·16·16·6)·(3·4)
    x = keras.layers.Dense(5)(keras.layers.Flatten()(x))  # + 2·(2·16·16·6)·5
    model = keras.Model(inputs, x)
    n = 2 * 16 * 16
    assert count_flops(model) == 2 * n * 4 * 147 + 2 * n * 6 * 12 + 2 * n * 6 * 5


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    model = stabn_tf.STABN.from_preset("stabn_tiny", **TINY, inversion="spatial")
    x = _clip()
    expected = model.predict(x, verbose=0)
    path = tmp_path / "stabn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    got = loaded.predict(x, verbose=0)
    for key in ("perception", "attention"):
        np.testing.assert_array_equal(got[key], expected[key])
    assert loaded.get_layer("attention_fusion").inversion == "spatial"
    maps = stabn_tf.explanation_model(loaded)(x)
    assert maps["temporal_attention"].shape == (2, 4)


def test_gradients_of_the_combined_loss_reach_every_trainable_weight():
    model = stabn_tf.STABN.from_preset("stabn_tiny", **TINY, dropout=0.0)
    x, y = _clip(), np.array([1, 3])
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = ce(y, out["perception"]) + ce(y, out["attention"])
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads)
               if g is None or not np.any(np.asarray(g))]
    assert not missing, missing
    branch_weights = {w.path.split("/")[0] for w in model.trainable_weights}
    for layer in ("att_res5_block1_conv_a", "spatial_attention", "temporal_attention",
                  "attention_fusion", "attention", "res5_block1_conv_a", "perception"):
        assert layer in branch_weights


def test_inversion_switches_on_a_built_model_without_touching_weights():
    keras.utils.set_random_seed(0)
    model = stabn_tf.STABN.from_preset("stabn_tiny", **TINY)
    x = _clip()
    # Inversion is only visible where the maps are not exactly 0.5 (1 - 0.5 = 0.5).
    maps = stabn_tf.explanation_model(model)(x)
    assert np.abs(np.asarray(maps["temporal_attention"]) - 0.5).max() > 1e-3
    assert np.abs(np.asarray(maps["spatial_attention"]) - 0.5).max() > 1e-3
    weights = [w.copy() for w in model.get_weights()]
    base = model.predict(x, verbose=0)["perception"]
    results = {}
    for mode in ("spatial", "temporal", "both"):
        with stabn_tf.attention_inversion(mode, model):
            results[mode] = model.predict(x, verbose=0)["perception"]
        assert not np.allclose(results[mode], base), mode
    np.testing.assert_allclose(model.predict(x, verbose=0)["perception"], base)
    stabn_tf.set_attention_inversion("both", model)
    np.testing.assert_allclose(model.predict(x, verbose=0)["perception"], results["both"])
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    with pytest.raises(ValueError, match="mode"):
        stabn_tf.set_attention_inversion("sideways", model)
    with pytest.raises(ValueError, match="AttentionFusion"):
        stabn_tf.set_attention_inversion("none",
                                         stabn_tf.ResNet3D.from_preset("stabn_tiny", **TINY))


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(num_frames=0), "num_frames"),
        (dict(image_size=100), "image_size"),
        (dict(image_size=(64, 48)), "image_size"),
        (dict(depth=42), "depth"),
        (dict(num_classes=1), "num_classes"),
        (dict(dropout=1.0), "dropout"),
        (dict(attention_head="max"), "attention_head"),
        (dict(inversion="up"), "inversion"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        stabn_tf.STABN.from_preset("stabn_tiny", **{**TINY, **kwargs})


def test_wrong_number_of_frames_names_the_expected_t():
    model = stabn_tf.STABN.from_preset("stabn_tiny", **{**TINY, "num_frames": 8})
    with pytest.raises(ValueError, match=r"expected shape=\(None, 8, 64, 64, 3\)"):
        model(_clip(frames=5))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_logits_and_maps_float32(policy):
    keras.mixed_precision.set_global_policy(policy)
    model = stabn_tf.STABN.from_preset("stabn_tiny", **TINY)
    assert model.get_layer("res2_block1_conv_a").compute_dtype == policy.split("_")[1]
    out = stabn_tf.explanation_model(model)(_clip(), training=False)
    for key, value in out.items():
        assert value.dtype == "float32", key
        assert np.all(np.isfinite(np.asarray(value))), key


@pytest.mark.slow
def test_plain_keras_fit_with_two_losses_and_per_head_metrics():
    model = stabn_tf.STABN.from_preset("stabn_tiny", **TINY)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def top_k():
        return [keras.metrics.SparseTopKCategoricalAccuracy(1, name="top1"),
                keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]

    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss={"perception": ce, "attention": ce},
        loss_weights={"perception": 1.0, "attention": 1.0},
        metrics={"perception": top_k(), "attention": top_k()},
    )
    y = np.array([0, 1, 2, 3])
    history = model.fit(_clip(batch=4), {"perception": y, "attention": y}, batch_size=2,
                        epochs=2, verbose=0)
    for key in ("loss", "perception_loss", "attention_loss", "perception_top1",
                "perception_top5", "attention_top1", "attention_top5"):
        assert key in history.history and np.isfinite(history.history[key]).all(), key
    assert history.history["perception_top5"][-1] == 1.0  # K=5: top-5 is always right


def test_r50_bottleneck_layout_at_tiny_width():
    model = stabn_tf.STABN.from_preset("stabn_tiny", **{**TINY, "depth": 50})
    assert model.get_layer("res4_block1_conv_a").kernel.shape[:3] == (3, 1, 1)
    assert model.get_layer("res3_block1_conv_a").kernel.shape[:3] == (1, 1, 1)
    assert model.get_layer("res3_block1_conv_b").strides == (2, 2)
    assert model.get_layer("att_res5_block1_conv_b").strides == (1, 1)
    out = model(_clip())
    assert out["perception"].shape == (2, 5)
