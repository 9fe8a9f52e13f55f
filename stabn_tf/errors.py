"""The one base of stabn_tf's own errors.

Every error the project raises for something the user can fix (a bad flag, a missing file,
a full disk, a reply that is not what a signature returns) derives from `StabnError` and
keeps its other base (`ValueError`, `OSError`, ...), so existing `except` clauses still
catch it. `str()` of a `StabnError` is one line: every command prints it on stderr as
`<command>: error: <line>` and exits with status 2 (`stabn_tf.cli.Command`, the one place
that does). Code that catches one only to re-raise it as another with the same text adds
nothing: let it through. This module imports nothing, so the TensorFlow-free REST client
can use it too.
"""

from __future__ import annotations


class StabnError(Exception):
    """An input or fault the user can fix; `str()` is one line for them."""


class CommandError(StabnError):
    """A command's own one-line failure (a flag it cannot use, an argument too many)."""
