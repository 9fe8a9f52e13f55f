"""The converter's lock on its output_dir, light enough to take before anything slow.

`python -m stabn_tf.data.convert` takes it (`lock_early`) before importing the converter,
whose TensorFlow import can take minutes on a busy machine, so a second converter on the
same directory stops at once; `OutputLock` adopts the lock afterwards (`adopt`). Imports
the standard library only.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence

#: Exclusive locks this process took early, by output_dir's real path.
_HELD: dict[str, int] = {}


def busy_message(output_dir: str, holder: int | None) -> str:
    """The one line for an output_dir that another converter is writing."""
    return (f"output_dir {output_dir} is being written by another converter"
            f"{f' (pid {holder})' if holder else ''}; wait for it to finish, or choose "
            "another --output_dir")


def holder_pid(fd: int) -> int | None:
    """The pid holding a flock on `fd`'s file, from /proc/locks (Linux); None if unknown."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == inode:
                    return int(parts[4])
    except (OSError, ValueError):
        pass
    return None


def lock_early(output_dir: str) -> str | None:
    """Takes the exclusive lock on `output_dir` when it exists (a new one cannot be
    another converter's); returns `busy_message` when another converter holds it."""
    if not os.path.isdir(output_dir):
        return None
    try:
        fd = os.open(output_dir, os.O_RDONLY)
    except OSError:
        return None  # the converter's own checks say what is wrong
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = holder_pid(fd)
        os.close(fd)
        return busy_message(output_dir, holder)
    _HELD[os.path.realpath(output_dir)] = fd
    return None


def adopt(output_dir: str) -> int | None:
    """The descriptor of the lock `lock_early` took on `output_dir`, handed over once."""
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
