"""What every stabn_tf command shares: how it runs, how it fails, and the flags several define.

A command is a module with `define_flags()`, a `main(argv)` over one library function, and
`command = Command(...)`; `python -m stabn_tf.<command>` and its console script
(`stabn-<command>`, setup.cfg) both call `command()`. `Command` turns a `StabnError` (and
the few other errors a command names) into one line on stderr and an exit status, here
and nowhere else. The flags several commands define (`--checkpoint`, `--precision`,
`--num_clips`, ...) are defined here once; `--help` still lists them as the command's own.
TensorFlow-free, like `stabn_tf.errors`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags

from stabn_tf.errors import CommandError, StabnError
from stabn_tf.precision import FLAG_HELP

# Flags defined by the helpers below belong to the command that calls them (its --help).
flags.disclaim_key_flags()

FLAGS = flags.FLAGS

class Command:
    """One command line: absl flags, a `main(argv)`, and one place that turns errors into
    a line on stderr and an exit status.

    Args:
      name: the module, e.g. `stabn_tf.predict`; error lines start `<name>: error: `
        unless `prefix` says otherwise.
      main: `main(argv)`; may return an exit status (None: 0) or raise.
      define_flags: defines the command's flags (once, when the command runs).
      doc: what `--help` prints above the flags (the module docstring).
      exit_code: the status of a `StabnError` that names none (`StabnError.exit_code`).
      errors: further (exception type, status) pairs, checked first, in order.
      prefix: what precedes the message on the error line.
    """

    def __init__(self, name: str, main: Callable[[list[str]], int | None],
                 define_flags: Callable[[], None] | None = None, doc: str | None = None, *,
                 exit_code: int = 2,
                 errors: Sequence[tuple[type[BaseException], int]] = (),
                 prefix: str | None = None):
        self.name, self.main, self.define_flags, self.doc = name, main, define_flags, doc
        self.exit_code, self.errors = exit_code, tuple(errors)
        self.prefix = f"{name}: error: " if prefix is None else prefix

    def __call__(self, argv: Sequence[str] | None = None) -> NoReturn:
        """Defines the flags, parses `argv` (default: sys.argv) and runs `main`."""
        main_module = sys.modules["__main__"]
        if self.doc and not main_module.__doc__:  # a console script's: absl's --help prints it
            main_module.__doc__ = self.doc
        if self.define_flags is not None and not getattr(self, "_defined", False):
            _as_main_module_flags(self.define_flags)
            self._defined = True
        app.run(self._run, argv=None if argv is None else list(argv))
        raise AssertionError("unreachable: app.run exits")  # pragma: no cover

    def _run(self, argv: list[str]) -> int | None:
        try:
            return self.main(argv)
        except BaseException as e:
            code = self.status(e)
            if code is None:
                raise
            print(f"{self.prefix}{e}", file=sys.stderr, flush=True)
            sys.exit(code)

    def status(self, error: BaseException) -> int | None:
        """The exit status for `error`, or None when it is not the user's to fix."""
        if isinstance(error, CommandError):
            return error.exit_code
        for kind, code in self.errors:
            if isinstance(error, kind):
                return code
        if isinstance(error, StabnError):
            return error.exit_code or self.exit_code
        return None


def _as_main_module_flags(define: Callable[[], None]) -> None:
    """Runs `define` and makes the new flags key flags of the main program, whose key
    flags are what absl's --help lists, however the command was started (`python -m`, a
    console script, a script that forwards to it)."""
    before = set(FLAGS)
    define()
    for name in sorted(set(FLAGS) - before):
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])


def fail(message: str, exit_code: int = 2) -> NoReturn:
    """Ends the command with `message` as its error line (`Command` prints it)."""
    raise CommandError(message, exit_code)


def no_arguments(argv: Sequence[str], exit_code: int = 2) -> None:
    """Fails when anything but flags was given (`unexpected arguments [...]`)."""
    if len(argv) > 1:
        fail(f"unexpected arguments {list(argv[1:])}", exit_code)


def require_at_least_one(*names: str, error: type[StabnError] = CommandError) -> None:
    """Fails with `--name=value: must be >= 1` for the first integer flag below 1."""
    for name in names:
        if FLAGS[name].value < 1:
            raise error(f"--{name}={FLAGS[name].value}: must be >= 1")


# --- flags several commands define -------------------------------------------------------


def define_checkpoint(help: str, required: bool = True) -> None:  # noqa: A002 (absl's name)
    """`--checkpoint`: the model a command runs (its kinds differ per command)."""
    flags.DEFINE_string("checkpoint", None, help)
    if required:
        flags.mark_flag_as_required("checkpoint")


def define_precision(extra: str = "") -> None:
    """`--precision`: auto, float32 or bfloat16 (`stabn_tf.precision`)."""
    flags.DEFINE_string("precision", "auto", FLAG_HELP + extra)


def define_num_clips_list(help: str) -> None:  # noqa: A002 (absl's name)
    """`--num_clips` as a list (Table 1's `1,2`); read it with `num_clips_list()`."""
    flags.DEFINE_list("num_clips", ["1", "2"], help)


def num_clips_list() -> list[int]:
    """`--num_clips` as whole numbers; fails with one line otherwise."""
    try:
        return [int(n) for n in FLAGS.num_clips]
    except ValueError:
        fail(f"--num_clips must be whole numbers, got {FLAGS.num_clips}")


def define_top_k(help: str) -> None:  # noqa: A002 (absl's name)
    """`--top_k`: how many classes a command lists."""
    flags.DEFINE_integer("top_k", 5, help)


def define_max_clips(default: int, help: str) -> None:  # noqa: A002 (absl's name)
    """`--max_clips`: how many clips of a TFRecord input (or of the data) a command takes."""
    flags.DEFINE_integer("max_clips", default, help)


def define_batch_size(help: str) -> None:  # noqa: A002 (absl's name)
    """`--batch_size`: videos per batch of the evaluation tables."""
    flags.DEFINE_integer("batch_size", 8, help)


def define_tables(help: str) -> None:  # noqa: A002 (absl's name)
    """`--tables`: which evaluation tables (default all)."""
    flags.DEFINE_list("tables", ["all"], help)


def define_files(help: str) -> None:  # noqa: A002 (absl's name)
    """`--files`: TFRecord globs; default: the validation split of the checkpoint's run."""
    flags.DEFINE_list("files", [], help)


def log(text: str) -> None:
    """Progress lines of a command whose stdout is its result: on stderr, at once."""
    print(text, file=sys.stderr, flush=True)
