"""`python -m export.tflite`: a checkpoint → a TFLite file, its config `<stem>.json` and the
report (op histogram by kernel dtype, size, parity with Keras on real clips); from a
training run or from the `.keras` file alone, and from a run with very little data."""

import json
import pathlib

import pytest
import tensorflow as tf

from stabn_tf.deploy import ExportError, RunData
from stabn_tf.deploy import tflite as lite
from stabn_tf.inference import LiteRTRunner, load_checkpoint

#: Every test here converts to TFLite (float32, int8, parity runs): not in the fast tier.
pytestmark = pytest.mark.slow

T, S, K = 4, 32, 12


def make_run(root: pathlib.Path, model, train_files: str, val_files: str) -> pathlib.Path:
    """A training run as `stabn_tf.train` leaves it: checkpoints/final.keras and a
    config.json naming the TFRecords."""
    (root / "checkpoints").mkdir(parents=True)
    model.save(root / "checkpoints" / "final.keras")
    (root / "config.json").write_text(json.dumps({
        "dataset": "tfrecord", "train_files": train_files, "val_files": val_files,
        "num_frames": T, "image_size": S, "depth": 18}))
    return root / "checkpoints" / "final.keras"


def write_records(path: pathlib.Path, pattern: str, count: int) -> str:
    """The first `count` records of `pattern` as one TFRecord file."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern))).take(count):
            writer.write(record.numpy())
    return str(path)


@pytest.fixture(scope="module")
def model(calibrated_stabn):
    """The tiny set's ST-ABN (its 12 class names), BN statistics of real clips."""
    return calibrated_stabn(T, S, width_multiplier=0.25)


@pytest.fixture(scope="module")
def lone(model, tmp_path_factory):
    """The model as a `.keras` file with no run directory around it."""
    path = tmp_path_factory.mktemp("lone") / "stabn.keras"
    model.save(path)
    return path


def test_float32_export_of_a_run_matches_keras_on_its_validation_clips(model, tiny_tfrecords,
                                                                      tmp_path):
    checkpoint = make_run(tmp_path / "run", model, f"{tiny_tfrecords}/train-*.tfrecord",
                          f"{tiny_tfrecords}/validation-*.tfrecord")
    data = RunData.of_checkpoint(checkpoint)
    assert data.val == f"{tiny_tfrecords}/validation-*.tfrecord" and not data.problem
    output = tmp_path / "stabn_float.tflite"
    report = lite.export_tflite(load_checkpoint(checkpoint), str(output), eval_data=data.val)
    assert output.exists() and report["bytes"] == output.stat().st_size
    assert not (tmp_path / "labels.txt").exists()  # the config JSON replaces the side file
    parity = report["parity"]
    assert parity["clips"] == 12  # the whole validation split, one clip per class
    for key in ("logits", "probabilities", "spatial_attention", "temporal_attention"):
        assert parity[f"max_abs_diff/{key}"] <= 1e-4, parity
    assert parity["top1_agreement"] == 1.0
    assert not [op for op in report["ops"] if "CONV_3D" in op or "float32" not in op
                and "CONV_2D" in op]
    text = lite.format_report(report)
    assert "CONV_2D [float32]" in text and "max |Δ| temporal_attention" in text
    assert f"its config {tmp_path / 'stabn_float.json'}" in text


@pytest.mark.slow
def test_int8_cli_from_the_keras_file_alone_and_the_runner_reads_its_config(
        model, lone, tiny_tfrecords, tmp_path, own_lines_only, python):
    output = tmp_path / "m" / "stabn_int8.tflite"
    report_json = tmp_path / "report.json"
    assert "no run directory" in RunData.of_checkpoint(lone).problem  # flags only
    result = python("-m", "export.tflite", f"--checkpoint={lone}", "--quantize=int8",
                    f"--output={output}",
                    f"--representative_data={tiny_tfrecords}/train-*.tfrecord",
                    "--num_representative=8",
                    f"--eval_data={tiny_tfrecords}/validation-*.tfrecord",
                    f"--report_json={report_json}",
                    "--accept_unfaithful")  # a tiny model on 8 clips: any parity is shown
    assert result.returncode == 0, result.stderr[-3000:]
    own_lines_only(result)  # no converter/quantizer chatter, no LiteRT notice
    out = result.stdout
    # By default the dense layers and the softmax stay float32 (`lite.KEEP_FLOAT`).
    assert ("calibrated on 8 training clips, float32 input; kept in float32: "
            "FULLY_CONNECTED, SOFTMAX") in out
    assert "every CONV_2D / FULLY_CONNECTED in int8 (besides those kept in float32): " in out
    for needle in ("CONV_2D [int8]", "FULLY_CONNECTED [float32]", "SOFTMAX [float32]",
                   "QUANTIZE [float32→int8]",
                   "top-1 agreement with Keras", "Pearson r temporal_attention",
                   "top-1 accuracy Keras / TFLite", "keeps the explanation (top-1 agreement",
                   "peak RSS of this export: "):
        assert needle in out, needle
    report = json.loads(report_json.read_text())
    assert report["keep_float"] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert len(report["quantization_violations"]) <= 1  # a conv the MLIR quantizer may leave
    assert "FULLY_CONNECTED [int8]" not in report["ops"]
    assert report["bytes"] <= 0.30 * report["float32_weight_bytes"]
    assert report["parity"]["pearson/temporal_attention"] >= 0.9
    config = json.loads((output.parent / "stabn_int8.json").read_text())
    assert config["format"] == "tflite" and config["quantize"] == "int8"
    assert config["keep_float"] == ["FULLY_CONNECTED", "SOFTMAX"]
    assert config["class_names"] == model.class_names
    assert config["preprocessor"]["config"]["num_frames"] == T  # the clip: stored once
    runner = LiteRTRunner(output)
    assert runner.class_names == model.class_names and runner.name == model.name
    assert runner.preprocessor.get_config() == model.preprocessor.get_config()  # as saved


