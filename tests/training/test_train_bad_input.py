"""Bad input to `python -m stabn_tf.train`: one line, exit 2, no traceback, and an existing
run directory byte-identical afterwards (whatever the flags, files or checkpoint)."""

import hashlib
import os
import re
import shutil

import pytest

import stabn_tf

#: Every test here checks a trained run directory (the module's `existing_run`): slow.
pytestmark = pytest.mark.slow

TINY = ["--preset=stabn_tiny", "--verbose=0", "--num_explain_clips=0"]


def _train(run_command, data, out, *extra):
    """`stabn_tf.train` on `data` into `out` (in this process: `run_command`)."""
    return run_command("stabn_tf.train", *TINY, f"--train_files={data}/train-*.tfrecord",
                       f"--val_files={data}/validation-*.tfrecord", f"--output_dir={out}",
                       *extra)


def _snapshot(root):
    digest = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def existing_run(tiny_tfrecords, tmp_path_factory, run_command):
    out = tmp_path_factory.mktemp("bad_train") / "run"
    result = _train(run_command, tiny_tfrecords, out, "--epochs=1", "--steps_per_epoch=1")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _probe_files(tmp_path):
    (tmp_path / "other_labels.txt").write_text("\n".join(f"other {i}" for i in range(12)))
    (tmp_path / "garbage.keras").write_bytes(os.urandom(300))
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    stabn_tf.ResNet3D.from_preset("stabn_tiny", num_classes=3).save(tmp_path / "other.keras")


@pytest.mark.parametrize("flags, message", [
    (["--depth=19", "--labels=OTHER_LABELS"], "--depth=19: must be one of"),
    (["--base_lr=-1"], "--base_lr must be >= 0"),
    (["--init=GARBAGE_KERAS"], "garbage.keras"),
    (["--init=GARBAGE_SAFETENSORS"], "garbage.safetensors"),
    (["--init=OTHER_KERAS"], "other.keras"),
    (["--supervised_fraction=0"], "--supervised_fraction must be in (0, 1]"),
    (["--model=baseline", "--attention_supervision_weight=1"], "needs --model=stabn"),
    (["--momentum=1.5"], "--momentum must be in [0, 1)"),
])
def test_failed_setup_is_one_line_and_leaves_the_run_untouched(existing_run, tiny_tfrecords,
                                                              tmp_path, flags, message,
                                                              run_command):
    _probe_files(tmp_path)
    subs = {"OTHER_LABELS": "other_labels.txt", "GARBAGE_KERAS": "garbage.keras",
            "GARBAGE_SAFETENSORS": "garbage.safetensors", "OTHER_KERAS": "other.keras"}
    for key, name in subs.items():
        flags = [f.replace(key, str(tmp_path / name)) for f in flags]
    before = _snapshot(existing_run)
    result = _train(run_command, tiny_tfrecords, existing_run, "--epochs=2", *flags)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "stabn_tf.train: error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert _snapshot(existing_run) == before
    # The run's checkpoint still predicts with its own class names.
    model = stabn_tf.load_model(existing_run / "checkpoints" / "final.keras")
    assert model.class_names[0] != "other 0"


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_corrupt_record_mid_epoch_names_the_shard(tiny_tfrecords, tmp_path, run_command,
                                                  strategy):
    data = tmp_path / "data"
    shutil.copytree(tiny_tfrecords, data)
    shard = sorted(data.glob("train-*.tfrecord"))[0]
    raw = bytearray(shard.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = bytes(64)  # same size: the clip count still trusts it
    shard.write_bytes(bytes(raw))
    result = _train(run_command, data, tmp_path / "run", "--epochs=1", "--steps_per_epoch=4",
                    "--shuffle_buffer=1", f"--strategy={strategy}")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "stabn_tf.train: error" in line]
    assert len(errors) == 1 and "corrupt training data" in errors[0]
    assert shard.name in errors[0] and "--verify" in errors[0]
    assert "Traceback" not in result.stderr
    # Met in the first epoch: no backup exists to mention; TensorFlow's lines stay out.
    assert "no backup was written yet" in errors[0] and "kept in" not in errors[0]
    theirs = [line for line in result.stderr.splitlines()  # TensorFlow's C++ and Python
              if re.search(r"\S+\.(cc|h):\d+\]|tensorflow/|^\w+:tensorflow:|Warning\b",
                           line)]
    assert theirs == [], theirs
