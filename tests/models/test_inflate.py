"""Initialisation: inflated 2D ResNets reproduce their 2D features; bad inputs fail in one line."""

import pathlib

import keras
import numpy as np
import pytest
from safetensors.numpy import save_file

import stabn_tf
from stabn_tf.layers import Conv3DAs2D, TemporalAttention
from stabn_tf.models.inflate import (
    DEFAULT_IMAGENET_REPO,
    HUB_FILENAME,
    InitError,
    InitSpec,
    copy_checkpoint_weights,
    download_imagenet_weights,
    inflate_resnet50,
    inflate_state_dict,
    initialize,
    keras_resnet50_name,
    load_state_dict,
    parse_init,
    torchvision_resnet_name,
)

SIZE = 64
# res4 has one 3×1×1 conv in each of its 6 blocks: with zero temporal padding, frames
# within 6 of either end also see the padding. 13 frames leave the middle one (6) exact.
TV_FRAMES, TV_MIDDLE = 13, 6
# The keras.applications check goes on to res5 (3 more blocks): reach 9.
FRAMES, REACH = 20, 9
STAGES = {"res2": ("res2_block3_out", "conv2_block3_out"),
          "res3": ("res3_block4_out", "conv3_block4_out"),
          "res4": ("res4_block6_out", "conv4_block6_out")}
BLOCKS = (3, 4, 6, 3)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TV_BN = (".weight", ".bias", ".running_mean", ".running_var")


def _one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


# ---- torchvision / timm weights ------------------------------------------------------

def _random_torchvision_resnet50(seed=0) -> dict:
    """A state dict with torchvision's (and timm's) ResNet-50 keys, shapes and dtypes."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(key, c_out, c_in, k):
        std = np.sqrt(2.0 / (c_in * k * k))
        state[key + ".weight"] = rng.normal(0, std, (c_out, c_in, k, k)).astype("float32")

    def bn(key, c):
        state[key + ".weight"] = rng.uniform(0.3, 0.8, c).astype("float32")
        state[key + ".bias"] = rng.normal(0, 0.1, c).astype("float32")
        state[key + ".running_mean"] = rng.normal(0, 0.1, c).astype("float32")
        state[key + ".running_var"] = rng.uniform(0.5, 2.0, c).astype("float32")
        state[key + ".num_batches_tracked"] = np.array(1000, np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    c_in = 64
    for stage, (blocks, width) in enumerate(zip(BLOCKS, (64, 128, 256, 512)), start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}."
            conv(p + "conv1", width, c_in, 1)
            bn(p + "bn1", width)
            conv(p + "conv2", width, width, 3)
            bn(p + "bn2", width)
            conv(p + "conv3", 4 * width, width, 1)
            bn(p + "bn3", 4 * width)
            if b == 0:
                conv(p + "downsample.0", 4 * width, c_in, 1)
                bn(p + "downsample.1", 4 * width)
            c_in = 4 * width
    state["fc.weight"] = rng.normal(0, 0.01, (1000, 2048)).astype("float32")
    state["fc.bias"] = np.zeros(1000, "float32")
    return state


def _torchvision_2d_reference(state) -> keras.Model:
    """torchvision's ResNet-50 (v1.5) up to layer3, written out with plain Keras layers and
    PyTorch's explicit padding: stem 7×7/2 pad 3, max-pool 3×3/2 pad 1, 3×3 convs pad 1."""
    layers = keras.layers

    def conv(x, key, stride, pad):
        kernel = state[key + ".weight"].transpose(2, 3, 1, 0)  # OIHW → HWIO
        if pad:
            x = layers.ZeroPadding2D(pad)(x)
        layer = layers.Conv2D(kernel.shape[-1], kernel.shape[:2], strides=stride,
                              padding="valid", use_bias=False)
        x = layer(x)
        layer.set_weights([kernel])
        return x

    def bn(x, key):
        layer = layers.BatchNormalization(epsilon=1e-5)
        x = layer(x)
        layer.set_weights([state[key + s] for s in TV_BN])
        return x

    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.ReLU()(bn(conv(inputs, "conv1", 2, 3), "bn1"))
    # PyTorch pads the max-pool with -inf; after a ReLU, zeros are the same.
    x = layers.MaxPool2D(3, 2)(layers.ZeroPadding2D(1)(x))
    taps = []
    for stage, blocks in enumerate(BLOCKS[:3], start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}."
            stride = 2 if b == 0 and stage > 1 else 1
            y = layers.ReLU()(bn(conv(x, p + "conv1", 1, 0), p + "bn1"))
            y = layers.ReLU()(bn(conv(y, p + "conv2", stride, 1), p + "bn2"))
            y = bn(conv(y, p + "conv3", 1, 0), p + "bn3")
            shortcut = bn(conv(x, p + "downsample.0", stride, 0), p + "downsample.1") if b == 0 \
                else x
            x = layers.ReLU()(layers.Add()([y, shortcut]))
        taps.append(x)
    return keras.Model(inputs, taps)


