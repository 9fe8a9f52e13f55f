"""`LiteRTRunner`: an exported TFLite model predicts like its Keras model, with the class
names and clip shape of the config the export writes beside it."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import stabn_tf
from stabn_tf.data import load_video
from stabn_tf.deploy import tflite
from stabn_tf.inference import InferenceError, LiteRTRunner, open_runner

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
    assert (runner.num_frames, runner.image_size) == (T, S)
    assert runner.class_names == names  # read from stabn.json next to the model
    prediction = runner.predict(runner.load(videos[0]))
    clip = load_video(videos[0], T, S)[None]
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
    path, _, _, _ = shipped
    runner = LiteRTRunner(path, num_threads=1, xnnpack=False)
    with pytest.raises(InferenceError, match=r"\(T, H, W\) = \(4, 32, 32\)"):
        runner.run(np.zeros((T, S + 1, S, 3), np.float32))
    assert runner.run(np.zeros((2, T, S, S, 3), np.float32))["probabilities"].shape == (2, K)
    with pytest.raises(InferenceError, match="3 class names in the model's config for 12"):
        LiteRTRunner(path, config={"class_names": ["a", "b", "c"]})
    bare = tmp_path / "bare.tflite"
    shutil.copy(path, bare)  # without its config: numbered classes
    assert LiteRTRunner(bare).class_names[:2] == ["class 0", "class 1"]


def test_predict_cli_runs_the_tflite_model_and_reports_bad_files(shipped, tmp_path):
    path, names, _, videos = shipped
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1aE\xdf\xa3 not really a video")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "stabn_tf.predict", f"--checkpoint={path}", str(videos[0]),
         str(broken), str(videos[1]), "--top_k=2", f"--output_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 1, result.stderr[-2000:]  # one file failed, the rest ran
    assert "broken.webm" in result.stderr and "error:" in result.stderr
    assert result.stdout.count("  1. ") == 2 and result.stdout.count("  2. ") == 2
    assert any(name in result.stdout for name in names)
    assert len(list(out.glob("*.png"))) == 2


def test_a_non_square_model_is_one_line(tmp_path):
    model = stabn_tf.build_stabn(num_classes=3, num_frames=2, image_size=(32, 64), depth=18,
                                 width_multiplier=0.125)
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
    with pytest.raises(InferenceError, match="--precision=fp16: choose from auto, float32"):
        open_runner(path, precision="fp16")
