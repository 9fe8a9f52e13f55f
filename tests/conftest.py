"""Test-wide settings (quiet TF logs, float32 restored), the shared tiny data and model, the
two ways to run a command (in this process, or as a fresh `python`), and the check that a
command printed only its own lines."""

import contextlib
import importlib
import io
import os
import pathlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]


#: Fixtures whose tests get a marker without saying so (setup.cfg lists the markers).
MARKED_BY_FIXTURE = {"chromium": ("browser", "slow"), "python": ("e2e",),
                     "full_disk_command": ("e2e",)}


def pytest_collection_modifyitems(items):
    """Marks each test by the fixtures it uses (`MARKED_BY_FIXTURE`), so a test that starts
    a browser or a fresh process is in `-m browser` / `-m e2e` however it was written."""
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            for marker in MARKED_BY_FIXTURE.get(fixture, ()):
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True, scope="module")
def _fresh_keras_state_per_file():
    """Each test file leaves Keras's global state (traced functions, name counters) behind
    it: a long run would otherwise carry every earlier file's graphs, and tests late in the
    suite ran several times slower than alone."""
    yield
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


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


def run_python(*args: object, env: Mapping[str, str | None] | None = None,
               timeout: float = 300, cwd: os.PathLike | str = ROOT,
               stdin: str | None = None) -> subprocess.CompletedProcess:
    """`python *args` in a fresh process (text stdout/stderr captured): for what only a new
    process shows (signals, start-up output, imports, real console scripts). `env` adds to
    this process's environment (TF_CPP_MIN_LOG_LEVEL=2 unless given); None removes a name."""
    merged = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for name, value in (env or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=merged, input=stdin)


@pytest.fixture(scope="session")
def python():
    """`python("-m", "stabn_tf.predict", ...)`: `run_python`, a fresh process."""
    return run_python


@contextlib.contextmanager
def _captured_fds(into: tuple[io.StringIO, io.StringIO]):
    """What is written to file descriptors 1 and 2 meanwhile (TensorFlow's C++ log, native
    libraries) is appended to `into` (stdout, stderr) afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(tempfile.TemporaryFile()) for _ in into]
        saved = [os.dup(fd) for fd in (1, 2)]
        for fd, file in zip((1, 2), files):
            os.dup2(file.fileno(), fd)
        try:
            yield
        finally:
            for fd, old, file, text in zip((1, 2), saved, files, into):
                os.dup2(old, fd)
                os.close(old)
                file.seek(0)
                text.write(file.read().decode(errors="replace"))


@contextlib.contextmanager
def _absl_log_to(stream: io.StringIO):
    """absl's log lines (a command's warnings and INFO lines) go to `stream`, as they go to
    a fresh process's stderr; absl's handler otherwise keeps the stream it found at
    import."""
    from absl import logging as absl_logging

    handler = absl_logging.get_absl_handler().python_handler
    previous = handler.setStream(stream)
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)  # a fresh `app.run` logs INFO lines too
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)
        handler.setStream(previous)


def run_in_process(module: str, *args: object, prog: str | None = None
                   ) -> subprocess.CompletedProcess:
    """Runs the `command` of `module` (e.g. `stabn_tf.predict`) on `args` in this process, as
    `python -m module args` (or the console script `prog`) would, and returns its exit status
    and what it printed (Python's streams, absl's log, file descriptors 1 and 2); its flags are
    removed again afterwards, so the next command (or the same one) defines its own. An
    exception the command lets through is raised here, traceback and all."""
    from absl import app, flags

    found = importlib.import_module(module)
    if hasattr(found, "__path__"):  # a package: `python -m` runs its __main__
        found = importlib.import_module(f"{module}.__main__")
    command = found.command
    app.define_help_flags()  # absl's own (--help, ...): defined once, kept
    argv = [prog or module, *map(str, args)]
    before = set(flags.FLAGS)
    stdout, stderr = io.StringIO(), io.StringIO()
    status: int = 0
    saved_argv = sys.argv
    sys.argv = argv
    try:
        with _captured_fds((stdout, stderr)), contextlib.redirect_stdout(stdout), \
                contextlib.redirect_stderr(stderr), _absl_log_to(stderr):
            try:
                command(argv)
            except SystemExit as e:
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                status = 1 if isinstance(e.code, str) else (e.code or 0)
    finally:
        sys.argv = saved_argv
        flags.FLAGS.unparse_flags()
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)
        command._defined = False
    return subprocess.CompletedProcess(argv, status, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def run_command():
    """`run_command("stabn_tf.predict", "--checkpoint=...", video)`: `run_in_process`, the
    command's `main` with that argv in this process (no TensorFlow start-up to pay)."""
    return run_in_process
