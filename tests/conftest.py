"""Test-wide settings (quiet TF logs, float32 restored) and the shared tiny data and model."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def tiny_tfrecords(tmp_path_factory):
    """A tiny synthetic dataset converted to TFRecords (12 classes, 2 + 1 videos each)."""
    from stabn_tf.data.synthetic import ensure_synthetic_tfrecords

    cache = tmp_path_factory.mktemp("synthetic_cache")
    return ensure_synthetic_tfrecords(cache, num_train_per_class=2, num_val_per_class=1,
                                      resolution=48, num_frames=8, num_shards=2, progress=False)


@pytest.fixture(scope="session")
def calibrated_stabn(tiny_tfrecords):
    """Makes a small ST-ABN (R18, the tiny set's 12 classes and their names) whose BN
    statistics come from 8 of the tiny set's training clips, so export tests see real
    activations, not fresh-BN ones."""
    def make(num_frames: int, image_size: int, width_multiplier: float = 0.125):
        import keras

        import stabn_tf
        from stabn_tf.data import read_labels
        from stabn_tf.deploy import tflite

        keras.utils.set_random_seed(0)
        model = stabn_tf.build_stabn(
            num_classes=12, num_frames=num_frames, image_size=image_size, depth=18,
            width_multiplier=width_multiplier,
            class_names=read_labels(os.path.join(tiny_tfrecords, "labels.txt")))
        clips = tflite.representative_clips(f"{tiny_tfrecords}/train-*.tfrecord", 8,
                                            model.preprocessor)
        tflite.calibrate_batch_norm(model, clips)
        return model
    return make


#: Python run before a command (`python -c PRELUDE + runpy...`) so that every atomic write
#: (`stabn_tf.runs.write_atomic`: its temporary file) meets a full disk half-way, as ENOSPC.
FULL_DISK_PRELUDE = """
import builtins, errno, os, runpy, sys
import stabn_tf.runs

class _Full:  # the atomic writer's staging file: half of the bytes land, then ENOSPC
    def __init__(self, path, mode="r", *args, **kwargs):
        self.f, self.name = builtins.open(path, mode, *args, **kwargs), path
    def __enter__(self):
        return self
    def __exit__(self, *args):
        self.f.close()
    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device", self.name)

def _open(path, mode="r", *args, **kwargs):
    staging = os.path.basename(os.fspath(path)).startswith(".tmp-") and "w" in mode
    return (_Full if staging else builtins.open)(path, mode, *args, **kwargs)

stabn_tf.runs.open = _open
"""


@pytest.fixture
def full_disk_command():
    """`command(module, *args, then="")`: the argv that runs `python -m module args` with
    every atomic write failing on a full disk (`FULL_DISK_PRELUDE`), after the Python
    in `then` (more of the same for other writers)."""
    import sys

    def command(module: str, *args: str, then: str = "") -> list[str]:
        run = (f"sys.argv = [{module!r}, *{list(map(str, args))!r}]\n"
               f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
        return [sys.executable, "-c", FULL_DISK_PRELUDE + then + "\n" + run]
    return command
