"""`LiteRTRunner`: an exported TFLite model predicts like its Keras model, with the class
names and clip shape of the config the export writes beside it."""

import json
import pathlib
import shutil

import keras
import numpy as np
import pytest

import stabn_tf
from stabn_tf.data import ClipPreprocessor, load_video
from stabn_tf.deploy import tflite
from stabn_tf.inference import InferenceError, LiteRTRunner, open_runner
from stabn_tf.precision import PrecisionError

#: The module's model is converted to TFLite first: not in the fast tier.
pytestmark = pytest.mark.slow

T, S, K = 4, 32, 12


@pytest.fixture(scope="module")
def shipped(tiny_tfrecords, tmp_path_factory, calibrated_stabn):
    """A float32 TFLite ST-ABN exported with its config JSON, its Keras reference, its
    class names, and two of the synthetic set's raw videos."""
    model = calibrated_stabn(T, S)
    path = tmp_path_factory.mktemp("shipped") / "stabn.tflite"
    tflite.export_tflite(model, str(path))
    videos = sorted((pathlib.Path(tiny_tfrecords).parent / "raw").rglob("*.webm"))[:2]
    return path, list(model.class_names), tflite.deployment_model(model), videos


def test_prediction_matches_keras_and_names_classes_from_the_config(shipped):
    path, names, reference, videos = shipped
    runner = open_runner(path)
    assert isinstance(runner, LiteRTRunner) and runner.has_attention
    assert (runner.preprocessor.num_frames, runner.preprocessor.image_size) == (T, S)
    assert runner.class_names == names  # read from stabn.json next to the model
    prediction = runner.predict(runner.load(videos[0]))
    clip = load_video(videos[0], runner.preprocessor)[None]
    want = {k: np.asarray(v)[0] for k, v in reference(clip).items()}
    order = np.argsort(-want["probabilities"])[:3]
    top = prediction.top_k(3)
    assert [i for i, _, _ in top] == list(order)
    assert [name for _, name, _ in top] == [names[i] for i in order]
    np.testing.assert_allclose([p for _, _, p in top], want["probabilities"][order], atol=1e-4)
    np.testing.assert_allclose(prediction.temporal[0], want["temporal_attention"], atol=1e-4)
    np.testing.assert_allclose(prediction.spatial[0], want["spatial_attention"], atol=1e-4)
    assert json.loads(json.dumps(prediction.to_json(3)))["top_k"][0]["label"] == names[order[0]]


def test_runner_checks_its_inputs_and_config(shipped, tmp_path):
    path, names, _, _ = shipped
    runner = LiteRTRunner(path, num_threads=1, xnnpack=False)
    with pytest.raises(InferenceError, match=r"\(T, H, W\) = \(4, 32, 32\)"):
        runner.run(np.zeros((T, S + 1, S, 3), np.float32))
    assert runner.run(np.zeros((2, T, S, S, 3), np.float32))["probabilities"].shape == (2, K)
    with pytest.raises(InferenceError, match="3 class names in the model's config for 12"):
        LiteRTRunner(path, config={"class_names": ["a", "b", "c"]})
    bare = tmp_path / "bare.tflite"
    shutil.copy(path, bare)  # without its config: classes and clips unknown, refused
    with pytest.raises(InferenceError, match=r"bare.tflite: a TFLite model without its "
                                             r"stabn_tf config \(.*bare.json is missing\)"):
        LiteRTRunner(bare)
    (tmp_path / "bare.json").write_text(json.dumps({"class_names": names, "format": "tflite",
                                                    "num_frames": 8, "image_size": S}))
    with pytest.raises(InferenceError, match="bare.json describes clips of 8 frames of 32, "
                                             ".*bare.tflite takes 4 frames of 32"):
        LiteRTRunner(bare)
    config = json.loads(path.with_suffix(".json").read_text())
    old = {k: v for k, v in config.items() if k != "preprocessor"}  # exported before it
    (tmp_path / "bare.json").write_text(json.dumps(old))
    assert LiteRTRunner(bare).preprocessor.get_config() == \
        ClipPreprocessor(T, S).get_config() == config["preprocessor"]["config"]
    config["preprocessor"]["config"]["num_frames"] = 8
    (tmp_path / "bare.json").write_text(json.dumps(config))
    with pytest.raises(InferenceError, match="bare.json has a preprocessor for 8 frames of 32, "
                                             "the model takes 4 frames of 32"):
        LiteRTRunner(bare)
    (tmp_path / "bare.json").write_text(json.dumps({"labels": names}))
    with pytest.raises(InferenceError, match="bare.json: not the config of a stabn_tf "
                                             "TFLite export"):
        LiteRTRunner(bare)
    bytes_only = LiteRTRunner(model_content=path.read_bytes())  # the export's parity check
    assert bytes_only.class_names[:2] == ["class 0", "class 1"]


