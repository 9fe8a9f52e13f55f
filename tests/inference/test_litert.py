"""`stabn_tf.lite`: a shipped TFLite model on video files, like `predict`."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from stabn_tf import tflite
from stabn_tf.data import load_video, write_labels
from stabn_tf.lite import LiteModel, format_prediction, sparkline

ROOT = pathlib.Path(__file__).resolve().parents[1]
T, S, K = 4, 32, 12


@pytest.fixture(scope="module")
def shipped(tiny_tfrecords, tmp_path_factory, calibrated_stabn):
    """A float32 TFLite ST-ABN with labels.txt beside it, its Keras reference, and two
    of the synthetic set's raw videos."""
    model = calibrated_stabn(T, S)
    directory = tmp_path_factory.mktemp("shipped")
    path = directory / "stabn.tflite"
    edge = tflite.deployment_model(model, edge=True, batch_size=1)
    path.write_bytes(tflite.convert_to_tflite(edge))
    labels = (pathlib.Path(tiny_tfrecords) / "labels.txt").read_text().splitlines()
    write_labels(directory / "labels.txt", labels)
    videos = sorted((pathlib.Path(tiny_tfrecords).parent / "raw").rglob("*.webm"))[:2]
    return path, labels, tflite.deployment_model(model), videos


def test_predict_video_matches_keras_and_names_classes(shipped):
    path, labels, reference, videos = shipped
    lite = LiteModel(path)
    assert (lite.num_frames, lite.height, lite.width) == (T, S, S)
    assert lite.labels == labels  # read from labels.txt next to the model
    result = lite.predict_video(videos[0], top_k=3)
    want = {k: np.asarray(v)[0] for k, v in reference(load_video(videos[0], T, S)[None]).items()}
    order = np.argsort(-want["probabilities"])[:3]
    assert [i for i, _, _ in result.top_k] == list(order)
    assert [name for _, name, _ in result.top_k] == [labels[i] for i in order]
    np.testing.assert_allclose([p for _, _, p in result.top_k], want["probabilities"][order],
                               atol=1e-4)
    np.testing.assert_allclose(result.temporal_attention, want["temporal_attention"], atol=1e-4)
    np.testing.assert_allclose(result.spatial_attention, want["spatial_attention"], atol=1e-4)
    text = format_prediction(result)
    assert labels[order[0]] in text and "when" in text and "where" in text
    assert json.loads(json.dumps(result.to_json()))["top_k"][0]["label"] == labels[order[0]]


def test_lite_model_checks_its_inputs(shipped):
    path, labels, _, _ = shipped
    lite = LiteModel(path, labels=labels, num_threads=1, xnnpack=False)
    with pytest.raises(ValueError, match=r"\(T, H, W\) = \(4, 32, 32\)"):
        lite(np.zeros((T, S + 1, S, 3), np.float32))
    assert lite(np.zeros((2, T, S, S, 3), np.float32))["probabilities"].shape == (2, K)
    with pytest.raises(ValueError, match="3 class names for a model with 12"):
        LiteModel(path, labels=["a", "b", "c"])


def test_cli_prints_predictions_writes_pictures_and_reports_bad_files(shipped, tmp_path):
    path, labels, _, videos = shipped
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1aE\xdf\xa3 not really a video")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "stabn_tf.lite", str(path), str(videos[0]), str(broken),
         str(videos[1]), "--top_k=2", f"--output_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 1, result.stderr[-2000:]  # one file failed, the rest ran
    assert "broken.webm" in result.stderr and "error:" in result.stderr
    assert result.stdout.count("  1. ") == 2 and result.stdout.count("  2. ") == 2
    assert any(name in result.stdout for name in labels)
    for video in videos:
        stem = video.stem
        assert json.loads((out / f"{stem}.json").read_text())["video"] == str(video)
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    usage = subprocess.run([sys.executable, "-m", "stabn_tf.lite"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_sparkline():
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
