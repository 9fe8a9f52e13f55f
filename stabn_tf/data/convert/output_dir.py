"""Claiming the output directory: refuse a file or an unwritable path, and another
dataset's conversion (unless `--overwrite`), before anything is written."""

from __future__ import annotations

import json
import os

from absl import logging

from stabn_tf.data.convert import lock
from stabn_tf.data.convert.items import UsageError
from stabn_tf.data.convert.manifest import (
    BOX_PROBLEMS_FILE,
    FAILURES_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
)
from stabn_tf.data.convert.shards import SHARD_FILE, STATE_DIR
from stabn_tf.disk import STAGING_PREFIX
from stabn_tf.locking import Flock

#: In STATE_DIR: which dataset the directory holds (so another one is not mixed in).
ORIGIN_FILE = "origin.json"
#: Every file name the converter writes at the top of output_dir (shards: SHARD_FILE).
OWN_FILES = (LABELS_FILE, MANIFEST_FILE, FAILURES_FILE, BOX_PROBLEMS_FILE)


def check_output_dir(output_dir: str) -> None:
    """Refuses, before anything is written, an output_dir that is a file or that cannot be
    created or written."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"output_dir {output_dir} is a file, not a directory")
    existing = os.path.abspath(output_dir)
    while not os.path.exists(existing):  # the part of the path that is already there
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"output_dir {output_dir} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"output_dir {output_dir} is not writable (no write permission on "
                         f"{existing})")


def _own_files(output_dir: str) -> list[str]:
    """The files an earlier conversion left in output_dir (all splits), and nothing else."""
    if not os.path.isdir(output_dir):
        return []
    found = [os.path.join(output_dir, n) for n in sorted(os.listdir(output_dir))
             if _own_name(n)]
    state_dir = os.path.join(output_dir, STATE_DIR)
    if os.path.isdir(state_dir):
        found += [os.path.join(state_dir, n) for n in sorted(os.listdir(state_dir))
                  if n.endswith((".json", ".json.tmp"))]
    return found


def _own_name(name: str) -> bool:
    """A file the converter writes, or the temporary file of one that a killed process
    left behind (`stabn_tf.disk.atomic_path`: `.tmp-<random>-<name>`)."""
    if name.startswith(STAGING_PREFIX):
        name = name.split("-", 2)[-1]
    return name in OWN_FILES or SHARD_FILE.fullmatch(name) is not None


def _recorded_origin(output_dir: str) -> dict | None:
    """Which dataset output_dir holds: the origin file, or an older run's manifest."""
    for path in (os.path.join(output_dir, STATE_DIR, ORIGIN_FILE),
                 os.path.join(output_dir, MANIFEST_FILE)):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return {"dataset": data["dataset"],
                    "input_dir": os.path.realpath(data["input_dir"]),
                    "videos": data.get("videos")}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def claim_output_dir(output_dir: str, origin: dict, overwrite: bool) -> None:
    """Makes output_dir this conversion's: refuses (UsageError) when it holds another
    dataset's files (the stale-shard clean-up would delete them with an INFO line), unless
    `overwrite`, which removes every converter file there first (all splits, so no old
    shard is read with the new ones). A re-run of the same dataset (resume) passes."""
    own = _own_files(output_dir)
    if not own:
        return
    before = _recorded_origin(output_dir)
    if before is not None and before["dataset"] == origin["dataset"] \
            and before["input_dir"] == origin["input_dir"] \
            and before["videos"] in (None, origin["videos"]):
        return
    shards = sum(bool(SHARD_FILE.fullmatch(os.path.basename(p))) for p in own)
    what = (f"the {before['dataset']} conversion of {before['input_dir']} ({shards} shards)"
            if before else "files of an unknown conversion ("
            + ", ".join(os.path.relpath(p, output_dir) for p in own[:3])
            + (", ..." if len(own) > 3 else "") + ")")
    if not overwrite:
        raise UsageError(f"output_dir {output_dir} holds {what}; refusing to replace them: "
                         "pass --overwrite, or choose another --output_dir")
    logging.warning("--overwrite: removing %d files of %s from %s", len(own), what,
                    output_dir)
    for path in own:
        os.remove(path)


class OutputLock:
    """One converter per output_dir: an exclusive `flock` on the directory itself, held
    until the conversion ends. Two converters on one directory would race on the same
    temporary files and shard records; the second now stops at once with one line. The
    kernel drops the lock when its process dies, so a killed converter never blocks the
    next run, and no lock file is left behind."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self._held: Flock | None = None

    def acquire(self, shared: bool = False) -> None:
        """Takes the lock (a shared one for readers such as `--verify`); UsageError when
        a converter holds it. Creates output_dir if needed; idempotent."""
        if self._held is not None:
            return
        if not shared:  # taken already by the command line, before its slow imports
            self._held = lock.adopt(self.output_dir)
            if self._held is not None:
                return
        os.makedirs(self.output_dir, exist_ok=True)
        held = Flock(self.output_dir, shared=shared)
        if not held.acquire():
            raise UsageError(lock.busy_message(self.output_dir, held.holder_pid))
        self._held = held

    def release(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
