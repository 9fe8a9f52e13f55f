"""A full disk while exporting is one line naming the file and what is needed, exit 2,
no traceback, and no partial model left where TF Serving or a phone would pick it up
(ENOSPC simulated: see `full_disk_command` in tests/conftest.py)."""

import errno
import os
import pathlib
import subprocess

import keras
import pytest
import tensorflow as tf

import stabn_tf
from stabn_tf.disk import (
    DiskFullError,
    disk_full_as_error,
    free_bytes,
    is_disk_full,
    require_space,
    write_atomic,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = stabn_tf.STABN.from_preset("stabn_tiny", num_classes=3, num_frames=2)
    path = tmp_path_factory.mktemp("full_disk") / "tiny.keras"
    model.save(path)
    return path, model.count_params()


def test_disk_full_is_recognised_and_said_in_one_line(tmp_path):
    error = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "m.tflite"))
    assert is_disk_full(error)
    assert is_disk_full(tf.errors.ResourceExhaustedError(
        None, None, "saved_model/variables.data; No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    full = DiskFullError.of(error, "elsewhere", needed=2_500_000)
    assert isinstance(full, OSError) and full.errno == errno.ENOSPC
    line = str(full)
    assert line.startswith(f"{tmp_path / 'm.tflite'}: the disk is full (")
    assert line.endswith(" free there); this needs about 2.5 MB: free some space and run "
                         "the same command again")
    assert DiskFullError.of(full) is full
    assert DiskFullError.of(ValueError("bad"), tmp_path) is None
    resumed = str(full.resuming("it resumes from the last backup"))
    assert resumed == f"{line} (it resumes from the last backup)"
    with pytest.raises(DiskFullError) as raised, disk_full_as_error(tmp_path, lambda: 10):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
    assert str(raised.value).startswith(f"{tmp_path}: the disk is full (")
    assert "this needs about 10 bytes:" in str(raised.value)
    with pytest.raises(KeyError), disk_full_as_error(tmp_path):  # the rest passes through
        raise KeyError("bad")


def test_the_space_needed_adds_up_and_pseudo_file_systems_are_not_full(tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr("stabn_tf.disk.free_bytes", lambda path: 405_500)
    with pytest.raises(DiskFullError) as error:
        require_space(str(tmp_path / "latest.weights.h5"), 1_800)
    assert str(error.value) == (f"{tmp_path}/latest.weights.h5: the disk is full (405.5 kB "
                                "free there); this needs about 1.8 kB + the 1.0 MB kept "
                                "free = 1.0 MB: free some space and run the same command "
                                "again")
    monkeypatch.undo()
    assert free_bytes("/proc/stabn-x.json") is None  # no size, not "0 bytes free"
    require_space("/proc/stabn-x.json", 1_800)


def test_write_atomic_keeps_the_old_file_on_a_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"the good old model")

    class Full:  # half of the bytes land, then the disk is full
        def __init__(self, path, mode="r", **kwargs):
            self.f = open(path, mode, **kwargs)  # noqa: SIM115 (closed in __exit__)
            self.name = path

        def __enter__(self):
            return self

        def __exit__(self, *args):
            self.f.close()

        def write(self, data):
            self.f.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", self.name)

    monkeypatch.setattr("stabn_tf.disk.open", Full, raising=False)
    with pytest.raises(OSError) as error:
        write_atomic(target, b"a new model")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(target)
    assert target.read_bytes() == b"the good old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]  # no temporary


def _one_line(result, command: str) -> str:
    """The one error line of `command`, without its prefix."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    prefix = f"stabn_tf.{command}: error: "
    lines = [line for line in result.stderr.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.stderr
    return lines[0].removeprefix(prefix)


@pytest.mark.slow
def test_tflite_export_on_a_full_disk(checkpoint, tmp_path, full_disk_command, own_lines_only):
    path, params = checkpoint
    output = tmp_path / "out" / "tiny.tflite"
    (tmp_path / "out").mkdir()
    output.write_bytes(b"an earlier export")
    result = subprocess.run(full_disk_command("export.tflite", f"--checkpoint={path}",
                                              f"--output={output}", "--noevaluate"),
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    line = _one_line(result, "export.tflite")
    own_lines_only(result)  # the float32 conversion ran, quietly
    assert line.startswith(f"{output}: the disk is full (")
    assert f"this needs about {4 * params / 1e6:.1f} MB: free some space" in line
    assert output.read_bytes() == b"an earlier export"  # the old file, whole
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.tflite"]


@pytest.mark.slow
def test_saved_model_export_on_a_full_disk(checkpoint, tmp_path, full_disk_command,
                                           own_lines_only):
    """TensorFlow's writer reports a full disk as its own error; the half-written version
    is removed, so TF Serving never sees it."""
    path, params = checkpoint
    tf_full = (
        "import os, keras, tensorflow as tf\n"
        "def _write_out(self, filepath, **kwargs):\n"
        "    with open(os.path.join(filepath, 'saved_model.pb'), 'wb') as f:\n"
        "        f.write(b'half')\n"
        "    raise tf.errors.ResourceExhaustedError(None, None, filepath + '/variables/"
        "variables.data-00000-of-00001; No space left on device')\n"
        "type(keras.export.ExportArchive()).write_out = _write_out  # the backend's class\n")
    result = subprocess.run(full_disk_command("export.saved_model", f"--checkpoint={path}",
                                              f"--output_dir={tmp_path / 'serving'}",
                                              then=tf_full),
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    line = _one_line(result, "export.saved_model")
    own_lines_only(result)
    assert line.startswith(f"{tmp_path / 'serving'}: the disk is full (")
    assert f"this needs about {4 * params / 1e6:.1f} MB" in line
    assert list((tmp_path / "serving" / "stabn").iterdir()) == []  # no version, no staging


@pytest.mark.slow
def test_openvino_export_on_a_full_disk(checkpoint, tmp_path, full_disk_command,
                                        own_lines_only):
    """OpenVINO says a full disk as a bare `basic_ios::clear: iostream error`."""
    path, params = checkpoint
    output = tmp_path / "out" / "tiny.xml"
    openvino_full = (
        "import openvino\n"
        "def _save(model, path, **kwargs):\n"
        "    with open(path, 'w') as f:\n"
        "        f.write('<?xml')\n"
        "    stabn_tf.disk.free_bytes = lambda folder: 4096\n"
        "    raise RuntimeError('Exception from src/core/src/pass/serialize.cpp:1:\\n'\n"
        "                       'basic_ios::clear: iostream error')\n"
        "openvino.save_model = _save\n")
    result = subprocess.run(full_disk_command("export.openvino", f"--checkpoint={path}",
                                              f"--output={output}", "--noevaluate",
                                              then=openvino_full),
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    line = _one_line(result, "export.openvino")
    own_lines_only(result)
    assert line.startswith(f"{output}: the disk is full (4.1 kB free there); this "
                           f"needs about {4 * params / 1e6:.1f} MB"), line
    assert list((tmp_path / "out").iterdir()) == []  # no IR, no staging folder


@pytest.mark.slow
@pytest.mark.parametrize("command,name", [("export.tflite", "tiny.tflite"),
                                          ("export.openvino", "tiny.xml")])
def test_exports_into_a_folder_that_refuses_files(checkpoint, tmp_path, command, name,
                                                  run_command):
    """/sys refuses new files even to root: one line before anything is converted. In this
    process: what a fresh one prints on start-up is the other tests' concern."""
    path, _ = checkpoint
    for output, folder, why in [(f"/sys/{name}", "/sys", "Permission denied"),
                                (f"/sys/stabn-test/{name}", "/sys/stabn-test",
                                 "Operation not permitted")]:
        result = run_command(command, f"--checkpoint={path}", f"--output={output}",
                             "--noevaluate")
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"stabn_tf.{command}: error: --output={output}: output directory {folder!r} is "
            f"not writable: {why}"]