def _foreign_tflite(folder):
    """A plain Keras Dense model as TFLite, and the same flatbuffer without signatures."""
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")])
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (folder / "dense.tflite").write_bytes(flatbuffer)
    stripped = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    stripped.signatureDefs = []
    (folder / "nosig.tflite").write_bytes(
        bytes(flatbuffer_utils.convert_object_to_bytearray(stripped)))
    return folder / "dense.tflite", folder / "nosig.tflite"


def test_foreign_tflite_models_are_one_line(shipped, tmp_path, run_command):
    """Issue 23 item 2: a .tflite without signatures, or another model with one, is one
    line saying what it is and what is expected; predict creates nothing for it."""
    dense, nosig = _foreign_tflite(tmp_path)
    with pytest.raises(InferenceError, match=r"nosig.tflite: a TFLite model with 0 signatures "
                                             r"\(none\); expected a model exported by"):
        open_runner(nosig)
    with pytest.raises(InferenceError) as error:
        open_runner(dense)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{dense}: a TFLite model with input(s) ")
    assert "[1, 10] and output(s) output_0 [1, 3], not an ST-ABN/baseline export; expected " \
        "a model exported by `python -m export.tflite`" in message
    out = tmp_path / "out"
    result = run_command("stabn_tf.predict", f"--checkpoint={nosig}", shipped[3][0],
                         f"--output_dir={out}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"stabn_tf.predict: error: {nosig}: a TFLite model with 0 signatures")
    assert not out.exists()


@pytest.mark.slow
def test_predict_cli_runs_the_tflite_model_and_reports_bad_files(shipped, tmp_path,
                                                                 own_lines_only, python):
    path, names, _, videos = shipped
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1aE\xdf\xa3 not really a video")
    out = tmp_path / "out"
    result = python("-m", "stabn_tf.predict", f"--checkpoint={path}", videos[0], broken,
                    videos[1], "--top_k=2", f"--output_dir={out}")
    assert result.returncode == 1, result.stderr[-2000:]  # one file failed, the rest ran
    assert "broken.webm" in result.stderr and "error:" in result.stderr
    # Only our own lines: no LiteRT "Created TensorFlow Lite XNNPACK delegate", no warnings.
    own_lines_only(result)
    assert result.stdout.count("  1. ") == 2 and result.stdout.count("  2. ") == 2
    assert any(name in result.stdout for name in names)
    assert len(list(out.glob("*.png"))) == 2


def test_a_non_square_model_is_one_line(tmp_path):
    model = stabn_tf.STABN.from_preset("stabn_tiny", num_classes=3, num_frames=2,
                                       image_size=(32, 64))
    flatbuffer = tflite.convert_to_tflite(tflite.deployment_model(model, edge=True))
    path = tmp_path / "wide.tflite"
    path.write_bytes(flatbuffer)
    with pytest.raises(InferenceError, match="32×64 frames; clip preparation makes square"):
        open_runner(path)


def test_a_tflite_model_computes_in_its_own_precision(shipped):
    path, _, _, videos = shipped
    runner = open_runner(path)  # auto: the model's own
    assert runner.precision == "float32" and runner.precision_choice.requested == "auto"
    assert runner.predict(runner.load(videos[0])).precision == "float32"
    assert open_runner(path, precision="float32").precision == "float32"
    with pytest.raises(InferenceError) as err:
        open_runner(path, precision="bfloat16")
    assert str(err.value) == (f"--precision=bfloat16: {path} computes in float32, the "
                              "precision it was exported in; use --precision=auto, or the "
                              ".keras checkpoint")
    with pytest.raises(PrecisionError, match="--precision=fp16: choose from auto, float32"):
        open_runner(path, precision="fp16")