@pytest.fixture(scope="module")
def tv_state():
    return _random_torchvision_resnet50()


@pytest.fixture(scope="module")
def tv_file(tv_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50.safetensors"
    save_file(tv_state, str(path))
    return str(path)


@pytest.fixture(scope="module")
def inflated_stabn(tv_file):
    """An R50 ST-ABN initialised from the file, with every weight recorded before."""
    keras.utils.set_random_seed(0)
    model = stabn_tf.build_stabn(num_classes=5, num_frames=TV_FRAMES, image_size=SIZE)
    before = {w.path: w.numpy() for w in model.weights}
    message = initialize(model, parse_init(tv_file))
    return model, before, message


def _taps(model, names, clip):
    outputs = {name: model.get_layer(name).output for name in names}
    got = keras.Model(model.input, outputs)(clip, training=False)
    return [np.asarray(got[name]) for name in names]


def _relative_diffs(got, expected):
    return [(float(np.abs(g - e).max()), float(np.abs(g - e).max() / np.abs(e).max()))
            for g, e in zip(got, expected)]


def test_inflated_torchvision_weights_give_the_2d_features(inflated_stabn, tv_state):
    model, _, message = inflated_stabn
    assert "\n" not in message and "106 conv/BN" in message
    frame = np.random.default_rng(1).normal(size=(1, SIZE, SIZE, 3)).astype("float32")
    clip = np.repeat(frame[:, None], TV_FRAMES, axis=1)
    expected = [np.asarray(y)[0] for y in _torchvision_2d_reference(tv_state)(frame)]
    got = _taps(model, [ours for ours, _ in STAGES.values()], clip)
    middle = [g[0, TV_MIDDLE] for g in got]
    for stage, (abs_diff, rel) in zip(STAGES, _relative_diffs(middle, expected)):
        assert rel <= 1e-4, (stage, abs_diff, rel)
    # res2/res3 have no temporal kernel: every frame is exact; res4's ends see the padding.
    for g, e in zip(got[:2], expected[:2]):
        np.testing.assert_allclose(g[0], np.broadcast_to(e, g[0].shape), atol=1e-4 *
                                   np.abs(e).max())
    assert np.abs(got[2][0, 0] - expected[2]).max() > 1e-3 * np.abs(expected[2]).max()


def test_every_backbone_layer_is_assigned_once_and_the_branch_stays_random(inflated_stabn,
                                                                           tv_state):
    model, before, _ = inflated_stabn
    # res5 (the perception branch) inflates from layer4; its attention-branch copy does not.
    backbone = [layer.name for layer in model.layers
                if isinstance(layer, (keras.layers.BatchNormalization, Conv3DAs2D))
                and (layer.name.startswith(("stem_", "res")))]
    copied = inflate_state_dict(model, tv_state)  # the same values again: a no-op
    assert sorted(copied) == sorted(backbone) and len(copied) == len(set(copied)) == 2 * 53
    keys = {torchvision_resnet_name(name) for name in copied}
    assert len(keys) == len(copied)
    assert keys == {k.rsplit(".", 1)[0] for k in tv_state if not k.startswith("fc.")}
    changed = {w.path.split("/")[0] for w in model.weights
               if not np.array_equal(w.numpy(), before[w.path])}
    assert changed == set(backbone)
    for name in ("att_res5_block1_conv_a", "att_class_conv", "attention", "perception",
                 "spatial_attention", "temporal_attention", "attention_fusion"):
        assert name not in changed
    np.testing.assert_array_equal(model.get_layer("res4_block2_bn_c").moving_variance.numpy(),
                                  tv_state["layer3.1.bn3.running_var"])


@pytest.mark.parametrize("edit,key", [
    ("drop", "layer2.1.bn2.running_var"),
    ("reshape", "layer3.0.conv1.weight"),
    ("add", "layer3.6.conv1.weight"),
])
def test_a_missing_misshapen_or_extra_key_is_one_line_naming_it(inflated_stabn, tv_state,
                                                                 edit, key):
    model, _, _ = inflated_stabn
    state = dict(tv_state)
    if edit == "drop":
        del state[key]
    elif edit == "reshape":
        state[key] = state[key][:, :256]
    else:
        state[key] = np.zeros((256, 1024, 1, 1), "float32")
    kernel = model.get_layer("stem_conv_a").kernel.numpy()
    with pytest.raises(InitError, match=key.replace(".", r"\.")) as error:
        inflate_state_dict(model, state, source="w.safetensors")
    assert _one_line(error).startswith("w.safetensors: ")
    np.testing.assert_array_equal(model.get_layer("stem_conv_a").kernel.numpy(), kernel)


def test_hub_download_reads_a_cached_file_and_fails_offline_in_one_line(inflated_stabn, tv_file,
                                                                        tmp_path):
    # The layout huggingface_hub's cache keeps: a ref naming a snapshot holding the file.
    repo = tmp_path / ("models--" + DEFAULT_IMAGENET_REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / HUB_FILENAME).write_bytes(pathlib.Path(tv_file).read_bytes())
    path = download_imagenet_weights(cache_dir=str(tmp_path), local_files_only=True)
    assert path == str(snapshot / HUB_FILENAME)
    model, _, _ = inflated_stabn
    message = initialize(model, parse_init("imagenet"), cache_dir=str(tmp_path),
                         local_files_only=True)
    assert DEFAULT_IMAGENET_REPO in message
    with pytest.raises(InitError, match="hf download timm/resnet50.a1_in1k") as error:
        initialize(model, parse_init("imagenet:timm/resnet50.a1_in1k"),
                   cache_dir=str(tmp_path), local_files_only=True)
    _one_line(error)


def test_garbage_safetensors_is_one_line(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(InitError, match="bad.safetensors") as error:
        load_state_dict(str(path))
    _one_line(error)


def test_parse_init(tmp_path):
    assert parse_init("none") == InitSpec()
    assert parse_init("imagenet") == InitSpec("imagenet", "timm/resnet50.tv_in1k")
    tagged = parse_init("imagenet:timm/resnet50.a1_in1k")
    assert tagged == InitSpec("imagenet", "timm/resnet50.a1_in1k") and not tagged.stride_in_1x1
    assert parse_init("imagenet:keras").stride_in_1x1
    assert parse_init("imagenet").from_resnet50 and parse_init("imagenet:keras").from_resnet50
    for name, kind in (("w.safetensors", "safetensors"), ("m.keras", "checkpoint"),
                       ("m.weights.h5", "checkpoint")):
        (tmp_path / name).write_bytes(b"")
        assert parse_init(str(tmp_path / name)) == InitSpec(kind, str(tmp_path / name))
    for bad, match in (("imagenet:resnet50", "owner"), ("imagenet:a/b/c", "owner"),
                       ("resnet50.pth", "must be"), (str(tmp_path / "no.safetensors"), "no such")):
        with pytest.raises(InitError, match=match) as error:
            parse_init(bad)
        _one_line(error)


# ---- keras.applications weights (ResNet v1) ------------------------------------------

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


@pytest.fixture(scope="module")
def v1_baseline():
    """The baseline in keras.applications' layout (stride in the first 1×1 conv)."""
    return stabn_tf.build_baseline(num_classes=10, num_frames=FRAMES, image_size=SIZE, depth=50,
                                   stride_in_1x1=True)


def test_identical_frames_give_the_2d_features(resnet2d, v1_baseline):
    model = v1_baseline
    copied = inflate_resnet50(model, resnet2d, fold_input_normalization=False)
    # stem, 16 blocks × 3 convs, 4 shortcuts; each a conv and a BN
    assert len(copied) == len(set(copied)) == 2 * (1 + 3 * 16 + 4)
    frame = np.random.default_rng(1).normal(size=(1, SIZE, SIZE, 3)).astype("float32")
    clip = np.repeat(frame[:, None], FRAMES, axis=1)

    names = [*STAGES.values(), ("res5_block3_out", "conv5_block3_out")]
    reference = keras.Model(resnet2d.input, [resnet2d.get_layer(k).output for _, k in names])
    expected = [np.asarray(y)[0] for y in reference(frame, training=False)]
    got = _taps(model, [ours for ours, _ in names], clip)
    middle = [g[0, FRAMES // 2] for g in got]
    for stage, (abs_diff, rel) in zip([*STAGES, "res5"], _relative_diffs(middle, expected)):
        assert rel <= 1e-4, (stage, abs_diff, rel)
    res5, scale = got[-1][0], np.abs(expected[-1]).max()
    assert scale > 0
    for t in range(REACH, FRAMES - REACH):
        np.testing.assert_allclose(res5[t], expected[-1], atol=1e-5 * scale, rtol=1e-4)
    # The ends see the zero temporal padding, which is why they are not compared.
    assert np.abs(res5[0] - expected[-1]).max() > 1e-3 * scale


def test_layouts_are_enforced(resnet2d, v1_baseline, inflated_stabn, tv_state):
    default_layout, _, _ = inflated_stabn
    kernel = default_layout.get_layer("res4_block1_conv_a").kernel.numpy()
    with pytest.raises(InitError, match="stride_in_1x1=True") as error:
        inflate_resnet50(default_layout, resnet2d)
    _one_line(error)
    np.testing.assert_array_equal(default_layout.get_layer("res4_block1_conv_a").kernel.numpy(),
                                  kernel)
    with pytest.raises(InitError, match="v1.5") as error:
        inflate_state_dict(v1_baseline, tv_state)
    _one_line(error)


def test_folded_input_normalization_matches_caffe_preprocessing(resnet2d, v1_baseline):
    model = v1_baseline
    inflate_resnet50(model, resnet2d, mean=MEAN, std=STD)
    rgb = np.random.default_rng(2).uniform(size=(1, SIZE, SIZE, 3)).astype("float32")
    ours = (rgb - np.array(MEAN, "float32")) / np.array(STD, "float32")
    caffe = keras.applications.resnet50.preprocess_input(rgb * 255.0)
    expected = keras.Model(resnet2d.input, resnet2d.get_layer("conv1_bn").output)(caffe)
    got = _taps(model, ["stem_bn_a"], np.repeat(ours[:, None], FRAMES, axis=1))[0][0, 0]
    # Interior pixels: the zero padding of the 7×7 stem means "0" in each input space.
    np.testing.assert_allclose(got[2:-2, 2:-2], np.asarray(expected)[0, 2:-2, 2:-2],
                               atol=1e-3, rtol=1e-4)


def test_attention_branch_copy_is_not_inflated_and_wrong_widths_are_refused(resnet2d):
    assert keras_resnet50_name("att_res5_block1_conv_a") is None
    assert torchvision_resnet_name("att_res5_block1_conv_a") is None
    assert keras_resnet50_name("res3_block2_bn_b") == "conv3_block2_2_bn"
    assert torchvision_resnet_name("res3_block2_bn_b") == "layer2.1.bn2"
    assert keras_resnet50_name("stem_conv_a") == "conv1_conv"
    assert torchvision_resnet_name("res4_block1_bn_shortcut") == "layer3.0.downsample.1"
    half = stabn_tf.build_baseline(num_classes=10, num_frames=2, image_size=SIZE, depth=50,
                                   width_multiplier=0.5, stride_in_1x1=True)
    with pytest.raises(ValueError, match="width_multiplier") as error:
        inflate_resnet50(half, resnet2d)
    _one_line(error)


# ---- checkpoints ---------------------------------------------------------------------

def _temporal_model(frames=4, classes=3, **kwargs):
    inputs = keras.Input((frames, 4, 4, classes))
    return keras.Model(inputs, TemporalAttention(name="temporal_attention", **kwargs)(inputs))


def test_checkpoints_load_or_fail_in_one_line_naming_the_file(tmp_path):
    source = _temporal_model()
    source.save(tmp_path / "same.keras")
    source.save_weights(tmp_path / "same.weights.h5")
    for name in ("same.keras", "same.weights.h5"):
        model = _temporal_model()
        initialize(model, parse_init(str(tmp_path / name)))
        for a, b in zip(model.weights, source.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())

    _temporal_model(classes=5).save(tmp_path / "other.keras")
    _temporal_model(classes=5).save_weights(tmp_path / "other.weights.h5")
    _temporal_model(frame_mix_bias=True).save(tmp_path / "biased.keras")
    (tmp_path / "garbage.keras").write_bytes(b"not a zip")
    whole = (tmp_path / "same.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(whole[:len(whole) // 2])
    flipped = bytearray(whole)  # one byte of the weights' member changed: a CRC mismatch
    start = whole.index(b"model.weights.h5") + 200
    flipped[start:start + 8] = bytes(b ^ 0xFF for b in flipped[start:start + 8])
    (tmp_path / "flipped.keras").write_bytes(bytes(flipped))
    (tmp_path / "garbage.weights.h5").write_bytes(b"not hdf5")
    _temporal_model(frame_mix_bias=True).save_weights(tmp_path / "biased.weights.h5")
    for name, match in (("other.keras", "has shape"), ("other.weights.h5", "cannot be loaded"),
                        ("biased.keras", "bias"), ("biased.weights.h5", "bias"),
                        ("garbage.keras", "not a .keras model file .* corrupt or truncated"),
                        ("truncated.keras", "corrupt or truncated"),
                        ("flipped.keras", "a corrupt .keras file .its 'model.weights.h5' "
                                          "fails its checksum"),
                        ("garbage.weights.h5", "cannot be loaded")):
        with pytest.raises(InitError, match=match) as error:
            copy_checkpoint_weights(_temporal_model(), str(tmp_path / name))
        assert str(tmp_path / name) in _one_line(error)

