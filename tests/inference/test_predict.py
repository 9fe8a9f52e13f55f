"""`stabn_tf.predict`: input loading parity, top-k output, and good + corrupt files in one call."""

import json
import os
import subprocess
import sys

import av
import keras
import numpy as np
import pytest
from PIL import Image

import stabn_tf
from stabn_tf import data as data_lib
from stabn_tf import predict

TINY = dict(num_classes=6, num_frames=4, image_size=32, depth=18, width_multiplier=0.125)
NAMES = ["pushing", "pulling", "lifting", "dropping", "turning", "waving"]


def write_video(path, num_frames=10, height=40, width=48):
    """A small H.264 mp4 of a bright square moving right; returns its frames."""
    frames = np.full((num_frames, height, width, 3), 60, np.uint8)
    for t in range(num_frames):
        x = 4 + 3 * t
        frames[t, 12:24, x:x + 10] = (250, 40, 40)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return frames


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(1)
    stabn_tf.build_stabn(**TINY).save(root / "stabn.keras")
    stabn_tf.build_baseline(**TINY).save(root / "baseline.keras")
    (root / "labels.txt").write_text("\n".join(NAMES) + "\n")
    write_video(root / "good.mp4")
    corrupt = (root / "good.mp4").read_bytes()
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + corrupt[400:600])
    folder = root / "frames"
    folder.mkdir()
    decoded = data_lib.decode_video(root / "good.mp4").frames
    for i, frame in enumerate(decoded):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")  # lossless: same pixels
    return root


def test_load_clip_matches_the_eval_loader(inputs):
    loaded = predict.load_clip(inputs / "good.mp4", 4, 32)
    np.testing.assert_allclose(loaded.clips[0], data_lib.load_video(inputs / "good.mp4", 4, 32),
                               atol=1e-6)
    np.testing.assert_array_equal(loaded.frames[0],
                                  data_lib.load_video_frames(inputs / "good.mp4", 4, 32))
    np.testing.assert_array_equal(loaded.frame_indices, [[1, 3, 6, 8]])  # centre of 4 segments
    assert loaded.num_source_frames == 10
    two = predict.load_clip(inputs / "good.mp4", 4, 32, num_clips=2)
    assert two.clips.shape == (2, 4, 32, 32, 3)
    folder = predict.load_clip(inputs / "frames", 4, 32)
    np.testing.assert_allclose(folder.clips, loaded.clips, atol=1e-6)
    assert folder.fps is None


def test_frame_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(data_lib.VideoReadError, match="no .jpg"):
        predict.read_frame_folder(tmp_path)
    (tmp_path / "00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data_lib.VideoReadError, match="00001.jpg: unreadable frame"):
        predict.read_frame_folder(tmp_path)


def test_predict_paths_text_output_and_baseline(inputs):
    model = keras.saving.load_model(inputs / "stabn.keras")
    predictor = predict.Predictor(model, NAMES, top_k=3)
    predictions, errors = predict.predict_paths(
        predictor, [str(inputs / "good.mp4"), str(inputs / "missing.mp4")])
    assert len(predictions) == 1 and errors[0]["path"].endswith("missing.mp4")
    assert "missing.mp4: cannot access file" in errors[0]["error"]
    p = predictions[0]
    probs = [prob for _, _, prob in p.top_k]
    assert len(p.top_k) == 3 and probs == sorted(probs, reverse=True)
    assert len(p.temporal_attention) == 1 and len(p.temporal_attention[0]) == 4
    text = predict.format_prediction(p)
    assert text.splitlines()[0].endswith("good.mp4")
    assert f"1. {p.top_k[0][1]}" in text and "1: " in text and "temporal attention" in text
    baseline = predict.Predictor(keras.saving.load_model(inputs / "baseline.keras"), NAMES)
    b = baseline.predict(predict.load_clip(inputs / "good.mp4", 4, 32, num_clips=2))
    assert b.temporal_attention is None and "temporal" not in predict.format_prediction(b)
    assert len(b.top_k) == 5 and len(b.frame_indices) == 2


def test_class_names_from_labels_file_run_config_or_numbers(inputs, tmp_path):
    assert predict.resolve_class_names("x.keras", str(inputs / "labels.txt"), 6) == NAMES
    with pytest.raises(ValueError, match="lists 6 classes but the model has 5"):
        predict.resolve_class_names("x.keras", str(inputs / "labels.txt"), 5)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"dataset": "synthetic"}))
    from stabn_tf.data.synthetic import CLASSES

    names = predict.resolve_class_names(str(run / "checkpoints" / "final.keras"), "",
                                        len(CLASSES))
    assert names == list(CLASSES)
    assert predict.resolve_class_names(str(tmp_path / "m.keras"), "", 3) == \
        ["class 0", "class 1", "class 2"]


def test_cli_good_and_corrupt_file_in_one_call(inputs):
    cmd = [sys.executable, "-m", "stabn_tf.predict", str(inputs / "good.mp4"),
           str(inputs / "corrupt.mp4"), str(inputs / "frames"),
           f"--checkpoint={inputs / 'stabn.keras'}", f"--labels={inputs / 'labels.txt'}",
           "--json"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 1, result.stderr[-3000:]  # one input failed
    out = json.loads(result.stdout)
    assert [p["path"] for p in out["predictions"]] == [str(inputs / "good.mp4"),
                                                       str(inputs / "frames")]
    first = out["predictions"][0]
    assert [e["label"] in NAMES for e in first["top_k"]] == [True] * 5
    assert abs(sum(e["probability"] for e in first["top_k"]) - 1.0) < 0.2
    assert len(first["temporal_attention"][0]) == 4
    assert first["frame_indices"] == [[1, 3, 6, 8]]
    assert len(out["errors"]) == 1 and out["errors"][0]["path"] == str(inputs / "corrupt.mp4")
    errors = [line for line in result.stderr.splitlines() if "stabn_tf.predict: error" in line]
    assert len(errors) == 1 and str(inputs / "corrupt.mp4") in errors[0]