@pytest.mark.slow
def test_int8_export_of_a_run_with_few_training_clips_calibrates_on_them(
        model, tiny_tfrecords, tmp_path, own_lines_only, python):
    """Issue 15 item 7: 5 training clips, --num_representative at its default of 128."""
    train = write_records(tmp_path / "train-small.tfrecord",
                          f"{tiny_tfrecords}/train-*.tfrecord", 5)
    checkpoint = make_run(tmp_path / "run", model, train,
                          f"{tiny_tfrecords}/validation-*.tfrecord")
    output = tmp_path / "small_int8.tflite"
    result = python("-m", "export.tflite", f"--checkpoint={checkpoint}", "--quantize=int8",
                    f"--output={output}", "--num_eval=4", "--accept_unfaithful",
                    "--keep_float=")  # every op int8
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    own_lines_only(result)
    notes = [line for line in result.stderr.splitlines() if "calibrating" in line]
    assert notes == [f"calibrating on the 5 clips that {train} holds (128 requested); "
                     "warning: very few, the int8 ranges may not cover real inputs "
                     "(--representative_data can add clips)"], result.stderr
    assert "calibrated on 5 training clips, float32 input\n" in result.stdout
    assert "every CONV_2D / FULLY_CONNECTED in int8: yes" in result.stdout
    assert "FULLY_CONNECTED [int8]" in result.stdout
    assert output.exists() and output.with_suffix(".json").exists()


def test_int8_export_with_no_training_clips_is_refused_in_one_line(model, lone, tmp_path,
                                                                   run_command):
    empty = tmp_path / "train-empty.tfrecord"
    empty.write_bytes(b"")
    checkpoint = make_run(tmp_path / "run", model, str(empty), str(empty))
    result = run_command("export.tflite", f"--checkpoint={checkpoint}", "--quantize=int8",
                         f"--output={tmp_path / 'x.tflite'}")
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"stabn_tf.export.tflite: error: --quantize=int8 calibrates on real clips "
                     f"and {empty} holds none: pass --representative_data=<TFRecords with "
                     "clips>"], lines
    assert not (tmp_path / "x.tflite").exists()
    with pytest.raises(ExportError, match="pass --representative_data"):  # no data at all
        lite.export_tflite(model, str(tmp_path / "y.tflite"), "int8")
    with pytest.raises(ExportError, match="--num_representative=0: must be >= 1"):
        lite.export_tflite(model, str(tmp_path / "y.tflite"), "int8",
                           representative_data=str(empty), num_representative=0)
    with pytest.raises(ExportError, match="--keep_float=CONV_3D: choose TFLite op types"):
        lite.export_tflite(model, str(tmp_path / "y.tflite"), "int8",
                           representative_data=str(empty), keep_float=("CONV_3D",))


def test_cli_errors_name_the_missing_piece(lone, tmp_path, run_command):
    result = run_command("export.tflite", f"--checkpoint={lone}", "--quantize=int16x8")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stabn_tf.export.tflite: error: --quantize=int16x8 calibrates on real clips and there "
        "are none (no run "
        f"directory (config.json) around {lone}): pass "
        "--representative_data=<training TFRecord pattern>"]
    missing = run_command("export.tflite", f"--checkpoint={tmp_path}/missing.keras")
    assert missing.returncode == 2 and "no such checkpoint file" in missing.stderr
