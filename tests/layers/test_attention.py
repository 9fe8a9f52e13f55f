"""The three ST-ABN layers: shapes, ranges, semantics, configs."""

import json
import zipfile

import keras
import numpy as np
import pytest

from stabn_tf.layers import AttentionFusion, SpatialAttention, TemporalAttention

B, T, H, W, K, C = 2, 6, 5, 4, 7, 8


@pytest.fixture
def class_maps():
    return np.random.default_rng(0).uniform(size=(B, T, H, W, K)).astype("float32")


def test_spatial_attention_is_one_sigmoid_map_per_frame(class_maps):
    layer = SpatialAttention(name="ms")
    ms = np.asarray(layer(class_maps))
    assert ms.shape == (B, T, H, W, 1)
    assert ms.min() > 0.0 and ms.max() < 1.0
    # 1×1×1 conv: each pixel depends only on its own class scores.
    changed = class_maps.copy()
    changed[0, 2, 1, 1] += 5.0
    diff = np.abs(np.asarray(layer(changed)) - ms)[..., 0]
    assert diff[0, 2, 1, 1] > 0 and np.count_nonzero(diff) == 1


def test_temporal_attention_is_one_sigmoid_weight_per_frame(class_maps):
    layer = TemporalAttention(name="mt")
    mt = np.asarray(layer(class_maps))
    assert mt.shape == (B, T)
    assert mt.min() > 0.0 and mt.max() < 1.0
    assert layer.frame_mix.kernel.shape == (1, 1, T, T)
    assert layer.conv.kernel.shape == (3, 3, 3, K, 1)
    # The frames-as-channels conv has no bias, as in the reference.
    assert [w.path.split("/")[-1] for w in layer.frame_mix.weights] == ["kernel"]
    assert layer.count_params() == 27 * K + 4 + T * T + 2 * (T * T + T)


def test_temporal_attention_fixes_the_number_of_frames(class_maps):
    layer = TemporalAttention()
    layer(class_maps)
    with pytest.raises(ValueError, match=f"axis 1.*{T}"):
        layer(class_maps[:, :-1])


def _fusion_inputs():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(B, T, H, W, C)).astype("float32")
    ms = rng.uniform(size=(B, T, H, W, 1)).astype("float32")
    mt = rng.uniform(size=(B, T)).astype("float32")
    return f, ms, mt


@pytest.mark.parametrize(
    "mode,spatial_gain,temporal_gain",
    [
        ("none", lambda ms: 1 + ms, lambda mt: mt),
        ("spatial", lambda ms: 2 - ms, lambda mt: mt),
        ("temporal", lambda ms: 1 + ms, lambda mt: 1 - mt),
        ("both", lambda ms: 2 - ms, lambda mt: 1 - mt),
    ],
)
def test_fusion_sees_the_specified_reweighting(mode, spatial_gain, temporal_gain):
    f, ms, mt = _fusion_inputs()
    layer = AttentionFusion(inversion=mode)
    fs, ft = (np.asarray(t) for t in layer.fusion_inputs(f, ms, mt))
    np.testing.assert_allclose(fs, spatial_gain(ms) * f, rtol=1e-6)
    np.testing.assert_allclose(ft, temporal_gain(mt)[:, :, None, None, None] * f, rtol=1e-6)


def test_fusion_output_and_inversion_switch_without_touching_weights():
    f, ms, mt = _fusion_inputs()
    layer = AttentionFusion(relu=True)
    out = np.asarray(layer([f, ms, mt]))
    assert out.shape == f.shape and out.min() >= 0.0
    assert layer.conv.kernel.shape == (1, 1, 1, 2 * C, C)
    weights = [w.copy() for w in layer.get_weights()]
    layer.inversion = "both"
    inverted = np.asarray(layer([f, ms, mt]))
    assert not np.allclose(inverted, out)
    for before, after in zip(weights, layer.get_weights()):
        np.testing.assert_array_equal(before, after)
    layer.inversion = "none"
    np.testing.assert_allclose(layer([f, ms, mt]), out)
    with pytest.raises(ValueError, match="inversion"):
        layer.inversion = "upside-down"


