"""`OpenVINORunner`: an exported IR predicts like its Keras model (the same `Prediction`),
reads its classes from the config beside it, runs in predict's CLI, and says in one line
what is wrong with a file it cannot use."""

import pathlib
import shutil
import sys

import numpy as np
import openvino as ov
import pytest

from stabn_tf.deploy import openvino as ovx
from stabn_tf.inference import InferenceError, KerasRunner, OpenVINORunner, open_runner
from stabn_tf.inference import openvino as ovr

#: The module's model is converted to OpenVINO IR first: not in the fast tier.
pytestmark = pytest.mark.slow

T, S, K = 4, 32, 12


@pytest.fixture(scope="module")
def shipped(tiny_tfrecords, tmp_path_factory, calibrated_stabn):
    """A float IR of a tiny ST-ABN with its config, the model, and two raw videos."""
    model = calibrated_stabn(T, S)
    path = tmp_path_factory.mktemp("shipped") / "stabn.xml"
    ovx.export_openvino(model, str(path))
    videos = sorted((pathlib.Path(tiny_tfrecords).parent / "raw").rglob("*.webm"))[:2]
    return path, model, videos


def test_prediction_is_the_keras_runners(shipped):
    path, model, videos = shipped
    runner = open_runner(path, precision="float32")
    assert isinstance(runner, OpenVINORunner) and runner.has_attention
    assert runner.preprocessor.get_config() == model.preprocessor.get_config()  # as saved
    assert runner.class_names == model.class_names and runner.name == model.name
    keras_runner = KerasRunner(model)
    clip = runner.load(videos[0], num_clips=2)
    got, want = runner.predict(clip), keras_runner.predict(clip)
    assert got.per_clip.shape == (2, K)  # two clips, one call each (batch 1)
    np.testing.assert_allclose(got.per_clip, want.per_clip, atol=1e-4)
    np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-4)
    np.testing.assert_allclose(got.spatial, want.spatial, atol=1e-4)
    np.testing.assert_allclose(got.temporal, want.temporal, atol=1e-4)
    assert got.top_k(3)[0][:2] == want.top_k(3)[0][:2]
    assert got.per_clip.dtype == np.float32 and got.temporal.dtype == np.float32


def test_bfloat16_runs_where_the_cpu_has_bf16_and_is_refused_elsewhere(shipped):
    path, model, videos = shipped
    if not ovr.cpu_supports_bfloat16(ov.Core()):
        assert OpenVINORunner(path).precision == "float32"  # auto
        with pytest.raises(InferenceError, match="this CPU has no bf16 units"):
            OpenVINORunner(path, precision="bfloat16")
        return
    assert OpenVINORunner(path).precision == "bfloat16"  # auto on a CPU with bf16 units
    runner = OpenVINORunner(path, precision="bfloat16", num_threads=1)
    clip = runner.load(videos[0])
    got, want = runner.predict(clip), KerasRunner(model).predict(clip)
    assert got.per_clip.dtype == np.float32
    assert np.abs(got.per_clip - want.per_clip).max() <= 0.05  # bf16: 8 mantissa bits
    assert np.argmax(got.probabilities) == np.argmax(want.probabilities)
    with pytest.raises(InferenceError, match=r"--precision=float16: choose from"):
        OpenVINORunner(path, precision="float16")


@pytest.mark.slow
def test_predict_cli_runs_the_ir(shipped, tmp_path, own_lines_only, python):
    path, model, videos = shipped
    out = tmp_path / "out"
    result = python("-m", "stabn_tf.predict", f"--checkpoint={path}", videos[0], videos[1],
                    "--top_k=2", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    own_lines_only(result)  # OpenVINO's and TensorFlow's lines stay out
    assert result.stdout.count("  1. ") == 2 and result.stdout.count("  2. ") == 2
    assert any(name in result.stdout for name in model.class_names)
    assert len(list(out.glob("*.png"))) == 2


def _copy(path: pathlib.Path, folder: pathlib.Path, *suffixes: str) -> pathlib.Path:
    folder.mkdir()
    for suffix in suffixes:
        shutil.copy(path.with_suffix(suffix), folder / f"m{suffix}")
    return folder / "m.xml"


def test_unusable_files_are_one_line(shipped, tmp_path):
    path, _, _ = shipped
    no_bin = _copy(path, tmp_path / "a", ".xml", ".json")
    with pytest.raises(InferenceError, match=r"m\.xml: its weights .*m\.bin is missing"):
        open_runner(no_bin)
    no_config = _copy(path, tmp_path / "b", ".xml", ".bin")
    with pytest.raises(InferenceError, match=r"m\.xml: its config .*m\.json is missing"):
        open_runner(no_config)
    not_ir = _copy(path, tmp_path / "c", ".bin", ".json")
    not_ir.write_text("<annotations><note>not a network</note></annotations>")
    with pytest.raises(InferenceError, match=r"m\.xml: not an OpenVINO IR \(") as error:
        open_runner(not_ir)
    assert "\n" not in str(error.value)
    foreign = _copy(path, tmp_path / "d", ".json")  # an IR, but of some other network
    x = ov.opset13.parameter([1, 8], np.float32, name="input")
    ov.save_model(ov.Model([ov.opset13.relu(x)], [x]), foreign, compress_to_fp16=False)
    with pytest.raises(InferenceError, match=r"m\.xml: not an ST-ABN IR \(inputs \['input'\]"):
        open_runner(foreign)
    wrong_config = _copy(path, tmp_path / "e", ".xml", ".bin")
    wrong_config.with_suffix(".json").write_text('{"format": "tflite"}')
    with pytest.raises(InferenceError, match="not the config of an OpenVINO export"):
        open_runner(wrong_config)
    with pytest.raises(InferenceError, match="no such model file"):
        open_runner(tmp_path / "missing.xml")
    with pytest.raises(InferenceError, match="an OpenVINO model explains with its own"):
        open_runner(path, method="gradcam")


def test_missing_openvino_is_one_line(monkeypatch, shipped):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(InferenceError, match=r'OpenVINO is not installed: pip install '
                                             r'"stabn_tf\[openvino\]"'):
        OpenVINORunner(shipped[0])
