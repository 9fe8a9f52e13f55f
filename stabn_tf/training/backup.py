"""Crash-safe training state: a backup that any interruption leaves resumable.

Keras's `BackupAndRestore` overwrites `latest.weights.h5` in place and pairs it with
`training_metadata.json` by name only: a Ctrl-C or a full disk during the write leaves half
a file that every later run fails to load, and it falls back to the previous pair only on
`OSError`. `RunBackup` keeps Keras's layout (so older backups still resume) but

- writes each file atomically (`stabn_tf.disk.atomic_path`) after checking the free space;
- moves the current pair to `*.bkp` before writing the next, so at every moment one
  complete pair is on disk (at most two copies of the state, never three);
- records the SHA-256 of its weights in the metadata, so a pair is only used whole: the
  newest metadata whose weights file matches and loads wins, whatever was interrupted;
- records in the metadata what `save_weights` leaves out and an exact resume needs: the
  random-seed states of the layers (dropout) and, mid-epoch, the running sums of the
  epoch's metrics, so the resumed epoch's losses and history row are the uninterrupted
  run's. Keras's own backup restores the epoch only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator

import keras
import numpy as np

from stabn_tf.disk import atomic_path, require_space, write_atomic
from stabn_tf.errors import StabnError
from stabn_tf.runs import file_sha256


class BackupError(RuntimeError, StabnError):
    """No backup in the folder can be resumed from; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class BackupState:
    """Where a backup stands: `epoch` epochs done, then `step` steps of the next one."""

    epoch: int
    step: int

    def __str__(self) -> str:
        where = f"epoch {self.epoch + 1}, step {self.step}" if self.step else \
            f"end of epoch {self.epoch}"
        return where if self.epoch or self.step else "start"


def state_bytes(model: keras.Model, with_optimizer: bool = True) -> int:
    """About how many bytes a weights file of `model` (and its optimizer) takes."""
    variables = list(model.weights)
    if with_optimizer and getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    raw = sum(math.prod(v.shape) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
              for v in variables)
    return int(raw * 1.05) + (256 << 10)  # HDF5 / zip headers and names


@contextlib.contextmanager
def _weights_file(path: str) -> Iterator[str]:
    """`path` under a name Keras loads (`*.weights.h5`): a `.bkp` is linked (or copied)."""
    if path.endswith(".weights.h5"):
        yield path
        return
    alias = path + ".weights.h5"
    with contextlib.suppress(FileNotFoundError):
        os.remove(alias)
    try:
        os.link(path, alias)
    except OSError:
        shutil.copyfile(path, alias)
    try:
        yield alias
    finally:
        with contextlib.suppress(OSError):
            os.remove(alias)


