"""A training run's directory: the one place that knows its layout and reads or writes it.

    runs/<name>/
      config.json              the settings the run was started with (and its class names)
      checkpoints/best.keras   best validation perception top-1
      checkpoints/final.keras  the model at the end
      backup/                  crash-safe state; re-running the same command resumes here
                               (a finished run keeps its last state only)
      logs/                    TensorBoard
      history.csv              one row per epoch, counted from 1 (columns: HistoryLog)
      results.json             final validation results
      explanations/*.png       attention figures for a few validation clips

Training writes through `RunDirectory`; evaluation and export read through it (to find the
data a checkpoint was trained on) without importing the trainer. A checkpoint does not need
its run: the model carries its own config, so inference works from the `.keras` file alone.
Every file is written atomically (`stabn_tf.disk.atomic_path`), so an interrupted or failed
command, a full disk or a power cut never leaves half a file behind. One process writes a run
at a time (`RunDirectory.lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping

from stabn_tf.data import synthetic
from stabn_tf.disk import write_atomic
from stabn_tf.errors import StabnError
from stabn_tf.locking import Flock


class RunError(ValueError, StabnError):
    """A run directory (or a setting read from it) that cannot be used; one line."""


def significant(value: float, digits: int = 6) -> float:
    """`value` to `digits` significant digits: float32 results without their noise
    (0.9083333611488342 → 0.908333)."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def _rounded(value):
    if isinstance(value, float):
        return significant(value)
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_patterns(settings: Mapping) -> tuple[str, str]:
    """The training and validation shard patterns a run's settings name ("" where none);
    for the built-in synthetic set, its cache (generated there first when missing, with
    the same arguments training used, so the same files are found)."""
    if settings.get("dataset") == "synthetic":
        root = synthetic.ensure_synthetic_tfrecords(
            settings.get("cache_dir", "data/cache"),
            num_train_per_class=settings["synthetic_train_per_class"],
            num_val_per_class=settings["synthetic_val_per_class"],
            resolution=settings["synthetic_resolution"],
            num_frames=settings["synthetic_frames"], seed=settings.get("seed", 0))
        return os.path.join(root, "train-*.tfrecord"), os.path.join(root, "validation-*.tfrecord")
    return settings.get("train_files", ""), settings.get("val_files", "")


def check_writable_dir(path: str | os.PathLike) -> None:
    """Creates the folder if needed and proves a file can be written in it (leaving nothing
    behind); `RunError` with one line otherwise. Every command that writes into an output
    folder calls this before any work, so a typo does not cost a whole run."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunError(f"output directory {path!r} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as e:
        raise RunError(f"output directory {path!r} is not writable: {e.strerror or e}") \
            from None


class RunDirectory:
    """The files of one run (see the module docstring)."""

    CONFIG = "config.json"
    LOCK = ".lock"

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunDirectory | None:
        """The run that wrote `checkpoint` (`<run>/checkpoints/x.keras`, or `x.keras`
        directly in the run), or None when no run config is found there."""
        here = os.path.dirname(os.path.abspath(checkpoint))
        for folder in (os.path.dirname(here), here):
            if os.path.isfile(os.path.join(folder, cls.CONFIG)):
                return cls(folder)
        return None

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    @property
    def checkpoints(self) -> str:
        return self.file("checkpoints")

    def checkpoint(self, name: str = "final") -> str:
        return self.file("checkpoints", f"{name}.keras")

    @property
    def backup(self) -> str:
        return self.file("backup")

    @property
    def logs(self) -> str:
        return self.file("logs")

    @property
    def explanations(self) -> str:
        return self.file("explanations")

    @property
    def history(self) -> str:
        return self.file("history.csv")

    @property
    def results(self) -> str:
        return self.file("results.json")

    def check_writable(self) -> None:
        check_writable_dir(self.path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Holds the run for this process: a second writer gets `RunError` at once, naming
        the holder. The lock is the kernel's (`flock`), so it ends with its process, however
        that ends: a lock file left by a killed run does not block the next one. The file is
        removed on release, so a command that fails leaves the run byte-identical."""
        held = Flock(self.file(self.LOCK), remove=True)
        if not held.acquire():
            raise RunError(f"{self.path} is in use by another training run "
                           f"({held.holder_text or 'unknown'}); wait for it to end or stop "
                           f"it (lock: {held.path})")
        with held:
            held.write(f"pid {os.getpid()} on {socket.gethostname()}")
            yield

    def clear(self) -> None:
        """Removes what a training run wrote (`--overwrite`); other files stay."""
        for folder in (self.checkpoints, self.backup, self.logs, self.explanations):
            shutil.rmtree(folder, ignore_errors=True)
        for name in (self.CONFIG, "history.csv", "results.json"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.file(name))

    def make_folders(self) -> None:
        for folder in (self.checkpoints, self.logs, self.explanations):
            os.makedirs(folder, exist_ok=True)

    def read_config(self) -> dict | None:
        """The run's settings, or None when it has none yet."""
        path = self.file(self.CONFIG)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as e:
            raise RunError(f"{path}: unreadable run config ({e})") from None
        if not isinstance(config, dict):
            raise RunError(f"{path}: not a run config (a JSON object)")
        return config

    def write_config(self, settings: Mapping) -> None:
        write_atomic(self.file(self.CONFIG), json.dumps(dict(settings), indent=2, default=list))

    def write_results(self, results: Mapping) -> None:
        """results.json, floats to 6 significant digits (`significant`)."""
        write_atomic(self.results, json.dumps(_rounded(dict(results)), indent=2))

    def data_patterns(self) -> tuple[str, str]:
        """(training, validation) shard patterns of the run; `RunError` without a config."""
        config = self.read_config()
        if config is None:
            raise RunError(f"{self.path}: no run config ({self.CONFIG})")
        try:
            return data_patterns(config)
        except KeyError as e:
            raise RunError(f"{self.file(self.CONFIG)}: no {e} setting") from None
