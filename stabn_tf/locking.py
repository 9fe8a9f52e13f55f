"""The one way this project holds a file or a directory for a process: the kernel's
`flock`, so a lock ends with its process however that ends (a killed writer never blocks
the next one, and no stale lock needs cleaning by hand).

Used by the training run (`RunDirectory.lock`: a lock file naming its holder), the
converter (`OutputLock`: the output directory itself, taken before TensorFlow is imported)
and the synthetic-data cache (a lock file that waits). Imports the standard library only,
so the converter can take its lock before anything slow. The `filelock` package would
neither lock a directory, take a shared lock, nor name the holding process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


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


class Flock:
    """An flock on `path`: a directory as it is, or a file (created when missing).

    `acquire` takes it at once (False when another process holds it; `holder` then says
    who) or, with `wait`, when it is free. With `remove`, the file is deleted on release,
    and taking it retries when the holder deleted the file between this process's open and
    its flock (else two processes could each hold a lock on a different file of one name).
    """

    def __init__(self, path: str, *, shared: bool = False, remove: bool = False):
        self.path = path
        self.shared = shared
        self.remove = remove
        self.fd: int | None = None
        #: After a failed `acquire`: the holder's pid (None if unknown) and the lock
        #: file's text (what a holder wrote into it; "" for a directory).
        self.holder_pid: int | None = None
        self.holder_text = ""

    def acquire(self, wait: bool = False) -> bool:
        """Takes the lock; idempotent. Raises OSError when `path` cannot be opened."""
        if self.fd is not None:
            return True
        mode = (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
        while True:
            if os.path.isdir(self.path):
                fd = os.open(self.path, os.O_RDONLY)
            else:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                self.holder_pid = holder_pid(fd)
                with contextlib.suppress(OSError):
                    self.holder_text = os.read(fd, 200).decode("utf-8", "replace").strip()
                os.close(fd)
                return False
            if not self.remove:
                break
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)  # the holder removed the file between open and flock: again
        self.fd = fd
        return True

    def write(self, text: str) -> None:
        """Replaces the held lock file's text (e.g. who holds it)."""
        os.ftruncate(self.fd, 0)
        os.write(self.fd, text.encode())

    def release(self) -> None:
        """Drops the lock (closing the descriptor drops the flock); idempotent."""
        if self.fd is None:
            return
        if self.remove:
            with contextlib.suppress(OSError):
                os.remove(self.path)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> Flock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
