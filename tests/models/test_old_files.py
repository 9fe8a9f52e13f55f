"""Files written before the preprocessor held the whole clip (crop ratio, mean and std)
still load, and give the numbers they gave then.

`tests/fixtures/saved_at_0dac71f` was written by the code of commit 0dac71f: a tiny ST-ABN
(`stabn_tiny` at 1/16 width, seed 3) saved as `checkpoints/final.keras`, the config its
TFLite export wrote beside the model (`final.json`), a run's `config.json`, and what the
model and its preprocessor gave then (`expected.json`).
"""

import json
import pathlib
import types

import keras
import numpy as np

from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.inference.runner import exported_preprocessor, read_export_config
from stabn_tf.models.stabn import STABN
from stabn_tf.runs import RunDirectory
from stabn_tf.training.trainer import TrainConfig, check_same_run, run_settings

OLD = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "saved_at_0dac71f"
EXPECTED = json.loads((OLD / "expected.json").read_text())
NAMES = [f"action {i}" for i in range(12)]


def test_an_old_keras_file_loads_with_the_default_clip_and_its_numbers():
    model = keras.saving.load_model(OLD / "checkpoints" / "final.keras")
    assert model.preprocessor.get_config() == ClipPreprocessor(4, 32).get_config()
    assert (model.preprocessor.crop_ratio, model.preprocessor.mean, model.preprocessor.std) \
        == (0.875, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    clip = np.linspace(-2, 2, 4 * 32 * 32 * 3, dtype=np.float32).reshape(1, 4, 32, 32, 3)
    outputs = model(clip, training=False)
    for name, values in EXPECTED["outputs"].items():
        np.testing.assert_allclose(np.asarray(outputs[name]), values, rtol=1e-5, atol=1e-6)
    frames = (np.arange(6 * 40 * 50 * 3) % 251).astype(np.uint8).reshape(6, 40, 50, 3)
    prepared = model.preprocessor.from_frames(frames)[0]
    np.testing.assert_allclose(prepared.reshape(-1)[::97], EXPECTED["prepared"], atol=1e-6)


def test_an_old_export_config_gives_its_model_and_preprocessor():
    config = read_export_config(str(OLD / "final.tflite"), "tflite", "not ours",
                                lists=("class_names",))
    assert exported_preprocessor(config, 4, 32, "final.json").get_config() == \
        ClipPreprocessor(4, 32).get_config()
    built = {k: v for k, v in config.items()
             if k not in ("format", "quantize", "integer_input", "keep_float")}
    model = STABN.from_config(built)
    assert model.class_names == NAMES and model.preprocessor.get_config() == \
        ClipPreprocessor(4, 32).get_config()


def test_an_old_run_config_is_the_same_run():
    run = RunDirectory(str(OLD))
    config = TrainConfig.from_preset("stabn_tiny", output_dir="run",
                                     train_files="data/train-*.tfrecord",
                                     val_files="data/validation-*.tfrecord")
    check_same_run(run, run_settings(config, types.SimpleNamespace(class_names=NAMES)))
    assert RunDirectory.of_checkpoint(OLD / "checkpoints" / "final.keras").path == str(OLD)
    assert run.read_config()["num_frames"] == 4
