"""A saved model knows itself: classes, clip shape, backbone and preprocessing round-trip
through `.keras`; checkpoints from before that get a one-line, tested migration."""

import json
import zipfile

import keras
import numpy as np
import pytest

import stabn_tf
from stabn_tf.models.migrate import migrate_file
from stabn_tf.models.stabn import LegacyCheckpointError

NAMES = ["push", "pull", "lift", "drop"]


def _tiny(model_class, **kwargs):
    keras.utils.set_random_seed(0)
    return model_class.from_preset("stabn_tiny", num_classes=4, image_size=64,
                                   class_names=NAMES, **kwargs)


@pytest.mark.parametrize("model_class", [stabn_tf.STABN, stabn_tf.ResNet3D])
def test_keras_file_round_trips_the_config(model_class, tmp_path):
    model = _tiny(model_class)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.class_names == NAMES and loaded.num_classes == 4
    assert loaded.num_frames == 4 and loaded.image_size == 64
    assert loaded.backbone_name == "3D ResNet-18 ×0.125"
    assert loaded.has_attention == (model_class is stabn_tf.STABN)
    assert loaded.preprocessor.get_config() == model.preprocessor.get_config()
    clips = np.random.default_rng(0).normal(size=(2, 4, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(model(clips)["perception"], loaded(clips)["perception"])


@pytest.mark.slow
@pytest.mark.parametrize("imports", ["import stabn_tf; import keras",
                                     "import stabn_tf; import tensorflow as tf",
                                     "import keras; import stabn_tf"])
def test_import_stabn_tf_is_all_keras_needs_to_load_a_file(imports, tmp_path, python):
    """`import stabn_tf` loads no TensorFlow itself, yet Keras finds the project's classes
    whichever of the two is imported first."""
    path = tmp_path / "m.keras"
    _tiny(stabn_tf.STABN).save(path)
    code = (f"{imports}; import keras; "
            f"print(type(keras.saving.load_model({str(path)!r})).__name__)")
    proc = python("-c", code)  # a fresh process: nothing imported yet
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "STABN"


def test_the_preprocessor_is_made_once_and_saved_as_a_keras_object():
    model = _tiny(stabn_tf.STABN)
    assert model.preprocessor is model.preprocessor
    saved = model.get_config()["preprocessor"]
    assert saved["registered_name"] == "stabn_tf>ClipPreprocessor"
    assert (saved["config"]["num_frames"], saved["config"]["image_size"]) == (4, 64)
    given = stabn_tf.ClipPreprocessor(4, 64)
    assert _tiny(stabn_tf.ResNet3D, preprocessor=given).preprocessor is given


def test_a_file_saved_before_models_stored_their_preprocessor_loads_the_same(tmp_path):
    """Such a file's config has no `preprocessor`: it gets the one its clip shape gives."""
    model = _tiny(stabn_tf.STABN)
    model.save(tmp_path / "new.keras")
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(tmp_path / "new.keras") as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["preprocessor"]  # such files stated the clip itself
                config["config"] |= {"num_frames": 4, "image_size": 64}
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = stabn_tf.load_model(old)
    assert loaded.preprocessor.get_config() == model.preprocessor.get_config()
    clips = np.random.default_rng(2).normal(size=(1, 4, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(model(clips)["perception"], loaded(clips)["perception"])


def test_the_clip_is_stored_once_in_the_preprocessor(tmp_path):
    model = _tiny(stabn_tf.STABN, num_frames=2)
    config = model.get_config()
    assert "num_frames" not in config and "image_size" not in config
    assert (config["preprocessor"]["config"]["num_frames"],
            config["preprocessor"]["config"]["image_size"]) == (2, 64)
    again = stabn_tf.STABN.from_config(config)
    assert (again.num_frames, again.image_size, again.preprocessor.num_frames) == (2, 64, 2)
    model.save_to_preset(tmp_path / "preset")
    saved = json.loads((tmp_path / "preset" / "config.json").read_text())["config"]
    assert "num_frames" not in saved and "preprocessor" not in saved
    longer = stabn_tf.STABN.from_preset(tmp_path / "preset", load_weights=False, num_frames=8)
    assert (longer.num_frames, longer.image_size) == (8, 64)  # the size from the preset
    wide = stabn_tf.build_baseline(num_classes=3, num_frames=2, image_size=(32, 64), depth=18,
                                   width_multiplier=0.125)
    assert (wide.get_config()["num_frames"], wide.get_config()["image_size"]) == (2, [32, 64])


def test_a_preprocessor_for_other_clips_or_a_non_square_model_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="makes 8 frames of 64×64; the model takes 4 frames"):
        _tiny(stabn_tf.STABN, preprocessor=stabn_tf.ClipPreprocessor(8, 64))
    wide = stabn_tf.build_baseline(num_classes=3, num_frames=2, image_size=(32, 64), depth=18,
                                   width_multiplier=0.125)
    wide.save(tmp_path / "wide.keras")  # saves and loads; has no clip preparation
    for model in (wide, stabn_tf.load_model(tmp_path / "wide.keras")):
        with pytest.raises(ValueError, match="takes 32×64 frames; clip preparation makes "
                                             "square clips"):
            _ = model.preprocessor


def test_saved_inversion_setting_is_restored(tmp_path):
    model = _tiny(stabn_tf.STABN)
    stabn_tf.set_attention_inversion("spatial", model)
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").get_config()["inversion"] == "spatial"


def test_builder_rejects_wrong_number_of_class_names():
    with pytest.raises(ValueError, match="3 class names"):
        stabn_tf.STABN.from_preset("stabn_tiny", num_classes=4, class_names=NAMES[:3])


@pytest.mark.slow
def test_legacy_checkpoint_is_refused_in_one_line_and_migrates(tmp_path, python):
    model = _tiny(stabn_tf.STABN)
    legacy = keras.Model(model.input, model.output, name="stabn")  # a plain Functional
    old = tmp_path / "old.keras"
    legacy.save(old)
    with pytest.raises(LegacyCheckpointError, match="stabn_tf.models.migrate"):
        stabn_tf.load_model(old)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    result = python("-m", "stabn_tf.models.migrate", old, f"--labels={labels}")  # the old name
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "old.legacy.keras").exists()
    migrated = stabn_tf.load_model(old)
    assert isinstance(migrated, stabn_tf.STABN) and migrated.class_names == NAMES
    clips = np.random.default_rng(1).normal(size=(1, 4, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(migrated(clips)["perception"], model(clips)["perception"],
                               atol=1e-5)
    # Migrating twice, or with the wrong class count, is one line.
    with pytest.raises(ValueError, match="already carries its config"):
        migrate_file(str(old), str(labels))
    labels.write_text("a\nb\n")
    with pytest.raises(ValueError, match="2 class names for a model with 4"):
        migrate_file(str(tmp_path / "old.legacy.keras"), str(labels))
