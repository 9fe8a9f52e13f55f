"""The one base of stabn_tf's own errors.

Every error the project raises for something the user can fix (a bad flag, a missing file,
a full disk, a reply that is not what a signature returns) derives from `StabnError` and
keeps its other base (`ValueError`, `OSError`, ...), so existing `except` clauses still
catch it. `str()` of a `StabnError` is one line: every command prints it on stderr and
exits with a status (`stabn_tf.cli`), in one place instead of one per command. This
module imports nothing, so the TensorFlow-free REST client can use it too.
"""

from __future__ import annotations


class StabnError(Exception):
    """An input or fault the user can fix; `str()` is one line for them.

    `exit_code`, when set, is the status a command exits with; None leaves it to the
    command (see `stabn_tf.cli.Command`)."""

    exit_code: int | None = None


class CommandError(StabnError):
    """A command's own one-line failure with the status it exits with."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
