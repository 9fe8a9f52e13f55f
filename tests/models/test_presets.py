"""Presets: the named settings, from_preset / save_to_preset round trips, one-line refusals,
and the training flags and flag files that read them."""

import dataclasses
import inspect
import json
import os
import re

import numpy as np
import pytest
from absl import flags

import stabn_tf
from stabn_tf import train as cli
from stabn_tf.models import presets
from stabn_tf.training.trainer import ConfigError, TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _clip(frames=4, size=32, seed=0):
    return np.random.default_rng(seed).normal(size=(2, frames, size, size, 3)).astype("float32")


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def _known_names_listed(message: str) -> None:
    assert all(name in message for name in presets.PRESETS), message


@pytest.mark.parametrize("model_class", [stabn_tf.STABN, stabn_tf.ResNet3D])
def test_a_saved_preset_loads_back_with_identical_outputs(model_class, tmp_path):
    overrides = {"inversion": "spatial"} if model_class is stabn_tf.STABN else {}
    model = model_class.from_preset("stabn_tiny", num_classes=5,
                                    class_names=list("abcde"), **overrides)
    model.save_to_preset(tmp_path / "preset")
    assert sorted(os.listdir(tmp_path / "preset")) == [
        "config.json", "metadata.json", "model.weights.h5", "preprocessor.json"]
    metadata = json.loads((tmp_path / "preset" / "metadata.json").read_text())
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["stabn_tf_version"] == stabn_tf.__version__

    loaded = stabn_tf.VideoClassifier.from_preset(tmp_path / "preset")
    assert type(loaded) is model_class
    assert loaded.get_config() == model.get_config()
    assert loaded.class_names == list("abcde")
    x = _clip()
    expected, actual = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert set(actual) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key])
    # The saved class loads under its own name too.
    assert type(model_class.from_preset(tmp_path / "preset")) is model_class


def test_built_in_presets_hold_the_settings_they_name():
    paper = presets.get("stabn_r50_ssv2")
    assert dict(paper.config) == {
        "num_classes": 174, "num_frames": 32, "image_size": 224, "depth": 50,
        "width_multiplier": 1.0, "dropout": 0.5, "attention_head": "per_frame",
        "fusion_relu": True}
    assert presets.get("stabn_r50_ssv1").train_settings() == paper.train_settings()
    baseline = presets.get("baseline_r50_ssv2").train_settings()
    assert baseline["model"] == "baseline" and "attention_head" not in baseline
    assert {k: v for k, v in paper.train_settings().items()
            if k not in ("model", "attention_head", "fusion_relu")} == \
        {k: v for k, v in baseline.items() if k != "model"}
    # TrainConfig's defaults are the paper's (save the initialisation: none by default).
    assert TrainConfig.from_preset("stabn_r50_ssv2") == TrainConfig(init="imagenet")
    assert "stabn_demo: " in presets.describe()


def test_overrides_replace_the_preset_settings():
    model = stabn_tf.STABN.from_preset("stabn_tiny", num_classes=3, num_frames=2,
                                       dropout=0.0, attention_head="gap")
    assert (model.num_classes, model.num_frames, model.image_size, model.depth) == (3, 2, 32, 18)
    assert model.get_config()["attention_head"] == "gap" and model.dropout == 0.0
    # The baseline of an ST-ABN preset: the same backbone and clips, no branches.
    baseline = stabn_tf.ResNet3D.from_preset("stabn_tiny")
    assert not baseline.has_attention and baseline.backbone_name == "3D ResNet-18 ×0.125"
    assert type(stabn_tf.VideoClassifier.from_preset("stabn_tiny")) is stabn_tf.STABN
    config = TrainConfig.from_preset("stabn_demo", epochs=2)
    assert (config.depth, config.image_size, config.epochs, config.base_lr) == (18, 64, 2, 0.2)


def test_unknown_names_and_arguments_are_one_line(tmp_path):
    for preset in ("stabn_r51_ssv2", tmp_path / "absent"):
        with pytest.raises(presets.PresetError) as error:
            stabn_tf.STABN.from_preset(preset)
        _known_names_listed(_one_line(error))
    with pytest.raises(presets.PresetError, match="unknown preset 'big'") as error:
        TrainConfig.from_preset("big")
    _known_names_listed(_one_line(error))
    with pytest.raises(presets.PresetError, match="no argument heads") as error:
        stabn_tf.STABN.from_preset("stabn_tiny", heads=3)
    _one_line(error)


def test_broken_preset_directories_are_one_line(tmp_path):
    model = stabn_tf.STABN.from_preset("stabn_tiny")
    model.save_to_preset(tmp_path / "good")
    config = (tmp_path / "good" / "config.json").read_text()

    def broken(name: str, files: dict) -> str:
        folder = tmp_path / name
        folder.mkdir()
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
        return str(folder)

    cases = {
        broken("empty", {}): "not a preset directory (no config.json)",
        broken("garbled", {"config.json": config[:40]}): "config.json: unreadable",
        broken("list", {"config.json": "[1, 2]"}): "config.json: not a JSON object",
        broken("foreign", {"config.json": json.dumps({"class_name": "Sequential",
                                                      "config": {}})}):
            "describes no ST-ABN or baseline model",
        broken("no_weights", {"config.json": config}): "no model.weights.h5",
    }
    for folder, message in cases.items():
        with pytest.raises(presets.PresetError, match=re.escape(message)) as error:
            stabn_tf.VideoClassifier.from_preset(folder)
        _one_line(error)
        _known_names_listed(str(error.value))
    garbled_weights = broken("bad_weights", {"config.json": config,
                                             "model.weights.h5": "not an HDF5 file"})
    with pytest.raises(presets.PresetError, match="cannot load its weights") as error:
        stabn_tf.STABN.from_preset(garbled_weights)
    _one_line(error)
    with pytest.raises(presets.PresetError, match="holds a STABN model, not a ResNet3D"):
        stabn_tf.ResNet3D.from_preset(tmp_path / "good")
    with pytest.raises(presets.PresetError, match=r"cannot load its weights into the model "
                       r"with the overrides \['num_classes'\]") as error:
        stabn_tf.STABN.from_preset(tmp_path / "good", num_classes=7)
    _one_line(error)
    # Without the weights, a changed head is a fresh model of the saved architecture.
    fresh = stabn_tf.STABN.from_preset(tmp_path / "good", load_weights=False, num_classes=7)
    assert fresh.num_classes == 7 and fresh.class_names[-1] == "class 6"


