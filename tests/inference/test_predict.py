"""`stabn_tf.predict` and the runner under it: input loading parity, top-k output, good +
corrupt files in one call, one-line errors, no TensorFlow start-up noise."""

import json
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

import stabn_tf
from stabn_tf import data as data_lib
from stabn_tf.data.video import write_video as encode_video
from stabn_tf.inference import InferenceError, KerasRunner, load_clip, open_runner, run_inputs
from stabn_tf.models.policy import model_precision
from stabn_tf.precision import PrecisionError, resolve_precision

TINY = dict(num_classes=6)  # overrides of the stabn_tiny preset
NAMES = ["pushing", "pulling", "lifting", "dropping", "turning", "waving"]


def write_video(path, num_frames=10, height=40, width=48):
    """A small H.264 mp4 of a bright square moving right; returns its frames."""
    frames = np.full((num_frames, height, width, 3), 60, np.uint8)
    for t in range(num_frames):
        x = 4 + 3 * t
        frames[t, 12:24, x:x + 10] = (250, 40, 40)
    encode_video(str(path), frames, 10, "libx264", format="mp4")
    return frames


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(1)
    stabn_tf.STABN.from_preset("stabn_tiny", **TINY, class_names=NAMES).save(root / "stabn.keras")
    stabn_tf.ResNet3D.from_preset("stabn_tiny", **TINY, class_names=NAMES).save(
        root / "baseline.keras")
    write_video(root / "good.mp4")
    corrupt = (root / "good.mp4").read_bytes()
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + corrupt[400:600])
    folder = root / "frames"
    folder.mkdir()
    decoded = data_lib.decode_video(root / "good.mp4").frames
    for i, frame in enumerate(decoded):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")  # lossless: same pixels
    return root


#: TensorFlow's own log level left unset: a fresh process shows all its start-up output.
LOUD = {"TF_CPP_MIN_LOG_LEVEL": None}


def test_load_clip_matches_the_eval_loader(inputs):
    preprocessor = data_lib.ClipPreprocessor(4, 32)
    loaded = load_clip(inputs / "good.mp4", preprocessor)
    np.testing.assert_allclose(loaded.clips[0],
                               data_lib.load_video(inputs / "good.mp4", preprocessor), atol=1e-6)
    np.testing.assert_array_equal(loaded.frame_indices, [[1, 3, 6, 8]])  # centre of 4 segments
    assert loaded.frames.dtype == np.uint8 and loaded.frames.shape == (1, 4, 32, 32, 3)
    # The shown pixels are the model's input, denormalised.
    np.testing.assert_allclose(data_lib.normalize(loaded.frames[0]), loaded.clips[0], atol=0.05)
    two = load_clip(inputs / "good.mp4", preprocessor, num_clips=2)
    assert two.clips.shape == (2, 4, 32, 32, 3)
    folder = load_clip(inputs / "frames", preprocessor)
    np.testing.assert_allclose(folder.clips, loaded.clips, atol=1e-6)
    assert folder.fps is None and folder.name == "frames" and loaded.name == "good"


