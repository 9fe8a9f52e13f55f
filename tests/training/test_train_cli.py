"""`python -m stabn_tf.train` end to end: a tiny run, crash-safe resume, bad inputs."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

TINY_FLAGS = [
    "--preset=stabn_tiny", "--num_explain_clips=2", "--verbose=2",
]


def _args(data_dir, out, *extra):
    """`stabn_tf.train`'s arguments for a tiny run on `data_dir` into `out`."""
    return ["stabn_tf.train", *TINY_FLAGS, f"--train_files={data_dir}/train-*.tfrecord",
            f"--val_files={data_dir}/validation-*.tfrecord", f"--output_dir={out}", *extra]


def _epochs_in_history(out):
    with open(out / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_tiny_run_writes_checkpoints_logs_results_and_pictures(tiny_tfrecords, tmp_path,
                                                              run_command):
    out = tmp_path / "run"
    result = run_command(*_args(tiny_tfrecords, out, "--epochs=2", "--steps_per_epoch=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| perception |" in result.stdout
    results = json.loads((out / "results.json").read_text())
    for head in ("perception", "attention"):
        assert 0.0 <= results[head]["top1"] <= results[head]["top5"] <= 1.0
    model = keras.saving.load_model(out / "checkpoints" / "final.keras")
    assert set(model.output) == {"perception", "attention"}
    assert (out / "checkpoints" / "best.keras").exists()
    assert _epochs_in_history(out) == [1, 2]
    assert any((out / "logs" / "train").iterdir())
    assert any((out / "logs" / "attention").iterdir())
    pngs = sorted((out / "explanations").glob("*.png"))
    assert len(pngs) == 2 and pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_baseline_trains_through_the_same_cli(tiny_tfrecords, tmp_path, run_command):
    out = tmp_path / "baseline"
    result = run_command(*_args(tiny_tfrecords, out, "--model=baseline", "--epochs=1",
                                "--steps_per_epoch=1", "--validation_steps=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "baseline" and "attention" not in results
    assert 0.0 <= results["perception"]["top1"] <= results["perception"]["top5"] <= 1.0
    assert (out / "checkpoints" / "best.keras").exists()
    assert not any((out / "explanations").iterdir())


@pytest.mark.slow
@pytest.mark.e2e  # SIGKILL needs a process of its own
def test_killed_run_resumes_from_backup_and_finishes_each_epoch_once(tiny_tfrecords, tmp_path,
                                                                     run_command):
    out = tmp_path / "run"
    args = _args(tiny_tfrecords, out, "--epochs=4", "--steps_per_epoch=6",
                 "--backup_every_steps=2", "--explain_every_epochs=0")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    metadata = out / "backup" / "training_metadata.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                state = json.loads(metadata.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("epoch", 0) >= 1 and state.get("batch", 0) > 0:
                proc.send_signal(signal.SIGKILL)  # mid-epoch 2, after a step-level backup
                break
            time.sleep(0.02)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the trainer finished before it could be killed"
    killed_at = json.loads(metadata.read_text())["epoch"]
    assert not (out / "checkpoints" / "final.keras").exists()

    result = run_command(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "resuming from the backup" in log
    assert f"Epoch {killed_at + 1}/4" in log and "Epoch 1/4" not in log
    assert _epochs_in_history(out) == [1, 2, 3, 4]
    keras.saving.load_model(out / "checkpoints" / "final.keras")


def _one_error_line(result, expected):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Epoch 1/" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if expected in line]
    assert len(lines) == 1, result.stderr[-3000:]


def test_bad_inputs_fail_with_one_clear_line_before_training(tiny_tfrecords, tmp_path,
                                                            run_command):
    missing = run_command(*_args(tiny_tfrecords, tmp_path / "a",
                                 "--train_files=/nowhere/train-*.tfrecord"))
    _one_error_line(missing, "no TFRecord files match '/nowhere/train-*.tfrecord'")

    mismatch = run_command(*_args(tiny_tfrecords, tmp_path / "b", "--num_classes=5"))
    _one_error_line(mismatch, "--num_classes=5 but")

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    unwritable = run_command(*_args(tiny_tfrecords, blocker / "out"))
    _one_error_line(unwritable, "is not writable")

    flagfile = tmp_path / "typo.flags"
    flagfile.write_text("--epochs=1\n--learning_rat=0.1\n")
    unknown = run_command(*_args(tiny_tfrecords, tmp_path / "c", f"--flagfile={flagfile}"))
    _one_error_line(unknown, "Unknown command line flag 'learning_rat'")

    odd_size = run_command(*_args(tiny_tfrecords, tmp_path / "d", "--image_size=40"))
    _one_error_line(odd_size, "`image_size` must be an int or (height, width), each a positive "
                              "multiple of 32")


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_keeps_the_good_backup(tiny_tfrecords, tmp_path,
                                                                       run_command):
    out = tmp_path / "run"
    # One clean epoch (lr 0) to get a good backup, then an absurd rate diverges in epoch 2.
    first = run_command(*_args(tiny_tfrecords, out, "--epochs=1", "--steps_per_epoch=2",
                               "--base_lr=0", "--num_explain_clips=0"))
    assert first.returncode == 0, first.stderr[-3000:]
    good = (out / "backup" / "latest.weights.h5").read_bytes()
    blown = run_command(*_args(tiny_tfrecords, out, "--epochs=3", "--steps_per_epoch=4",
                               "--base_lr=1e12", "--clip_norm=0", "--num_explain_clips=0"))
    assert blown.returncode == 2
    lines = [line for line in blown.stderr.splitlines() if "loss became nan" in line]
    assert len(lines) == 1 and "global step" in lines[0] and "--base_lr" in lines[0], lines
    assert (out / "backup" / "latest.weights.h5").read_bytes() == good
    assert json.loads((out / "backup" / "training_metadata.json").read_text())["epoch"] == 1


@pytest.mark.parametrize("name", ["synthetic_frames", "decay_epochs", "init"])
def test_every_config_field_is_a_flag(name, run_command):
    result = run_command("stabn_tf.train", "--helpfull")
    assert f"--{name}" in result.stdout
