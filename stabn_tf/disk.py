"""Writing files whole, and a full disk said in one line.

Every file the project writes goes through `atomic_path` (or `write_atomic`): a temporary
file beside the target, flushed to disk, then renamed over it, so an interrupted or failed
command, a full disk or a power cut never leaves half a file behind: a reader sees the old
file or the new one. Writers that stage something else (a shard that resumes, a folder)
publish it with `publish`, the same flush-and-rename.

The commands that write large files (the exports, the explanation browser) catch a full
disk at their boundary and print which file could not be written, how much room is left
there and what is needed, instead of a traceback from deep inside TensorFlow or PIL.
Python reports it as an `OSError` (ENOSPC, or EDQUOT for a quota); TensorFlow's file
system as one of its own errors whose message carries the same words.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator

from stabn_tf.errors import StabnError

#: errno values of "no room to write".
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)
#: How the temporary files `atomic_path` writes beside their target begin.
STAGING_PREFIX = ".tmp-"

_UMASK = os.umask(0)
os.umask(_UMASK)

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
    """Free bytes on the file system holding `path` (its nearest existing folder); None
    when unknown, as on a file system of no size (/proc, /sys), which is not full."""
    folder = os.path.abspath(os.fspath(path))
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return usage.free if usage.total else None


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


class DiskFullError(OSError, StabnError):
    """Not enough space to write a file; the message names the file and the space needed.
    An `OSError` with errno ENOSPC, so `is_disk_full` knows it too."""

    def __init__(self, path: str, needed: int, free: int | None = None, reserve: int = 0):
        need = _size(needed)
        if reserve:  # the numbers add up: needed + reserve against free
            need += f" + the {_size(reserve)} kept free = {_size(needed + reserve)}"
        where = f"; {_size(free)} free" if free is not None else ""
        self.message = f"no space left on the device for {path} (it needs about {need}{where})"
        super().__init__(errno.ENOSPC, self.message, path)

    def __str__(self) -> str:
        return self.message


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


#: Room `require_space` leaves free beyond what a file needs (for the logs, the next file).
RESERVE_BYTES = 1_000_000


def require_space(path: str, size: int, reclaimable: int = 0) -> None:
    """`DiskFullError` unless the disk of `path` has `size` bytes free and `RESERVE_BYTES`
    to spare, counting `reclaimable` bytes the caller will delete first."""
    free = free_bytes(os.path.dirname(os.path.abspath(path))) if size else None
    if free is not None:  # unknown: the write itself says what is wrong
        free += reclaimable
        if free < size + RESERVE_BYTES:
            raise DiskFullError(path, size, free, RESERVE_BYTES)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, expected_bytes: int = 0) -> Iterator[str]:
    """Yields a temporary path beside `path` to write to (same file-name ending, so Keras
    and h5py accept it). When the block ends, the file is flushed to disk and renamed over
    `path`; when it fails or is interrupted, the temporary file is removed and `path` is
    untouched. With `expected_bytes`, a disk without that much free space is refused
    before writing (h5py can crash the process on a full disk)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    require_space(path, expected_bytes)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=STAGING_PREFIX,
                                     suffix="-" + os.path.basename(path))
    os.close(fd)
    os.chmod(temporary, 0o666 & ~_UMASK)  # as an ordinary open() would (mkstemp: 0600)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException as e:
        written = _written(temporary)
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if is_disk_full(e):
            raise DiskFullError(path, max(expected_bytes, written)) from None
        raise
    _fsync_folder(folder)


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Writes text (UTF-8) or bytes to `path` atomically (see `atomic_path`)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_path(path, expected_bytes=len(data)) as temporary, open(temporary, "wb") as f:
        f.write(data)


def publish(staged: str | os.PathLike, path: str | os.PathLike) -> None:
    """Renames `staged` (a file, or a folder of files, written beside `path`) over `path`
    after flushing it to disk, and makes the rename durable: the flush-and-rename of
    `atomic_path`, for writers that stage their output themselves."""
    staged, path = os.fspath(staged), os.fspath(path)
    if os.path.isdir(staged):
        for folder, _, names in os.walk(staged):
            for name in names:
                _fsync(os.path.join(folder, name))
            _fsync_folder(folder)
    else:
        _fsync(staged)
    os.replace(staged, path)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


def _fsync(path: str) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _written(path: str) -> int:
    with contextlib.suppress(OSError):
        return os.path.getsize(path)
    return 0


def _fsync_folder(folder: str) -> None:
    """Makes a rename in `folder` durable (where the file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
