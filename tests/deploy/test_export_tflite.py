"""`python -m export.tflite`: a training run's checkpoint → a TFLite file, labels.txt and
the report (op histogram by kernel dtype, size, parity with Keras on real clips)."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

from export import ExportError
from export import tflite as export_tflite

ROOT = pathlib.Path(__file__).resolve().parents[1]
T, S, K = 4, 32, 12


@pytest.fixture(scope="module")
def run_dir(tiny_tfrecords, tmp_path_factory, calibrated_stabn):
    """A training run as `stabn_tf.train` leaves it: checkpoints/final.keras and a
    config.json naming the TFRecords (the model: BN statistics of real clips)."""
    model = calibrated_stabn(T, S, width_multiplier=0.25)
    run = tmp_path_factory.mktemp("run")
    (run / "checkpoints").mkdir()
    model.save(run / "checkpoints" / "final.keras")
    (run / "config.json").write_text(json.dumps({
        "dataset": "tfrecord", "train_files": f"{tiny_tfrecords}/train-*.tfrecord",
        "val_files": f"{tiny_tfrecords}/validation-*.tfrecord", "num_frames": T,
        "image_size": S, "depth": 18}))
    return run


def test_float32_export_matches_keras_on_the_validation_clips(run_dir, tiny_tfrecords,
                                                             tmp_path):
    output = tmp_path / "stabn_float.tflite"
    report = export_tflite.export_tflite(str(run_dir / "checkpoints" / "final.keras"),
                                         str(output))
    assert output.exists() and report["bytes"] == output.stat().st_size
    labels = (pathlib.Path(tiny_tfrecords) / "labels.txt").read_text()
    assert (tmp_path / "labels.txt").read_text() == labels
    parity = report["parity"]
    assert parity["clips"] == 12  # the whole validation split, one clip per class
    for key in ("logits", "probabilities", "spatial_attention", "temporal_attention"):
        assert parity[f"max_abs_diff/{key}"] <= 1e-4, parity
    assert parity["top1_agreement"] == 1.0
    assert not [op for op in report["ops"] if "CONV_3D" in op or "float32" not in op
                and "CONV_2D" in op]
    text = export_tflite.format_report(report)
    assert "CONV_2D [float32]" in text and "max |Δ| temporal_attention" in text


def test_int8_cli_reports_integer_kernels_size_and_agreement(run_dir, tmp_path):
    output = tmp_path / "m" / "stabn_int8.tflite"
    report_json = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "export.tflite",
         f"--checkpoint={run_dir}/checkpoints/final.keras", "--quantize=int8",
         f"--output={output}", "--num_representative=8", f"--report_json={report_json}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "calibrated on 8 training clips, float32 input" in out
    assert "every CONV_2D / FULLY_CONNECTED in int8: yes" in out
    for needle in ("CONV_2D [int8]", "FULLY_CONNECTED [int8]", "QUANTIZE [float32→int8]",
                   "top-1 agreement with Keras", "Pearson r temporal_attention",
                   "top-1 accuracy Keras / TFLite"):
        assert needle in out, needle
    report = json.loads(report_json.read_text())
    assert report["quantization_violations"] == []
    assert report["bytes"] <= 0.30 * report["float32_weight_bytes"]
    assert report["parity"]["pearson/temporal_attention"] >= 0.9
    assert (output.parent / "labels.txt").exists()


def test_errors_name_the_missing_piece(run_dir, tmp_path):
    model = keras.models.load_model(run_dir / "checkpoints" / "final.keras")
    lone = tmp_path / "lone.keras"
    model.save(lone)
    with pytest.raises(ExportError, match="--labels"):
        export_tflite.export_tflite(str(lone), str(tmp_path / "x.tflite"))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"c{i}\n" for i in range(K)))
    with pytest.raises(ExportError, match="--representative_data"):
        export_tflite.export_tflite(str(lone), str(tmp_path / "x.tflite"), "int8",
                                    labels=str(labels))
    labels.write_text("a\nb\n")
    with pytest.raises(ExportError, match="2 class names for a model with 12"):
        export_tflite.export_tflite(str(lone), str(tmp_path / "x.tflite"), labels=str(labels))
    result = subprocess.run(
        [sys.executable, "-m", "export.tflite", f"--checkpoint={tmp_path}/missing.keras"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2 and "no such checkpoint file" in result.stderr
