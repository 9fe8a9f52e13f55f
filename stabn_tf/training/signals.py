"""SIGINT and SIGTERM as one exception, so a stopped run can say one line and exit 130/143.

Ctrl-C sends SIGINT; preemptible machines and schedulers send SIGTERM (and SIGKILL a while
later). Both become `Interrupted` in the main thread at the next Python instruction: the
running training step finishes (TensorFlow does not return earlier), a backup being written
is abandoned (its temporary file is removed; the last complete backup stays, see
`stabn_tf.training.backup`), and the command exits with 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by `signum`; `str()` is the one line to print."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum = signum
        self.message = message or f"stopped by {self.signal_name} before training started"

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return self.message


@contextlib.contextmanager
def interruptible(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, `signums` raise `Interrupted` (the previous handlers come back
    after it). A second signal while the first is being handled acts as if there were no
    handler (a second Ctrl-C ends a process that hangs on its way out)."""
    def stop(signum, frame):
        for s in signums:
            signal.signal(s, signal.SIG_DFL)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, stop) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
