"""The TF Serving SavedModel, loaded and called the way TF Serving calls it."""

import base64
import http.server
import json
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from stabn_tf import serving_client as client
from stabn_tf.data import make_dataset, preprocess, tfrecord
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.deploy import ExportError, saved_model
from stabn_tf.deploy.tflite import deployment_model
from stabn_tf.export.client import run_args as client_main
from stabn_tf.precision import PrecisionError

#: Every test here reads the module's SavedModel export (and a bf16 one): not in the fast tier.
pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[2]
T, S, K = 4, 32, 12  # K: the synthetic dataset's classes




@pytest.fixture(scope="module")
def exported(tmp_path_factory, calibrated_stabn):
    """A small calibrated ST-ABN, its class names (the model's own) and its SavedModel,
    loaded."""
    model = calibrated_stabn(T, S)
    out = tmp_path_factory.mktemp("serving")
    path = saved_model.export_saved_model(model, str(out), model_name="stabn")
    return model, list(model.class_names), path, tf.saved_model.load(path)


def _keras(model, clips):
    return {k: np.asarray(v) for k, v in deployment_model(model)(clips).items()}


def saved_model_cli() -> list[str]:
    """The `saved_model_cli` of the running interpreter's environment (activated or not):
    the script next to `sys.executable`, else TensorFlow's module."""
    script = pathlib.Path(sys.executable).with_name("saved_model_cli")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def test_tf_serving_layout_and_versions(exported, tmp_path):
    model, labels, path, _ = exported
    assert pathlib.Path(path).parts[-2:] == ("stabn", "1")
    assert (pathlib.Path(path) / "saved_model.pb").exists()
    assert [p.name for p in pathlib.Path(path).parent.iterdir()] == ["1"]  # no staging left
    # Every weight stored once (Keras alone writes each twice: keras-team/keras#23553).
    shapes = tf.train.load_checkpoint(f"{path}/variables/variables").get_variable_to_shape_map()
    stored = sum(int(np.prod(shape)) for key, shape in shapes.items()
                 if not key.startswith("_CHECKPOINTABLE"))
    assert stored == sum(int(np.prod(v.shape)) for v in model.variables)  # incl. RNG seeds
    # Next version by default, no silent overwrite, explicit overwrite allowed.
    base = tmp_path / "models"
    (base / "stabn" / "3").mkdir(parents=True)
    assert saved_model.next_version(str(base / "stabn")) == 4
    with pytest.raises(ExportError, match="exists"):
        saved_model.export_saved_model(model, str(base), version=3)
    assert sorted(p.name for p in (base / "stabn").iterdir()) == ["3"]