def test_fusion_can_absorb_a_flipped_spatial_map_when_mt_is_constant():
    """Why the loss does not fix which way round Ms comes out (docs/explanations.md,
    "Reading the figure"): with Mt = m everywhere, kernels (−Ws, Wt + 3·Ws/m) on 1−Ms give exactly
    the output of (Ws, Wt) on Ms, since (2−Ms)·(−Ws) + (Wt + 3Ws/m)·m = (1+Ms)·Ws + m·Wt."""
    f, ms, _ = _fusion_inputs()
    m = 0.5
    mt = np.full((B, T), m, "float32")
    layer = AttentionFusion(relu=False)
    out = np.asarray(layer([f, ms, mt]))
    kernel = layer.conv.kernel.numpy()
    flipped = kernel.copy()
    flipped[..., :C, :] = -kernel[..., :C, :]
    flipped[..., C:, :] = kernel[..., C:, :] + 3.0 * kernel[..., :C, :] / m
    layer.conv.kernel.assign(flipped)
    np.testing.assert_allclose(layer([f, 1.0 - ms, mt]), out, rtol=1e-4, atol=1e-4)
    # With Mt varying over frames the flip is no longer exact.
    ramp = np.linspace(0.1, 0.9, T, dtype="float32")[None].repeat(B, 0)
    varying = np.asarray(layer([f, 1.0 - ms, ramp]))
    assert not np.allclose(varying, out, atol=1e-2)


def test_fusion_without_relu_can_be_negative():
    f, ms, mt = _fusion_inputs()
    assert np.asarray(AttentionFusion(relu=False)([f, ms, mt])).min() < 0.0


def test_fusion_rejects_mismatched_maps():
    f, ms, mt = _fusion_inputs()
    with pytest.raises(ValueError, match="Ms"):
        AttentionFusion()([f, ms[:, :, :-1], mt])


@pytest.mark.parametrize(
    "layer,inputs",
    [
        (SpatialAttention(synchronized_bn=True, name="ms"), "maps"),
        (TemporalAttention(name="mt"), "maps"),
        (AttentionFusion(relu=False, inversion="temporal", name="fuse"), "fusion"),
    ],
)
def test_layers_serialize_by_registered_name(layer, inputs, class_maps):
    x = [*_fusion_inputs()] if inputs == "fusion" else class_maps
    expected = np.asarray(layer(x))
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"].startswith("stabn_tf>")
    clone = keras.saving.deserialize_keras_object(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), expected, atol=1e-6)
    assert clone.get_config() == layer.get_config()


def test_a_config_without_frame_mix_bias_is_the_old_biased_layer():
    config = TemporalAttention(name="mt").get_config()
    assert config["frame_mix_bias"] is False
    assert TemporalAttention.from_config(config).frame_mix_bias is False
    del config["frame_mix_bias"]
    assert TemporalAttention.from_config(config).frame_mix_bias is True


def _without_key(tree, key):
    if isinstance(tree, dict):
        return {k: _without_key(v, key) for k, v in tree.items() if k != key}
    if isinstance(tree, list):
        return [_without_key(v, key) for v in tree]
    return tree


def test_an_old_keras_file_with_the_frame_mix_bias_loads_as_it_was(class_maps, tmp_path):
    inputs = keras.Input(class_maps.shape[1:])
    old = keras.Model(inputs, TemporalAttention(frame_mix_bias=True, name="mt")(inputs))
    old.get_layer("mt").frame_mix.bias.assign(np.linspace(-1.0, 1.0, T))
    path = tmp_path / "old.keras"
    old.save(path)
    # Rewrite it as saved before the key existed: a config without `frame_mix_bias`.
    with zipfile.ZipFile(path) as z:
        files = {name: z.read(name) for name in z.namelist()}
    assert b'"frame_mix_bias": true' in files["config.json"]
    config = _without_key(json.loads(files["config.json"]), "frame_mix_bias")
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_layer("mt").frame_mix_bias
    np.testing.assert_allclose(loaded(class_maps), old(class_maps), atol=1e-6)
