"""The converter's lock on its output_dir, light enough to take before anything slow.

`python -m stabn_tf.data.convert` takes it (`lock_early`) before importing the converter,
whose TensorFlow import can take minutes on a busy machine, so a second converter on the
same directory stops at once; `OutputLock` adopts the lock afterwards (`adopt`). Imports
the standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from stabn_tf.locking import Flock

#: Exclusive locks this process took early, by output_dir's real path.
_HELD: dict[str, Flock] = {}


def busy_message(output_dir: str, holder: int | None) -> str:
    """The one line for an output_dir that another converter is writing."""
    return (f"output_dir {output_dir} is being written by another converter"
            f"{f' (pid {holder})' if holder else ''}; wait for it to finish, or choose "
            "another --output_dir")


def lock_early(output_dir: str) -> str | None:
    """Takes the exclusive lock on `output_dir` when it exists (a new one cannot be
    another converter's); returns `busy_message` when another converter holds it."""
    if not os.path.isdir(output_dir):
        return None
    held = Flock(output_dir)
    try:
        if not held.acquire():
            return busy_message(output_dir, held.holder_pid)
    except OSError:
        return None  # the converter's own checks say what is wrong
    _HELD[os.path.realpath(output_dir)] = held
    return None


def adopt(output_dir: str) -> Flock | None:
    """The lock `lock_early` took on `output_dir`, handed over once."""
    return _HELD.pop(os.path.realpath(output_dir), None)


def output_dir_flag(argv: Sequence[str]) -> str | None:
    """--output_dir as absl would read it from `argv` (`--output_dir=X`, `--output_dir X`,
    one dash too); None without it or with `--verify` (which only reads)."""
    found = None
    for i, arg in enumerate(argv):
        name, _, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-"):
            continue
        if name == "verify" and value.lower() not in ("false", "0"):
            return None
        if name == "output_dir":
            found = value if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else None)
    return found
