"""The per-video scores of an evaluation's finished batches, kept so an interrupted
evaluation resumes from its last finished batch.

In `<output_dir>/partial/` (`PARTIAL`): `settings.json` (what the scores depend on; a run
with other settings is refused in one line) and, per pass and shard,
`<pass>/<shard>-<batch>.npz` for each finished batch, merged into `<pass>/<shard>.npz` once
the shard is done (so the folder holds a few files per shard, not one per batch). Every
file is written whole (`stabn_tf.disk.write_atomic`): Ctrl-C, SIGTERM or a full disk leave
the last finished batch. The folder is removed once `results.json` is written.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile

import numpy as np

from stabn_tf.disk import DiskFullError, write_atomic
from stabn_tf.evaluate.errors import EvaluationError

#: The folder of `output_dir` that holds an unfinished evaluation.
PARTIAL = "partial"
SETTINGS = "settings.json"

Scores = dict[str, np.ndarray]


def to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """`arrays` as an uncompressed `.npz`."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def from_bytes(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        return {name: loaded[name] for name in loaded.files}


def concatenate(parts: list[Scores]) -> Scores:
    """The parts' arrays joined along the video axis, name by name."""
    if not parts:
        return {}
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


class ScoreStore:
    """Finished batches' per-video scores, by (pass, shard index, batch index).

    `folder=None` keeps them in memory (a library call without `output_dir`); otherwise
    they are files in `folder` (see the module docstring).
    """

    def __init__(self, folder: str | None = None):
        self.folder = folder
        self._memory: dict[tuple[str, int], list[Scores]] = {}
        self._done: dict[tuple[str, int], Scores] = {}
        self._listing: dict[str, set[str]] = {}

    # -- settings ----------------------------------------------------------------------

    def begin(self, settings: dict, restart: bool = False) -> bool:
        """Checks `settings` against the unfinished evaluation's (one line naming each that
        differs) and records them; with `restart`, drops what is there first. Returns
        whether there was something to resume."""
        if self.folder is None:
            return False
        settings = json.loads(json.dumps(settings))
        path = os.path.join(self.folder, SETTINGS)
        if restart:
            self.clear()
        previous = None
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    previous = json.load(f)
            except (OSError, ValueError) as e:
                raise EvaluationError(f"{path} is unreadable ({e}): pass --restart to start "
                                      "the evaluation afresh") from None
        if previous is not None:
            differences = [f"--{name}={_flag_value(previous.get(name))} "
                           f"(now {_flag_value(value)})"
                           for name, value in settings.items() if previous.get(name) != value]
            if differences:
                raise EvaluationError(
                    f"{os.path.dirname(self.folder)} holds an unfinished evaluation with other "
                    f"settings: {', '.join(differences)}. Resume it with its own settings, "
                    "start it afresh with --restart, or choose another --output_dir")
            return True
        self._write(path, json.dumps(settings, indent=2).encode("utf-8"))
        return False

    def clear(self) -> None:
        """Drops every kept score (after the results are written, or on --restart)."""
        self._memory.clear()
        self._done.clear()
        self._listing.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- batches -------------------------------------------------------------------------

    def _names(self, key: str) -> set[str]:
        if key not in self._listing:
            folder = os.path.join(self.folder, key)
            self._listing[key] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        return self._listing[key]

    def finished(self, key: str, shard: int) -> bool:
        if self.folder is None:
            return (key, shard) in self._done
        return f"{shard:05d}.npz" in self._names(key)

    def batches_done(self, key: str, shard: int) -> int:
        """How many of the shard's first batches are kept."""
        if self.folder is None:
            return len(self._memory.get((key, shard), []))
        names, count = self._names(key), 0
        while f"{shard:05d}-{count:06d}.npz" in names:
            count += 1
        return count

    def save_batch(self, key: str, shard: int, batch: int, scores: Scores) -> None:
        if self.folder is None:
            self._memory.setdefault((key, shard), []).append(scores)
            return
        name = f"{shard:05d}-{batch:06d}.npz"
        self._write(os.path.join(self.folder, key, name), to_bytes(scores))
        self._names(key).add(name)

    def finish(self, key: str, shard: int) -> None:
        """Merges the shard's batches into one file (then drops theirs)."""
        if self.folder is None:
            self._done[(key, shard)] = concatenate(self._memory.pop((key, shard), []))
            return
        count = self.batches_done(key, shard)
        names = [f"{shard:05d}-{b:06d}.npz" for b in range(count)]
        merged = concatenate([self._read(key, name) for name in names])
        self._write(os.path.join(self.folder, key, f"{shard:05d}.npz"), to_bytes(merged))
        self._names(key).add(f"{shard:05d}.npz")
        for name in names:
            os.remove(os.path.join(self.folder, key, name))
            self._names(key).discard(name)

    def shard(self, key: str, shard: int) -> Scores:
        """The per-video scores of a finished shard."""
        if self.folder is None:
            return self._done[(key, shard)]
        return self._read(key, f"{shard:05d}.npz")

    # -- files ---------------------------------------------------------------------------

    def _read(self, key: str, name: str) -> Scores:
        path = os.path.join(self.folder, key, name)
        try:
            with open(path, "rb") as f:
                return from_bytes(f.read())
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise EvaluationError(f"{path} is unreadable ({e}): pass --restart to start the "
                                  "evaluation afresh") from None

    def _write(self, path: str, data: bytes) -> None:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, data)
        except OSError as e:
            full = DiskFullError.of(e, path)
            if full is None:
                raise EvaluationError(f"cannot write {path} ({e.strerror or e})") from None
            raise full.resuming(f"the finished batches are kept in {self.folder} and the "
                                "evaluation resumes from them") from None