@pytest.mark.slow
@pytest.mark.e2e  # TensorFlow's own console script
def test_saved_model_cli_lists_both_signatures(exported):
    _, _, path, _ = exported
    result = subprocess.run([*saved_model_cli(), "show", "--dir", path, "--all"],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr
    for needle in ("signature_def['serving_default']", "signature_def['serve_examples']",
                   "inputs['frames']", "DT_UINT8", "inputs['examples']", "DT_STRING",
                   "outputs['top_k_labels']", "outputs['spatial_attention']",
                   "outputs['temporal_attention']", "outputs['probabilities']"):
        assert needle in result.stdout, needle


def test_serving_default_on_uint8_frames_matches_keras(exported):
    model, labels, _, loaded = exported
    fn = loaded.signatures["serving_default"]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, T, 45, 60, 3), dtype=np.uint8)  # any H, W
    got = {k: v.numpy() for k, v in fn(frames=tf.constant(frames)).items()}
    # The eval pipeline's geometry: centre square of 224/256 of the short side → S.
    window = preprocess.eval_crop_window(45, 60).numpy()
    y, x, h, w = (int(v) for v in window)
    cropped = frames[:, :, y:y + h, x:x + w]
    clips = preprocess.color_normalize(preprocess.resize_frames(cropped, S))
    np.testing.assert_allclose(model.preprocessor(frames), clips, atol=1e-5)  # what it runs
    want = _keras(model, clips)
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    np.testing.assert_allclose(got["spatial_attention"], want["spatial_attention"], atol=1e-5)
    np.testing.assert_allclose(got["temporal_attention"], want["temporal_attention"], atol=1e-5)
    assert got["spatial_attention"].shape == (2, T, S // 16, S // 16)
    assert got["top_k_indices"].shape == (2, 5)
    np.testing.assert_array_equal(got["top_k_indices"][:, 0], want["probabilities"].argmax(-1))
    names = [[s.decode() for s in row] for row in got["top_k_labels"]]
    assert names == [[labels[i] for i in row] for row in got["top_k_indices"]]
    np.testing.assert_allclose(
        got["top_k_probabilities"],
        np.take_along_axis(got["probabilities"], got["top_k_indices"], axis=1), atol=1e-7)


def test_serve_examples_equals_the_eval_pipeline(exported, tiny_tfrecords):
    model, _, _, loaded = exported
    pattern = f"{tiny_tfrecords}/validation-*.tfrecord"
    records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)))]
    got = loaded.signatures["serve_examples"](examples=tf.constant(records[:4]))
    data = make_dataset(sorted(tf.io.gfile.glob(pattern)), training=False, batch_size=4,
                        preprocessor=ClipPreprocessor(T, S), cycle_length=1)
    clips, _ = next(iter(data))
    want = _keras(model, clips)
    for key in ("probabilities", "spatial_attention", "temporal_attention"):
        np.testing.assert_allclose(got[key].numpy(), want[key], atol=1e-4, err_msg=key)


@pytest.mark.parametrize("shape, dtype, message", [
    ((T, 32, 32, 3), np.uint8, r"\[batch, 4, height, width, 3\].*got shape\] \[4 32 32 3\]"),
    ((1, T + 1, 32, 32, 3), np.uint8, r"T=4 RGB frames.*\[1 5 32 32 3\]"),
    ((1, T, 32, 32, 4), np.uint8, r"\[1 4 32 32 4\]"),
    ((1, T, 32, 32, 3), np.float32, r"expected to be a uint8 tensor but is a float"),
])
def test_bad_frames_are_invalid_argument_naming_what_was_expected(exported, shape, dtype,
                                                                  message):
    _, _, _, loaded = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_default"](frames=tf.zeros(shape, dtype))


def test_float_arrays_are_cast_by_tf_before_the_graph_so_frames_tensor_refuses_them(exported):
    """Issue 15 item 8: TF's Python binding converts a NumPy array to the signature's uint8
    before the graph runs (no graph can see it); `frames_tensor` refuses what would change."""
    _, _, _, loaded = exported
    fn = loaded.signatures["serving_default"]
    shape = (1, T, 32, 32, 3)
    cast = fn(frames=np.full(shape, 300.7, np.float32))["probabilities"].numpy()
    wrapped = fn(frames=np.full(shape, 44, np.uint8))["probabilities"].numpy()
    np.testing.assert_array_equal(cast, wrapped)  # 300.7 → 44: why the check is needed
    for bad, message in [(np.full(shape, 0.5, np.float32), r"got float32 values in \[0.5"),
                         (np.full(shape, 300), r"got int64 values in \[300, 300\]"),
                         (tf.zeros(shape, tf.float32), "got a float32 tensor")]:
        with pytest.raises(ValueError, match=message):
            saved_model.frames_tensor(bad)
    assert saved_model.frames_tensor(np.full(shape, 7)).dtype == tf.uint8  # ints 0..255 pass
    np.testing.assert_array_equal(
        fn(frames=saved_model.frames_tensor(np.full(shape, 44)))["probabilities"], wrapped)


