"""The crash-safe backup on a small Keras model: every interruption point leaves a pair that
resumes, an unreadable backup falls back to the previous one, none left says what to do."""

import json
import os
import signal

import keras
import numpy as np
import pytest

from stabn_tf.disk import DiskFullError
from stabn_tf.training.backup import BackupError, BackupState, RunBackup
from stabn_tf.training.signals import Interrupted, interruptible


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(momentum=0.9), "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _backup(tmp_path, model):
    backup = RunBackup(str(tmp_path / "backup"))
    backup.set_model(model)
    return backup


def _saved_twice(tmp_path):
    """A backup at epoch 1 (weights w1), then one at epoch 2 (w2); returns (w1, w2)."""
    model = _model()
    backup = _backup(tmp_path, model)
    w1 = [w.copy() for w in model.get_weights()]
    backup.save(BackupState(1, 0))
    model.set_weights([w + 1 for w in w1])
    backup.save(BackupState(2, 0))
    return w1, model.get_weights()


def _restore(tmp_path):
    model, lines = _model(seed=7), []
    state = _backup(tmp_path, model).restore(model, log=lines.append)
    return state, model.get_weights(), lines


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_restores_the_newest_pair(tmp_path):
    _, w2 = _saved_twice(tmp_path)
    state, weights, lines = _restore(tmp_path)
    assert state == BackupState(2, 0) and _same(weights, w2) and lines == []
    assert sorted(os.listdir(tmp_path / "backup")) == [
        "latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json",
        "training_metadata.json.bkp"]  # no temporary file left


@pytest.mark.parametrize("damage", ["truncated", "emptied", "removed", "metadata_garbage"])
def test_an_unreadable_latest_backup_falls_back_to_the_previous_one(tmp_path, damage):
    w1, _ = _saved_twice(tmp_path)
    weights = tmp_path / "backup" / "latest.weights.h5"
    if damage == "truncated":  # what Ctrl-C or a full disk left with Keras's own callback
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "emptied":
        weights.write_bytes(b"")
    elif damage == "removed":
        weights.unlink()
    else:
        (tmp_path / "backup" / "training_metadata.json").write_text("{not json")
    state, restored, lines = _restore(tmp_path)
    assert state == BackupState(1, 0) and _same(restored, w1)
    assert len(lines) == 1 and "resuming from the previous backup at end of epoch 1" in lines[0]


def test_every_moment_of_a_save_leaves_a_pair_that_resumes(tmp_path):
    """The save's steps, stopped after each: the newest complete pair is found by its hash."""
    w1, w2 = _saved_twice(tmp_path)
    folder = tmp_path / "backup"
    weights, metadata = folder / "latest.weights.h5", folder / "training_metadata.json"
    # Stopped after moving the weights (not yet the metadata) to *.bkp.
    os.replace(weights, str(weights) + ".bkp")
    state, restored, _ = _restore(tmp_path)
    assert state == BackupState(2, 0) and _same(restored, w2)
    # ... then after moving the metadata too, and a half-written new weights file.
    os.replace(metadata, str(metadata) + ".bkp")
    weights.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    state, restored, _ = _restore(tmp_path)
    assert state == BackupState(2, 0) and _same(restored, w2)
    del w1


def test_no_usable_backup_says_what_to_do(tmp_path):
    _saved_twice(tmp_path)
    for name in ("latest.weights.h5", "latest.weights.h5.bkp"):
        path = tmp_path / "backup" / name
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BackupError) as error:
        _restore(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "no usable backup" in message
    assert "Delete that folder" in message and "--overwrite" in message


def test_a_keras_backup_resumes_and_falls_back_too(tmp_path):
    """Backups written by Keras's BackupAndRestore (no hash) still resume; a truncated one
    falls back to its `.bkp` instead of failing every later run."""
    model = _model()
    folder = tmp_path / "backup"
    folder.mkdir()
    model.save_weights(folder / "latest.weights.h5")
    os.replace(folder / "latest.weights.h5", folder / "latest.weights.h5.bkp")
    (folder / "training_metadata.json.bkp").write_text(json.dumps({"epoch": 3, "batch": 0}))
    good = model.get_weights()
    model.set_weights([w * 2 for w in good])
    model.save_weights(folder / "latest.weights.h5")
    (folder / "training_metadata.json").write_text(json.dumps({"epoch": 4, "batch": 0}))
    raw = (folder / "latest.weights.h5").read_bytes()
    (folder / "latest.weights.h5").write_bytes(raw[: len(raw) // 2])
    state, restored, lines = _restore(tmp_path)
    assert state == BackupState(3, 0) and _same(restored, good) and len(lines) == 1


def test_a_full_disk_keeps_the_last_backup_and_names_the_file(tmp_path, monkeypatch):
    model = _model()
    backup = _backup(tmp_path, model)
    backup.save(BackupState(1, 0))
    monkeypatch.setattr("stabn_tf.disk.free_bytes", lambda folder: 1000)
    model.set_weights([w + 1 for w in model.get_weights()])
    with pytest.raises(DiskFullError) as error:
        backup.save(BackupState(2, 0))
    assert "latest.weights.h5" in str(error.value) and "needs about" in str(error.value)
    monkeypatch.undo()
    state, _, _ = _restore(tmp_path)
    assert state == BackupState(1, 0)


def signal_mid_backup(folder: str) -> dict:
    """SIGTERM to this process while the weights are half written; what is left after."""
    tmp_path = __import__("pathlib").Path(folder)
    model = _model()
    backup = _backup(tmp_path, model)
    backup.save(BackupState(1, 0))
    good = model.get_weights()
    save_weights = keras.Model.save_weights

    def half_then_signal(self, path, **kwargs):
        save_weights(self, path, **kwargs)
        os.truncate(path, os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGTERM)

    keras.Model.save_weights = half_then_signal
    model.set_weights([w + 1 for w in good])
    try:
        with interruptible():
            backup.save(BackupState(1, 3))
        stopped = None
    except Interrupted as e:
        stopped = e
    finally:
        keras.Model.save_weights = save_weights
    state, restored, _ = _restore(tmp_path)
    return {"exit_code": stopped and stopped.exit_code,
            "signal": stopped and stopped.signal_name,
            "handler_undone": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            "temporaries": [n for n in os.listdir(tmp_path / "backup") if n.startswith(".tmp")],
            "restored_is_last_good": state == BackupState(1, 0) and _same(restored, good)}


@pytest.mark.slow
def test_a_signal_during_a_backup_write_abandons_it_and_keeps_the_last_one(tmp_path, python):
    """SIGTERM arrives while the weights are half written: `Interrupted` (exit 143), the
    half file is gone, the last complete backup resumes. In a process of its own: a signal
    sent to the test runner itself reaches every thread earlier tests left in it."""
    script = ("import importlib.util, json, sys\n"
              "spec = importlib.util.spec_from_file_location('backup_tests', sys.argv[1])\n"
              "tests = importlib.util.module_from_spec(spec)\n"
              "spec.loader.exec_module(tests)\n"
              "print(json.dumps(tests.signal_mid_backup(sys.argv[2])))\n")
    result = python("-c", script, __file__, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["exit_code"] == 143 and seen["signal"] == "SIGTERM"
    assert seen["handler_undone"]  # the handler is undone
    assert seen["temporaries"] == []
    assert seen["restored_is_last_good"]
