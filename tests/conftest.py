"""Test-wide settings (quiet TF logs, float32 restored), the shared tiny data and model, and
the check that a command printed only its own lines."""

import os
import re
import subprocess

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
        model = stabn_tf.STABN.from_preset(
            "stabn_tiny", num_frames=num_frames, image_size=image_size,
            width_multiplier=width_multiplier,
            class_names=read_labels(os.path.join(tiny_tfrecords, "labels.txt")))
        clips = tflite.representative_clips(f"{tiny_tfrecords}/train-*.tfrecord", 8,
                                            model.preprocessor)
        tflite.calibrate_batch_norm(model, clips)
        return model
    return make


#: Python run before a command (`python -c PRELUDE + runpy...`) so that every atomic write
#: (`stabn_tf.disk.write_atomic`: its temporary file) meets a full disk half-way, as ENOSPC.
FULL_DISK_PRELUDE = """
import builtins, errno, os, runpy, sys
import stabn_tf.disk

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

stabn_tf.disk.open = _open
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


#: Lines that TensorFlow, absl, Keras, LiteRT, OpenVINO/NNCF or Python's warnings print, and
#: no stabn_tf tool does (every tool prints only its own lines). Strict on purpose:
#: a tool whose output matches one of these is fixed, not the pattern.
FOREIGN_LINE = re.compile("|".join((
    r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+",  # absl C++: W0000 00:00:1733412345.1 7 x.cc:9]
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ",  # TF's older C++ prefix
    r"\b[IWEF] (tensorflow|external|third_party|xla)/",
    r"^(WARNING|INFO|DEBUG|ERROR|CRITICAL|FATAL)\b",  # Python logging / LiteRT's INFO:
    r"^\[ ?(WARNING|INFO|DEBUG|ERROR) ?\]",  # OpenVINO
    r"absl::InitializeLog|oneDNN custom operations|rebuild TensorFlow|cuda|cuDNN|cuFFT",
    r"TensorFlow Lite|XNNPACK|TfLite|MLIR|fully_quantize|inference_type",
    r"[A-Z]\w*Warning\b|warnings\.warn|[Dd]eprecat",  # Python warnings (and their source)
    r"Assets written to|Saved artifact at|Fingerprint not found|endpoints are available",
    r"━|\d+ms/step|\ds/step",  # Keras's and rich's (NNCF's) progress bars; tqdm's is ours
    r"^nncf|^openvino|^keras|^tensorflow|^absl",
)))


def foreign_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The lines of a finished command's stdout + stderr that `FOREIGN_LINE` says are not
    ours."""
    return [line for line in (result.stdout + result.stderr).splitlines()
            if FOREIGN_LINE.search(line)]


@pytest.fixture
def own_lines_only():
    """`own_lines_only(result)`: fails listing every foreign line of the command's output
    in full (pytest's diff of a long list would cut them short)."""
    def check(result: subprocess.CompletedProcess) -> None:
        foreign = foreign_lines(result)
        assert not foreign, "lines that are not ours:\n" + "\n".join(foreign)
    return check
