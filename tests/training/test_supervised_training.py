"""Attention supervision in `train()`: λ = 0 is the paper's recipe bit for bit; λ > 0 adds
the two losses, logged separately, and changes the weights."""

import csv
import pathlib

import numpy as np
import pytest

import stabn_tf
from stabn_tf.training.trainer import TrainConfig, train


def _config(data, out, **overrides):
    settings = dict(output_dir=str(out), train_files=f"{data}/train-*.tfrecord",
                    val_files=f"{data}/validation-*.tfrecord", epochs=1, steps_per_epoch=3,
                    num_explain_clips=0, verbose=0, seed=3)
    return TrainConfig.from_preset("stabn_tiny", **settings | overrides)


def _weights(out):
    model = stabn_tf.load_model(out / "checkpoints" / "final.keras")
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.slow
def test_zero_weights_train_bit_identically_and_positive_weights_supervise(tiny_tfrecords,
                                                                           tmp_path):
    train(_config(tiny_tfrecords, tmp_path / "paper"))
    train(_config(tiny_tfrecords, tmp_path / "zero", attention_supervision_weight=0.0,
                  temporal_supervision_weight=0.0, supervised_fraction=0.1))
    paper, zero = _weights(tmp_path / "paper"), _weights(tmp_path / "zero")
    assert all(np.array_equal(a, b) for a, b in zip(paper, zero))

    train(_config(tiny_tfrecords, tmp_path / "supervised", attention_supervision_weight=1.0,
                  temporal_supervision_weight=1.0))
    supervised = _weights(tmp_path / "supervised")
    assert not all(np.array_equal(a, b) for a, b in zip(paper, supervised))
    with open(tmp_path / "supervised" / "history.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for key in ("spatial_attention_loss", "temporal_attention_loss",
                "val_spatial_attention_loss", "val_temporal_attention_loss"):
        assert float(row[key]) > 0, key
    with open(tmp_path / "paper" / "history.csv", newline="") as f:
        assert "spatial_attention_loss" not in next(csv.DictReader(f))
    # What gets saved is the network itself, with its two outputs.
    model = stabn_tf.load_model(tmp_path / "supervised" / "checkpoints" / "final.keras")
    assert sorted(model.output) == ["attention", "perception"]


@pytest.mark.slow
def test_supervision_cost_benchmark_runs(python):
    script = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "supervision_cost.py"
    result = python(script, "--width_multiplier=0.125", "--num_frames=4", "--image_size=32",
                    "--batch_size=2", "--rounds=1", "--steps=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "supervised / paper:" in result.stdout


MIRRORED_SUPERVISED = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import csv
from stabn_tf.training.trainer import TrainConfig, train
data, out = sys.argv[1], sys.argv[2]
train(TrainConfig.from_preset("stabn_tiny", output_dir=out,
                              train_files=data + "/train-*.tfrecord",
                              val_files=data + "/validation-*.tfrecord", epochs=1,
                              steps_per_epoch=2, strategy="mirrored",
                              attention_supervision_weight=1.0, temporal_supervision_weight=1.0,
                              num_explain_clips=0, verbose=0))
row = next(csv.DictReader(open(out + "/history.csv")))
print(row["spatial_attention_loss"], row["temporal_attention_loss"])
"""


@pytest.mark.slow
def test_supervision_trains_under_a_mirrored_strategy(tiny_tfrecords, tmp_path, python):
    # A fresh process: the CPU is split in two before TensorFlow starts.
    result = python("-c", MIRRORED_SUPERVISED, tiny_tfrecords, tmp_path / "run", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    spatial, temporal = map(float, result.stdout.split()[-2:])
    assert spatial > 0 and temporal > 0
