"""Writing files whole, and a full disk said in one line.

Every file the project writes goes through `atomic_path` (or `write_atomic`): a temporary
file beside the target, flushed to disk, then renamed over it, so an interrupted or failed
command, a full disk or a power cut never leaves half a file behind: a reader sees the old
file or the new one. Writers that stage something else (a shard that resumes, a folder)
publish it with `publish`, the same flush-and-rename.

A full disk is one error, `DiskFullError`, with one wording: which file could not be
written, how much room is left there and what is needed, instead of a traceback from deep
inside TensorFlow or PIL. Python reports a full disk as an `OSError` (ENOSPC, or EDQUOT for
a quota); TensorFlow's file system as one of its own errors whose message carries the same
words: `DiskFullError.of` reads both. A command that knows more (the size of the whole
output, what a re-run resumes from) raises `DiskFullError.of(error, target, needed)` or
`error.resuming(...)`; `stabn_tf.cli.Command` alone prints the line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

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


def _file_named(error: BaseException | None) -> str | None:
    """The file `error` (or an error it was raised from) names, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "filename", None):
            return os.fspath(error.filename)
        error = error.__cause__ or error.__context__
    return None


class DiskFullError(OSError, StabnError):
    """Not enough room to write a file: one line naming the file, the room left there and
    the room needed (bytes, or words such as "about 40 MB more for 3 videos"), and what a
    re-run resumes from. An `OSError` with errno ENOSPC, so `is_disk_full` knows it too."""

    def __init__(self, path: str | None, needed: int | str | None = None,
                 free: int | None = None, *, reserve: int = 0, resumes: str = ""):
        self.path, self.needed, self.free = path, needed, free
        self.reserve, self.resumes = reserve, resumes
        super().__init__(errno.ENOSPC, self.message, path)

    @property
    def message(self) -> str:
        if isinstance(self.needed, int) and self.needed:
            need = f"about {_size(self.needed)}"
            if self.reserve:  # the numbers add up: needed + reserve against free
                need += (f" + the {_size(self.reserve)} kept free = "
                         f"{_size(self.needed + self.reserve)}")
        else:
            need = self.needed or "more room"
        where = f"{self.path}: " if self.path else ""
        room = f" ({_size(self.free)} free there)" if self.free is not None else ""
        after = f" ({self.resumes})" if self.resumes else ""
        return (f"{where}the disk is full{room}; this needs {need}: free some space and run "
                f"the same command again{after}")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable across worker processes, keyword arguments included
        return (_rebuild, (self.path, self.needed, self.free, self.reserve, self.resumes))

    @classmethod
    def of(cls, error: BaseException, target: str | os.PathLike | None = None,
           needed: int | str | None = None) -> DiskFullError | None:
        """`error` as a `DiskFullError` (itself when it is one), or None when it is not a
        full disk. The file is the one `error` names, else `target`; `needed`: about how
        many bytes the whole output takes, when known."""
        if isinstance(error, DiskFullError):
            return error
        if not is_disk_full(error):
            return None
        file = _file_named(error) or (os.fspath(target) if target is not None else None)
        return cls(file, needed, None if file is None else free_bytes(file))

    def resuming(self, resumes: str) -> DiskFullError:
        """The same error, saying what the next run resumes from (`resumes`)."""
        return DiskFullError(self.path, self.needed, self.free, reserve=self.reserve,
                             resumes=resumes)


def _rebuild(path, needed, free, reserve, resumes) -> DiskFullError:
    return DiskFullError(path, needed, free, reserve=reserve, resumes=resumes)


@contextlib.contextmanager
def disk_full_as_error(target: str | os.PathLike,
                       needed: Callable[[], int | None] | None = None,
                       resumes: str = "") -> Iterator[None]:
    """Inside the block, a full disk raised as anything (TensorFlow's, PIL's, an `OSError`)
    becomes a `DiskFullError` naming the file (else `target`), the room `needed()` says the
    whole output takes (when it knows), and what a re-run `resumes` from."""
    try:
        yield
    except Exception as e:
        full = DiskFullError.of(e, target)
        if full is None:
            raise
        size = needed() if needed is not None else None
        if size:  # the whole output's size says more than the one file's
            full = DiskFullError(full.path, size, full.free, reserve=full.reserve)
        if resumes:
            full = full.resuming(resumes)
        if full is e:
            raise
        raise full from e


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
            raise DiskFullError(path, size, free, reserve=RESERVE_BYTES)


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
            raise DiskFullError(path, max(expected_bytes, written), free_bytes(path)) from None
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