def _seed_states(model: keras.Model) -> list:
    """The layers' random-seed states (`SeedGenerator`s): in `variables`, not in `weights`
    nor in a weights file."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def _read(variables) -> list:
    return [np.asarray(keras.ops.convert_to_numpy(v)).tolist() for v in variables]


def _assign(variables, values: list) -> bool:
    """Assigns `values` to `variables` when they match in number and shape."""
    variables = list(variables)
    if len(values) != len(variables) or any(
            np.shape(x) != tuple(v.shape) for v, x in zip(variables, values, strict=True)):
        return False
    for variable, value in zip(variables, values, strict=True):
        variable.assign(np.asarray(value, dtype=keras.backend.standardize_dtype(variable.dtype)))
    return True


def save_model_atomic(model: keras.Model, path: str) -> None:
    """`model.save(path)`, atomically and after checking the free space."""
    with atomic_path(path, expected_bytes=state_bytes(model)) as temporary:
        model.save(temporary)


class RunBackup(keras.callbacks.Callback):
    """Backs up the fitted model's state every `every_steps` steps (0: at each epoch's end)
    and restores it (`restore`, before `fit`). Saving stops once `should_save()` is False
    (e.g. after a non-finite loss: a backup of NaN weights would be resumed from)."""

    WEIGHTS = "latest.weights.h5"
    METADATA = "training_metadata.json"
    PREVIOUS = ".bkp"

    def __init__(self, backup_dir: str, every_steps: int = 0,
                 should_save: Callable[[], bool] = lambda: True):
        super().__init__()
        self.backup_dir = backup_dir
        self.every_steps = every_steps
        self.should_save = should_save
        self.saved: BackupState | None = None
        self.step_offset = 0  # steps of the first epoch done before this `fit` (a resume)
        self._epoch = 0
        self._metrics: list | None = None  # the resumed epoch's, assigned when it begins

    @classmethod
    def exists(cls, backup_dir: str) -> bool:
        """Whether `backup_dir` holds a backup to resume from (the current or previous
        pair's record), so failure lines mention one only when there is one."""
        record = os.path.join(backup_dir, cls.METADATA)
        return os.path.exists(record) or os.path.exists(record + cls.PREVIOUS)

    def _path(self, name: str, previous: bool = False) -> str:
        return os.path.join(self.backup_dir, name + (self.PREVIOUS if previous else ""))

    # -- restoring ---------------------------------------------------------------------

    def restore(self, model: keras.Model, log: Callable[[str], None] = print
                ) -> BackupState | None:
        """Loads the newest complete backup into `model` (built, with its optimizer) and
        returns where it stands; None without a backup. An unreadable backup (missing,
        truncated, damaged, another model's) falls back to the previous one with one line
        through `log`; `BackupError` when none is usable."""
        metadata_files = [p for p in (self._path(self.METADATA),
                                      self._path(self.METADATA, previous=True))
                          if os.path.exists(p)]
        if not metadata_files:
            return None
        weights_files = [p for p in (self._path(self.WEIGHTS),
                                     self._path(self.WEIGHTS, previous=True))
                         if os.path.exists(p)]
        digests: dict[str, str] = {}
        problems = []
        for metadata_file in metadata_files:
            try:
                with open(metadata_file, encoding="utf-8") as f:
                    metadata = json.load(f)
                state = BackupState(int(metadata["epoch"]), int(metadata.get("batch", 0)))
            except (OSError, ValueError, KeyError, TypeError) as e:
                problems.append(f"{os.path.basename(metadata_file)} is unreadable ({e})")
                continue
            if "sha256" in metadata:
                for path in weights_files:
                    if path not in digests:
                        digests[path] = file_sha256(path)
                candidates = [p for p in weights_files if digests[p] == metadata["sha256"]]
            else:  # a backup written by Keras's BackupAndRestore: paired by name
                paired = metadata_file.replace(self.METADATA, self.WEIGHTS)
                candidates = [paired] if paired in weights_files else []
            if not candidates:
                problems.append(f"the weights of the backup at {state} are missing or "
                                "incomplete")
                continue
            try:
                with _weights_file(candidates[0]) as path:
                    model.load_weights(path)
                _assign(_seed_states(model), metadata.get("seed_states", []))
            except Exception as e:  # noqa: BLE001 (h5py, Keras and TF each raise their own)
                first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
                problems.append(f"{os.path.basename(candidates[0])} does not load "
                                f"({first_line[:200]})")
                continue
            if problems:
                log(f"backup in {self.backup_dir}: {'; '.join(problems)}; resuming from the "
                    f"previous backup at {state}")
            self.saved = state
            self._metrics = metadata.get("metrics") if state.step else None
            return state
        raise BackupError(
            f"no usable backup in {self.backup_dir}: {'; '.join(problems)}. Delete that folder "
            "to train from the start (the checkpoints and history stay), or pass --overwrite "
            "to start the run afresh")

    # -- saving ------------------------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._metrics is not None:
            self._add_resumed_metrics(logs)
        step = batch + 1 + self.step_offset
        # Not after an epoch's last step: its validation, history row and best checkpoint
        # are still to come, and a backup that skipped them would resume past them. The
        # epoch-end backup (after those callbacks) follows.
        last = self.params.get("steps") is not None and batch + 1 >= self.params["steps"]
        if self.every_steps and step % self.every_steps == 0 and not last \
                and self.should_save():
            self.save(BackupState(self._epoch, step))

    def on_epoch_end(self, epoch, logs=None):
        if self.should_save():
            self.save(BackupState(epoch + 1, 0))

    def _add_resumed_metrics(self, logs: dict | None) -> None:
        """After the first step of a resumed epoch, adds the sums of the steps before the
        interruption to the epoch's metrics (Keras builds them in that first step; every
        metric here is a running mean, a total and a count), and corrects that step's logs,
        so the progress bar, the history and the callbacks see the uninterrupted run's."""
        saved, self._metrics = self._metrics, None
        variables = self.model.metrics_variables
        if len(saved) != len(variables):
            return
        for variable, value in zip(variables, saved, strict=True):
            variable.assign_add(np.asarray(value, keras.backend.standardize_dtype(
                variable.dtype)))
        if logs is not None:
            logs.update({k: float(keras.ops.convert_to_numpy(v))
                         for k, v in self.model.get_metrics_result().items() if k in logs})

    def save(self, state: BackupState) -> None:
        """Saves the fitted model's weights and optimizer state as the backup at `state`."""
        os.makedirs(self.backup_dir, exist_ok=True)
        weights, metadata = self._path(self.WEIGHTS), self._path(self.METADATA)
        needed = os.path.getsize(weights) if os.path.exists(weights) else \
            state_bytes(self.model)
        # The pair before the current one is dropped first, so the disk holds at most two
        # states while the next is written.
        previous_weights = weights + self.PREVIOUS
        require_space(weights, needed, reclaimable=os.path.getsize(previous_weights)
                      if os.path.exists(previous_weights) else 0)
        # The current pair becomes the previous one.
        for path in (weights, metadata):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, path + self.PREVIOUS)
        needed = os.path.getsize(previous_weights) if os.path.exists(previous_weights) else \
            state_bytes(self.model)
        with atomic_path(weights, expected_bytes=needed) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        record = {"epoch": state.epoch, "batch": state.step, "sha256": file_sha256(weights),
                  "seed_states": _read(_seed_states(self.model))}
        if state.step:
            record["metrics"] = _read(self.model.metrics_variables)
        write_atomic(metadata, json.dumps(record))
        self.saved = state

    def keep_latest_only(self) -> None:
        """Removes the previous pair (`*.bkp`): a finished run keeps one copy of its state,
        enough to train it longer (`--epochs`), half the space."""
        for name in (self.WEIGHTS, self.METADATA):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(name, previous=True))
