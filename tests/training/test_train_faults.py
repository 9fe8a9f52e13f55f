"""Faults while training: a full disk, SIGINT/SIGTERM, a second writer, settings that differ
from the run's, a batch larger than the data. Each is one line, leaves the run resumable,
and re-running the same command finishes each epoch once."""

import contextlib
import csv
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

from stabn_tf.disk import DiskFullError
from stabn_tf.runs import RunDirectory, RunError
from stabn_tf.training.trainer import (
    ConfigError,
    TrainConfig,
    TrainingError,
    check_config,
    check_same_run,
    train,
)

TINY = dict(steps_per_epoch=2, validation_steps=1, num_explain_clips=0, verbose=0)


def _config(data, out, **overrides):
    return TrainConfig.from_preset("stabn_tiny", output_dir=str(out),
                                   train_files=f"{data}/train-*.tfrecord",
                                   val_files=f"{data}/validation-*.tfrecord", **TINY | overrides)


def _snapshot(root):
    digest = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digest


def _epochs_in_history(out):
    with open(out / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _no_temporary_files(out):
    return [p for p in out.rglob(".tmp-*")] == []


def test_batch_larger_than_the_training_split_is_refused(tiny_tfrecords, tmp_path):
    with pytest.raises(ConfigError) as error:
        train(_config(tiny_tfrecords, tmp_path / "run", batch_size=1000))
    assert "--batch_size=1000 is larger than the training split (24 clips" in str(error.value)
    assert not (tmp_path / "run").exists()


def test_a_run_saved_with_the_old_precision_spelling_resumes(tmp_path, capsys):
    """Old flag files and run configs say mixed_bfloat16: the same run as bfloat16."""
    run = RunDirectory(str(tmp_path / "run"))
    os.makedirs(run.path)
    run.write_config({"precision": "mixed_bfloat16", "seed": 0})
    config = TrainConfig(precision="mixed_bfloat16")
    check_config(config)
    assert config.precision == "bfloat16"
    assert "--precision=mixed_bfloat16 is now spelled --precision=bfloat16" in \
        capsys.readouterr().err
    check_same_run(run, {"precision": config.precision, "seed": 0})  # the same run
    with pytest.raises(ConfigError, match=r"--precision=bfloat16 \(now float32\)"):
        check_same_run(run, {"precision": "float32", "seed": 0})


@pytest.mark.slow
def test_settings_are_the_runs_identity_and_one_writer_holds_it(tiny_tfrecords, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("pid 999999 on a-dead-machine")  # left by a killed run
    train(_config(tiny_tfrecords, out, epochs=1))
    assert not (out / ".lock").exists()
    before = _snapshot(out)

    with pytest.raises(ConfigError) as error:
        train(_config(tiny_tfrecords, out, epochs=2, depth=34, num_frames=8))
    message = str(error.value)
    assert "--depth=18 (now 34)" in message and "--num_frames=4 (now 8)" in message
    assert "--overwrite" in message and "\n" not in message
    assert _snapshot(out) == before

    with RunDirectory(out).lock(), pytest.raises(RunError) as error:
        started = time.monotonic()
        train(_config(tiny_tfrecords, out, epochs=2))
    assert f"in use by another training run (pid {os.getpid()} on" in str(error.value)
    assert time.monotonic() - started < 30  # before building anything
    assert _snapshot(out) == before

    # What may change on resume does: two more epochs at another learning rate.
    train(_config(tiny_tfrecords, out, epochs=3, base_lr=0.02, backup_every_steps=1))
    assert _epochs_in_history(out) == [1, 2, 3]
    assert json.loads((out / "config.json").read_text())["base_lr"] == 0.02

    train(_config(tiny_tfrecords, out, epochs=1, width_multiplier=0.25, overwrite=True))
    assert json.loads((out / "config.json").read_text())["width_multiplier"] == 0.25
    assert _epochs_in_history(out) == [1]
    assert keras.saving.load_model(out / "checkpoints" / "final.keras")


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_rerun_resumes(tiny_tfrecords, tmp_path, monkeypatch):
    out = tmp_path / "run"
    free_bytes = __import__("stabn_tf.disk", fromlist=["free_bytes"]).free_bytes

    def disk_fills_after_the_first_epoch(folder):
        full = folder.endswith("backup") and (out / "history.csv").exists()
        return 1000 if full else free_bytes(folder)

    monkeypatch.setattr("stabn_tf.disk.free_bytes", disk_fills_after_the_first_epoch)
    with pytest.raises(DiskFullError) as error:
        train(_config(tiny_tfrecords, out, epochs=3))
    message = str(error.value)
    assert message.startswith(f"{out}/backup/latest.weights.h5: the disk is full (1.0 kB free "
                              "there); this needs about "), message
    # The reserve kept free is in the sum, so the numbers add up; the first backup is the
    # one refused, so no backup is promised.
    assert "MB + the 1.0 MB kept free = " in message
    assert "no backup was written yet" in message and "last good backup" not in message
    assert _epochs_in_history(out) == [1]
    monkeypatch.undo()

    # ENOSPC in the middle of writing a checkpoint (as h5py or the zip writer meets it).
    save = keras.Model.save

    def no_space(self, path, **kwargs):
        save(self, path, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(keras.Model, "save", no_space)
    with pytest.raises(DiskFullError) as error:
        train(_config(tiny_tfrecords, out, epochs=3))
    assert ": the disk is full" in str(error.value) and ".keras" in str(error.value)
    assert _no_temporary_files(out)
    monkeypatch.undo()

    train(_config(tiny_tfrecords, out, epochs=3))
    assert _epochs_in_history(out) == [1, 2, 3]
    assert _no_temporary_files(out)
    keras.saving.load_model(out / "checkpoints" / "best.keras")
    keras.saving.load_model(out / "checkpoints" / "final.keras")


CLI_FLAGS = ["--model=stabn", "--depth=18", "--width_multiplier=0.125", "--num_frames=4",
             "--image_size=32", "--batch_size=4", "--num_explain_clips=0", "--verbose=2",
             "--epochs=3", "--steps_per_epoch=8", "--validation_steps=1",
             "--backup_every_steps=1"]


@pytest.mark.slow
@pytest.mark.e2e  # signals need a process of their own; the runs that are not signalled are not
def test_sigint_sigterm_and_a_second_writer_on_the_cli(tiny_tfrecords, tmp_path, run_command):
    """Backing up every step, so the signals land in or next to a backup write."""
    out = tmp_path / "run"
    args = ["stabn_tf.train", *CLI_FLAGS, f"--train_files={tiny_tfrecords}/train-*.tfrecord",
            f"--val_files={tiny_tfrecords}/validation-*.tfrecord", f"--output_dir={out}"]
    cmd = [sys.executable, "-m", *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    metadata = out / "backup" / "training_metadata.json"

    def backup_state():
        # A signal may land mid-save, after the latest pair became the `.bkp` one.
        for path in (metadata, out / "backup" / "training_metadata.json.bkp"):
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        return None

    def start_and_wait_for_a_backup(after=None):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            state = backup_state()
            if state is not None and state != after:
                return proc, state
            time.sleep(0.05)
        proc.kill()
        raise AssertionError(f"no new backup: {proc.communicate()[1][-3000:]}")

    def stop(proc, signum):
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err[-3000:]
        lines = [line for line in err.splitlines() if line.startswith("stabn_tf.train:")]
        return proc.returncode, lines

    first, _ = start_and_wait_for_a_backup()
    second = run_command(*args)
    assert first.poll() is None, "the first run did not outlive the second's start"
    assert second.returncode == 2 and "Traceback" not in second.stderr
    errors = [line for line in second.stderr.splitlines() if "stabn_tf.train: error" in line]
    assert len(errors) == 1 and f"in use by another training run (pid {first.pid} on" \
        in errors[0], second.stderr[-3000:]

    code, lines = stop(first, signal.SIGINT)
    assert code == 130 and len(lines) == 1 and "stopped by SIGINT" in lines[0], lines
    assert "the last good backup" in lines[0] and "run the same command again" in lines[0]

    resumed, _ = start_and_wait_for_a_backup(after=backup_state())
    code, lines = stop(resumed, signal.SIGTERM)
    assert code == 143 and len(lines) == 1 and "stopped by SIGTERM" in lines[0], lines

    finished = run_command(*args)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming from the backup" in finished.stdout + finished.stderr
    assert _epochs_in_history(out) == [1, 2, 3]
    assert _no_temporary_files(out) and not (out / ".lock").exists()
    keras.saving.load_model(out / "checkpoints" / "best.keras")
    keras.saving.load_model(out / "checkpoints" / "final.keras")


def test_a_failure_line_mentions_a_backup_only_when_there_is_one(tmp_path):
    from stabn_tf.training.backup import RunBackup
    from stabn_tf.training.trainer import _resume_from

    assert _resume_from(str(tmp_path)) == \
        "no backup was written yet: it starts from the beginning"
    (tmp_path / RunBackup.METADATA).write_text("{}")
    assert "resumes from the last good backup" in _resume_from(str(tmp_path))


@pytest.mark.parametrize("fails", [False, True])
def test_train_leaves_the_callers_dtype_policy(tiny_tfrecords, tmp_path, monkeypatch, fails):
    """`train` sets the run's precision for the run only, also when the run fails."""
    import stabn_tf.training.trainer as trainer

    seen = []

    def run(config, data, run, execution):
        seen.append(keras.config.dtype_policy().name)
        if fails:
            raise TrainingError("broke half-way")
        return {}

    monkeypatch.setattr(trainer, "_train_locked", run)
    keras.config.set_dtype_policy("mixed_float16")  # the caller's own (conftest restores)
    with pytest.raises(TrainingError) if fails else contextlib.nullcontext():
        train(_config(tiny_tfrecords, tmp_path / "run", precision="bfloat16"))
    assert seen == ["mixed_bfloat16"]
    assert keras.config.dtype_policy().name == "mixed_float16"