def test_builders_take_exactly_the_model_arguments():
    for build, model_class in ((stabn_tf.build_stabn, stabn_tf.STABN),
                               (stabn_tf.build_baseline, stabn_tf.ResNet3D)):
        expected = list(inspect.signature(model_class.__init__).parameters.values())[1:]
        assert list(inspect.signature(build).parameters.values()) == expected
    # The builders' defaults are the paper's presets.
    for name, model_class in (("stabn_r50_ssv2", stabn_tf.STABN),
                              ("baseline_r50_ssv2", stabn_tf.ResNet3D)):
        defaults = inspect.signature(model_class.__init__).parameters
        assert {k: defaults[k].default for k in presets.get(name).config} == \
            dict(presets.get(name).config)
    model = stabn_tf.build_stabn(**presets.get("stabn_tiny").config, frame_mix_bias=True)
    assert model.get_config()["frame_mix_bias"] is True
    assert model.get_layer("temporal_attention").frame_mix_bias is True


def _resolved(*argv) -> TrainConfig:
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["train", *argv])
    return cli.config_from_flags(flag_values)


# What each flag file resolved to when it spelled every setting out itself.
_EXECUTION = dict(precision="bfloat16", jit_compile=True, strategy="auto", sync_bn=False,
                  backup_every_steps=500, explain_every_epochs=5, verbose=2)
_PAPER = dict(depth=50, num_frames=32, image_size=224, init="imagenet", batch_size=64,
              epochs=150, schedule="step", decay_epochs=(75, 125), base_lr=0.01, momentum=0.9,
              weight_decay=5e-4, clip_norm=20.0, dropout=0.5)
FLAG_FILES = {
    "demo": TrainConfig(
        dataset="synthetic", cache_dir="data/cache", output_dir="runs/demo", model="stabn",
        depth=18, width_multiplier=0.25, num_frames=8, image_size=64, batch_size=16,
        epochs=15, base_lr=0.2, schedule="cosine", warmup_epochs=1.0, dropout=0.2,
        precision="float32", jit_compile=False, explain_every_epochs=5, num_explain_clips=4,
        verbose=2),
    "ssv2": TrainConfig(dataset="tfrecord", train_files="data/ssv2/train-*.tfrecord",
                        val_files="data/ssv2/validation-*.tfrecord",
                        output_dir="runs/ssv2_stabn", model="stabn", **_PAPER, **_EXECUTION),
    "ssv1": TrainConfig(dataset="tfrecord", train_files="data/ssv1/train-*.tfrecord",
                        val_files="data/ssv1/validation-*.tfrecord",
                        output_dir="runs/ssv1_stabn", model="stabn", **_PAPER, **_EXECUTION),
    "ssv2_baseline": TrainConfig(dataset="tfrecord", train_files="data/ssv2/train-*.tfrecord",
                                 val_files="data/ssv2/validation-*.tfrecord",
                                 output_dir="runs/ssv2_baseline", model="baseline", **_PAPER,
                                 **_EXECUTION),
}

# Fine-tuning from corrections: the demo's model on converted records, short, from --init.
FLAG_FILES["correction_finetune"] = dataclasses.replace(
    FLAG_FILES["demo"], dataset="tfrecord", output_dir="runs/corrected", epochs=1,
    steps_per_epoch=60, annotated_share=0.25, base_lr=0.05, warmup_epochs=0.0,
    explain_every_epochs=0, attention_supervision_weight=3.0,
    temporal_supervision_weight=10.0)


@pytest.mark.parametrize("name", sorted(FLAG_FILES))
def test_flag_files_resolve_to_the_settings_they_had(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = _resolved(f"--flagfile=configs/{name}.flags")
    assert config == FLAG_FILES[name]
    # Types too: the run's config.json is written from these values.
    assert json.dumps(dataclasses.asdict(config), default=list) == \
        json.dumps(dataclasses.asdict(FLAG_FILES[name]), default=list)


def test_explicit_flags_override_the_preset_wherever_they_stand():
    for argv in (["--preset=stabn_demo", "--depth=34", "--model=baseline"],
                 ["--depth=34", "--model=baseline", "--preset=stabn_demo"]):
        config = _resolved(*argv)
        assert (config.model, config.depth, config.image_size, config.batch_size) == \
            ("baseline", 34, 64, 16)
    # A flag given at its default value still overrides the preset's.
    assert _resolved("--preset=stabn_demo", "--image_size=224").image_size == 224
    assert _resolved() == TrainConfig()
    with pytest.raises(ConfigError, match="--preset: unknown preset 'ssv3'") as error:
        _resolved("--preset=ssv3")
    _known_names_listed(_one_line(error))


def test_every_setting_has_its_help_with_its_field():
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    for field in dataclasses.fields(TrainConfig):
        assert field.metadata["help"], field.name
        assert flag_values[field.name].help == field.metadata["help"]
    assert all(name in flag_values["preset"].help for name in presets.PRESETS)