def test_bad_examples_are_invalid_argument(exported):
    _, _, _, loaded = exported
    fn = loaded.signatures["serve_examples"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"1-D string tensor \[batch\]"):
        fn(examples=tf.constant(b"not a batch"))
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(examples=tf.constant([b"not a SequenceExample"]))
    empty = tfrecord.make_sequence_example("x", 0, "a", [b"\xff\xd8"])[:0]
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(examples=tf.constant([empty]))  # no frames at all


def test_client_sequence_example_is_the_project_format():
    jpegs = [tf.io.encode_jpeg(np.full((8, 8, 3), i * 40, np.uint8)).numpy() for i in range(3)]
    parsed = tfrecord.parse_sequence_example(client.sequence_example(jpegs, clip_id="c1"))
    assert parsed[tfrecord.CLIP_ID].numpy() == b"c1"
    assert list(parsed[tfrecord.IMAGE_ENCODED].numpy()) == jpegs
    proto = tf.train.SequenceExample.FromString(client.sequence_example(jpegs))
    assert proto.context.feature[tfrecord.NUM_FRAMES].int64_list.value == [3]


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST predict API (row format) in front of a loaded SavedModel."""

    signatures = None
    received = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        _FakeServing.received += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = body.get("signature_name", "serving_default")
        try:
            assert self.path.endswith("/v1/models/stabn:predict"), self.path
            values = [base64.b64decode(i["b64"]) if isinstance(i, dict) else i
                      for i in body["instances"]]
            key = "examples" if name == "serve_examples" else "frames"
            dtype = tf.string if key == "examples" else tf.uint8
            out = self.signatures[name](**{key: tf.constant(values, dtype)})
            rows = [{k: (v.numpy()[i].astype(str).tolist() if v.dtype == tf.string
                         else v.numpy()[i].tolist()) for k, v in out.items()}
                    for i in range(len(values))]
            reply, status = {"predictions": rows}, 200
        except (tf.errors.InvalidArgumentError, AssertionError, KeyError, TypeError,
                ValueError) as e:
            reply, status = {"error": str(e)[:500]}, 400
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server(exported):
    _FakeServing.signatures = exported[3].signatures
    _FakeServing.received = 0
    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_rest_client_round_trip(exported, fake_server, tiny_tfrecords, capsys):
    _, labels, _, _ = exported
    pattern = f"{tiny_tfrecords}/validation-*.tfrecord"
    assert client_main(["--server", fake_server, "--tfrecord", pattern,
                        "--max_examples", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" record ") == 2 and "when (temporal attention)" in printed
    assert any(name in printed for name in labels)
    # The shipped request example is a valid serve_examples request for any T.
    body = json.loads((ROOT / "export" / "request_example.json").read_text())
    predictions = client.predict(fake_server, "stabn", body)
    assert len(predictions) == 1 and len(predictions[0]["temporal_attention"]) == T
    assert predictions[0]["top_k_labels"][0] in labels
    # A bad request comes back as the server's error message.
    with pytest.raises(RuntimeError, match="(?s)HTTP 400.*1-D string tensor"):
        client.predict(fake_server, "stabn", {"signature_name": "serve_examples",
                                              "instances": [["x", "y"]]})


def test_client_refuses_float_frames_before_sending(exported, fake_server, tmp_path, capsys):
    """Issue 15 item 8 over REST: normalised floats (or values beyond 0..255) for the uint8
    `frames` are refused by the client in one line, and nothing reaches the server."""
    frames = np.zeros((T, 8, 8, 3), np.uint8).tolist()
    frames[1][2][3][0] = -0.42
    request = tmp_path / "floats.json"
    request.write_text(json.dumps({"instances": [frames]}))
    assert client_main(["--server", fake_server, "--request", str(request)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["stabn_tf.export.client: error: instances[0][1][2][3][0] = -0.42: "
                   "serving_default takes uint8 RGB frames (integers 0..255) and would not "
                   "see this value as sent; send pixel values, not normalised floats"], err
    for body in ({"signature_name": "serving_default", "inputs": {"frames": [[[[[256]]]]]}},
                 {"instances": [{"frames": [[[[True]]]]}]}):
        with pytest.raises(ValueError, match="integers 0..255"):
            client.predict(fake_server, "stabn", body)
    assert _FakeServing.received == 0
    pixels = np.zeros((1, T, 8, 8, 3), np.uint8).tolist()
    assert len(client.predict(fake_server, "stabn", {"instances": pixels})) == 1


@pytest.mark.slow
def test_cli_exports_the_keras_file_alone(exported, tmp_path, own_lines_only, python,
                                          run_command):
    model, _, _, _ = exported
    model.save(tmp_path / "final.keras")  # no run directory, no labels: the model knows
    args = ["export.saved_model", f"--checkpoint={tmp_path}/final.keras",
            f"--output_dir={tmp_path}/out", "--model_name=demo", "--version=7"]
    result = python("-m", *args)  # a fresh process: its start-up lines are checked too
    assert result.returncode == 0, result.stderr[-3000:]
    own_lines_only(result)  # no "Saved artifact at", no "Assets written to"
    assert f"wrote {tmp_path}/out/demo/7" in result.stdout
    assert "12 classes" in result.stdout and "self-check" in result.stdout
    diff = float(result.stdout.split("max |Δ probabilities| = ")[1].split()[0])
    assert "computes in float32" in result.stdout and "(tolerance 0.0001)" in result.stdout
    assert diff <= 1e-5
    missing = run_command("export.saved_model", f"--checkpoint={tmp_path}/nope.keras")
    assert missing.returncode == 2 and "no such checkpoint file" in missing.stderr
    bad = run_command(*args, "--precision=float16")
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "stabn_tf.export.saved_model: error: --precision=float16: choose from auto, float32, " \
        "bfloat16"


def test_bfloat16_export_same_signatures_float32_out(exported, tmp_path):
    """`precision="bfloat16"`: the same signatures and float32 outputs, bf16 inside, within
    the self-check's tolerance of Keras float32; a failing check publishes nothing."""
    model, _, _, float_loaded = exported
    path = saved_model.export_saved_model(model, str(tmp_path), precision="bfloat16")
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == set(float_loaded.signatures)
    for name in loaded.signatures:
        signature, reference = loaded.signatures[name], float_loaded.signatures[name]
        assert signature.structured_input_signature == reference.structured_input_signature
        assert signature.structured_outputs == reference.structured_outputs
    graph = loaded.signatures["serving_default"].graph.as_graph_def()
    bf16_convs = [node for function in graph.library.function for node in function.node_def
                  if node.op.startswith("Conv2D") and node.attr["T"].type == tf.bfloat16]
    assert bf16_convs, "no bf16 convolution in the exported graph"
    frames = np.random.default_rng(1).integers(0, 256, (2, T, 40, 40, 3), dtype=np.uint8)
    got = loaded.signatures["serving_default"](frames=tf.constant(frames))
    want = _keras(model, model.preprocessor(frames))
    tolerance = saved_model.SELF_CHECK_TOLERANCE["bfloat16"]
    for key in ("probabilities", "spatial_attention", "temporal_attention"):
        assert got[key].dtype == tf.float32
        np.testing.assert_allclose(got[key].numpy(), want[key], atol=tolerance, err_msg=key)
    assert saved_model.self_check(path, model, "bfloat16") <= tolerance
    with pytest.raises(ExportError, match="self-check failed: the float32 SavedModel"):
        saved_model.self_check(path, model, "float32")  # bf16 is not float32-exact

    def fail(staged):
        raise ExportError("no")

    with pytest.raises(ExportError, match="no"):
        saved_model.export_saved_model(model, str(tmp_path), version=5, check=fail)
    assert sorted(p.name for p in (tmp_path / "stabn").iterdir()) == ["1"]
    with pytest.raises(PrecisionError, match="--precision=float16: choose from auto, float32, "
                                             "bfloat16"):
        saved_model.export_saved_model(model, str(tmp_path), precision="float16")
