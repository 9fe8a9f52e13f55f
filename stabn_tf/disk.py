"""A full disk, said in one line.

The commands that write large files (the exports, the explanation browser) catch a full
disk at their boundary and print which file could not be written, how much room is left
there and what is needed, instead of a traceback from deep inside TensorFlow or PIL.
Python reports it as an `OSError` (ENOSPC, or EDQUOT for a quota); TensorFlow's file
system as one of its own errors whose message carries the same words.
"""

from __future__ import annotations

import errno
import os
import shutil

#: errno values of "no room to write".
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
#: How the C library words them, as TensorFlow's errors quote it.
NO_ROOM_WORDS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) means the disk or quota is full."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            return True
        if any(words in str(error) for words in NO_ROOM_WORDS):
            return True
        error = error.__cause__ or error.__context__
    return False


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system holding `path` (its nearest existing folder)."""
    folder = os.path.abspath(os.fspath(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full_message(error: BaseException, target: str | os.PathLike,
                      needed: int | None = None) -> str | None:
    """The one line for a full disk while writing `target` (the file `error` names, when it
    names one), or None when `error` is something else. `needed`: about how many bytes
    the whole output takes, when known."""
    if not is_disk_full(error):
        return None
    file = getattr(error, "filename", None) or os.fspath(target)
    free = free_bytes(file)
    room = "" if free is None else f" ({_megabytes(free)} free there)"
    need = f"about {_megabytes(needed)}" if needed else "more room"
    return (f"{file}: the disk is full{room}; this needs {need}: free some space and run "
            "the command again")
