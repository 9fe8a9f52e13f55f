"""What both exported-model runners share: the config file beside the model (one writer,
one reader, the format exports have always written) and the clip-shape check."""

import json

import numpy as np
import pytest

import stabn_tf
from stabn_tf.inference.runner import (
    InferenceError,
    Runner,
    config_path,
    read_export_config,
    write_export_config,
)


def test_the_export_config_is_the_models_config_and_how_it_was_converted(tmp_path):
    model = stabn_tf.ResNet3D.from_preset("stabn_tiny", num_frames=4, image_size=32,
                                          num_classes=2, class_names=["a", "b"])
    path = str(tmp_path / "model.tflite")
    write_export_config(path, model, "tflite", quantize="none", integer_input=False,
                        keep_float=[])
    assert config_path(path) == str(tmp_path / "model.json")
    written = (tmp_path / "model.json").read_text()
    # The bytes the exports wrote before they shared this writer.
    assert written == json.dumps({**model.get_config(), "format": "tflite", "quantize": "none",
                                  "integer_input": False, "keep_float": []}, indent=1)
    assert read_export_config(path, "tflite", "not ours", lists=("class_names",)) == \
        json.loads(written)
    with pytest.raises(InferenceError, match=r"model.json: not ours$"):
        read_export_config(path, "openvino", "not ours")
    (tmp_path / "model.json").write_text("{")
    with pytest.raises(InferenceError, match=r"model.json: unreadable \("):
        read_export_config(path, "tflite", "not ours")


def test_clips_of_another_shape_are_one_line():
    runner = Runner()
    runner.preprocessor = stabn_tf.ClipPreprocessor(4, 32)
    assert runner.batched(np.zeros((4, 32, 32, 3))).shape == (1, 4, 32, 32, 3)
    assert runner.batched(np.zeros((2, 4, 32, 32, 3))).shape == (2, 4, 32, 32, 3)
    for shape in [(4, 33, 32, 3), (3, 32, 32, 3), (2, 4, 32, 32)]:
        with pytest.raises(InferenceError, match=rf"\(T, H, W\) = \(4, 32, 32\); got "
                                                 rf"\({shape[0]}, "):
            runner.batched(np.zeros(shape))