def test_frame_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(data_lib.VideoReadError, match="no .jpg"):
        data_lib.read_frame_folder(tmp_path)
    (tmp_path / "00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(data_lib.VideoReadError, match="00001.jpg: unreadable frame"):
        data_lib.read_frame_folder(tmp_path)


@pytest.mark.slow
def test_runner_predictions_text_output_and_baseline(inputs):
    runner = open_runner(inputs / "stabn.keras")
    assert runner.class_names == NAMES
    assert (runner.preprocessor.num_frames, runner.preprocessor.image_size) == (4, 32)
    predictions, errors = run_inputs(runner, [str(inputs / "good.mp4"),
                                              str(inputs / "missing.mp4")])
    assert len(predictions) == 1 and errors[0]["path"].endswith("missing.mp4")
    assert "missing.mp4: cannot access file" in errors[0]["error"]
    p = predictions[0]
    top = p.top_k(3)
    probs = [prob for _, _, prob in top]
    assert len(top) == 3 and probs == sorted(probs, reverse=True)
    assert p.temporal.shape == (1, 4) and p.spatial.shape == (1, 4, 2, 2)
    assert abs(p.probabilities.sum() - 1.0) < 1e-5
    text = p.format_text(5)
    assert text.splitlines()[0].endswith("good.mp4")
    assert f"1. {top[0][1]}" in text and "when:" in text and "where" in text
    baseline = open_runner(inputs / "baseline.keras", method="gradcam")
    b = baseline.predict(baseline.load(inputs / "good.mp4", num_clips=2))
    assert b.method == "gradcam" and b.temporal.shape == (2, 4)
    assert len(b.top_k(5)) == 5 and len(b.frame_indices) == 2
    with pytest.raises(InferenceError, match="baseline without attention"):
        open_runner(inputs / "baseline.keras")


@pytest.mark.slow
def test_cli_good_and_corrupt_file_in_one_call(inputs, own_lines_only, python):
    result = python("-m", "stabn_tf.predict", inputs / "good.mp4", inputs / "corrupt.mp4",
                    inputs / "frames", f"--checkpoint={inputs / 'stabn.keras'}", "--json",
                    env=LOUD)
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
    # The model's class names come from the .keras file alone; TensorFlow stays quiet.
    own_lines_only(result)


@pytest.mark.slow
def test_helpfull_and_a_run_print_nothing_from_tensorflow(inputs, own_lines_only, python):
    helped = python("-m", "stabn_tf.predict", "--helpfull", env=LOUD)
    assert "--checkpoint" in helped.stdout  # (absl exits 1 after --helpfull)
    assert helped.stderr == ""
    ran = python("-m", "stabn_tf.predict", inputs / "good.mp4",
                 f"--checkpoint={inputs / 'stabn.keras'}", env=LOUD)
    assert ran.returncode == 0 and ran.stderr == "", ran.stderr
    own_lines_only(ran)


@pytest.mark.parametrize("args, message", [
    (["--num_clips=0"], "--num_clips=0: must be >= 1"),
    (["--top_k=0"], "--top_k=0: must be >= 1"),
    (["--checkpoint=MISSING"], "no such checkpoint file"),
    (["--checkpoint=NOTZIP"], "not a .keras model file"),
    (["--output_dir=AFILE"], "is a file, not a directory"),
    (["--precision=fp16"], "--precision=fp16: choose from auto, float32, bfloat16"),
])
def test_bad_flags_are_one_line_before_any_work(inputs, tmp_path, args, message, run_command):
    (tmp_path / "notzip.keras").write_text("hello")
    (tmp_path / "afile").write_text("x")
    subs = {"MISSING": tmp_path / "missing.keras", "NOTZIP": tmp_path / "notzip.keras",
            "AFILE": tmp_path / "afile"}
    args = [a.split("=")[0] + "=" + str(subs.get(a.split("=")[1], a.split("=")[1]))
            for a in args]
    if not any(a.startswith("--checkpoint") for a in args):
        args.append(f"--checkpoint={inputs / 'stabn.keras'}")
    result = run_command("stabn_tf.predict", inputs / "good.mp4", "--json", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_foreign_keras_model_is_refused_before_anything_is_created(inputs, tmp_path,
                                                                     run_command):
    """Issue 20 item 7: a plain keras.Sequential is not sent to `migrate` (that is for old
    ST-ABN checkpoints), and --output_dir is not created for a refused checkpoint."""
    foreign = tmp_path / "sequential.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="mine").save(foreign)
    out = tmp_path / "out"
    result = run_command("stabn_tf.predict", inputs / "good.mp4", f"--checkpoint={foreign}",
                         f"--output_dir={out}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"stabn_tf.predict: error: {foreign}: a Keras model (Sequential 'mine') that is not "
        "an ST-ABN or baseline model; expected a checkpoint written by stabn_tf (`python -m "
        "stabn_tf.train`, or `stabn_tf.build_stabn(...).save(...)`)"], result.stderr
    assert not out.exists()


def test_inputs_with_the_same_name_get_their_own_outputs(inputs, tmp_path, run_command):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(inputs / "good.mp4", tmp_path / folder / "clip.mp4")
    shutil.copy(inputs / "good.mp4", tmp_path / "a" / "clip.webm")
    out = tmp_path / "out"
    result = run_command("stabn_tf.predict", tmp_path / "a" / "clip.mp4",
                         tmp_path / "b" / "clip.mp4", tmp_path / "a" / "clip.webm",
                         f"--checkpoint={inputs / 'stabn.keras'}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.json")) == ["clip.json", "clip_2.json",
                                                          "clip_3.json"]
    sources = {json.loads(p.read_text())["path"] for p in out.glob("*.json")}
    assert len(sources) == 3


@pytest.mark.slow
def test_runner_precision(inputs):
    """`auto` is the machine's choice; an explicit precision runs a copy built in it, whose
    outputs stay float32; without one, KerasRunner runs the model it was given."""
    auto = open_runner(inputs / "stabn.keras")
    assert auto.precision == resolve_precision("auto")
    assert auto.precision_choice.requested == "auto"
    clip = auto.load(inputs / "good.mp4")
    runs = {}
    for precision in ("float32", "bfloat16"):
        runner = open_runner(inputs / "stabn.keras", precision=precision)
        assert runner.precision == precision == model_precision(runner.model)
        runs[precision] = runner.predict(clip)
        assert runs[precision].precision == precision
        assert runs[precision].to_json()["precision"] == precision
        assert runs[precision].probabilities.dtype == np.float32
        assert runs[precision].spatial.dtype == runs[precision].temporal.dtype == np.float32
    np.testing.assert_allclose(runs["bfloat16"].probabilities, runs["float32"].probabilities,
                               atol=0.05)
    live = open_runner(inputs / "stabn.keras", precision="float32").model
    as_given = KerasRunner(live)
    assert as_given.model is live and as_given.precision == "float32"
    assert as_given.precision_choice.reason == "the model as built"
    with pytest.raises(PrecisionError, match="--precision=fp16: choose from"):
        KerasRunner(live, precision="fp16")


@pytest.mark.slow
def test_cli_precision_is_printed_once_and_stored(inputs, tmp_path, run_command):
    out = tmp_path / "out"
    result = run_command("stabn_tf.predict", inputs / "good.mp4",
                         f"--checkpoint={inputs / 'stabn.keras'}", "--precision=bfloat16",
                         f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "precision: bfloat16 (requested)"
    assert sum(line.startswith("precision:") for line in lines) == 1
    assert json.loads((out / "good.json").read_text())["precision"] == "bfloat16"
    # What was written is listed, then summed up.
    assert f"  → {out / 'good.png'}, {out / 'good.json'}" in result.stdout
    assert lines[-1] == f"stabn_tf.predict: wrote 2 files for 1 input(s) to {out}"
    scripted = run_command("stabn_tf.predict", inputs / "good.mp4",
                           f"--checkpoint={inputs / 'stabn.keras'}", "--json",
                           f"--output_dir={out}")
    assert scripted.returncode == 0, scripted.stderr[-2000:]
    assert f"wrote 2 files for 1 input(s) to {out}" in scripted.stderr
    document = json.loads(scripted.stdout)  # stdout is the JSON document alone
    assert document["precision"]["requested"] == "auto"
    assert document["precision"]["precision"] == resolve_precision("auto")
    assert document["precision"]["reason"].startswith("auto: ")
    assert document["predictions"][0]["precision"] == resolve_precision("auto")
