"""What every stabn_tf command shares: how it runs, how it fails, and the flags several define.

A command is a module with `define_flags()`, a `main(argv)` over one library function, and
`command = Command(...)`; `python -m stabn_tf.<command>` and its console script
(`stabn-<command>`, setup.cfg) both call `command()`. `Command` alone turns an error into
its line, by one rule for every command: a `StabnError`, a full disk (`DiskFullError`, also
when a library below raised it as its own error) and the few OS errors a command names print
`<command>: error: <one line>` on stderr and exit with status 2 (`ERROR_STATUS`); any other
exception is a bug and keeps its traceback (Python's status 1); Ctrl-C is one line and
status 130 (`INTERRUPTED_STATUS`). The flags several commands
define (`--checkpoint`, `--precision`, `--num_clips`, ...) are defined here once; `--help`
still lists them as the command's own. TensorFlow-free, like `stabn_tf.errors`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags

from stabn_tf.disk import DiskFullError
from stabn_tf.errors import CommandError, StabnError
from stabn_tf.precision import FLAG_HELP, PRECISIONS, TRAINING_PRECISIONS

# Flags defined by the helpers below belong to the command that calls them (its --help).
flags.disclaim_key_flags()

FLAGS = flags.FLAGS

#: The exit status of every command's one-line error.
ERROR_STATUS = 2
#: The exit status after Ctrl-C (128 + SIGINT, what a shell reports).
INTERRUPTED_STATUS = 130


def error_prefix(name: str) -> str:
    """What precedes the message on the error line of command `name`."""
    return f"{name}: error: "


class Command:
    """One command line: absl flags, a `main(argv)`, and one place that turns errors into
    a line on stderr and an exit status.

    Args:
      name: the module, e.g. `stabn_tf.predict`; error lines start `<name>: error: `.
      main: `main(argv)`; may return an exit status (None: 0) or raise.
      define_flags: defines the command's flags (once, when the command runs).
      doc: what `--help` prints above the flags (the module docstring).
      errors: the OS errors (beyond `StabnError` and a full disk) that the command
        documents as the user's to fix, e.g. `FileNotFoundError` for a missing input.
    """

    def __init__(self, name: str, main: Callable[[list[str]], int | None],
                 define_flags: Callable[[], None] | None = None, doc: str | None = None, *,
                 errors: tuple[type[BaseException], ...] = ()):
        self.name, self.main, self.define_flags, self.doc = name, main, define_flags, doc
        self.errors = tuple(errors)
        self.prefix = error_prefix(name)

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
        except KeyboardInterrupt:
            # Ctrl-C is the user's choice, not a fault: one line and the shell's status for
            # it (train and evaluate stop at a safe point themselves and say so).
            print(f"{self.prefix}interrupted (Ctrl-C)", file=sys.stderr, flush=True)
            sys.exit(INTERRUPTED_STATUS)
        except Exception as e:
            line = self.error_line(e)
            if line is None:
                raise
            print(f"{self.prefix}{line}", file=sys.stderr, flush=True)
            sys.exit(ERROR_STATUS)

    def error_line(self, error: BaseException) -> str | None:
        """The one line for `error`, or None when it is not the user's to fix (a bug: its
        traceback is what helps)."""
        if isinstance(error, StabnError):
            return str(error)
        full = DiskFullError.of(error)
        if full is not None:
            return str(full)
        if isinstance(error, self.errors):
            return str(error)
        return None


def _as_main_module_flags(define: Callable[[], None]) -> None:
    """Runs `define` and makes the new flags key flags of the main program, whose key
    flags are what absl's --help lists, however the command was started (`python -m`, a
    console script, a script that forwards to it)."""
    before = set(FLAGS)
    define()
    for name in sorted(set(FLAGS) - before):
        FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])


def fail(message: str) -> NoReturn:
    """Ends the command with `message` as its error line (`Command` prints it)."""
    raise CommandError(message)


def no_arguments(argv: Sequence[str]) -> None:
    """Fails when anything but flags was given (`unexpected arguments [...]`)."""
    if len(argv) > 1:
        fail(f"unexpected arguments {list(argv[1:])}")


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


def define_precision(default: str = "auto", extra: str = "", *, training: bool = False,
                     flag_values: flags.FlagValues = FLAGS) -> None:
    """`--precision`, the one definition every command uses: auto, float32 or bfloat16,
    and float16 with `training` (`stabn_tf.precision` checks the value and reads the old
    spellings). `default`: auto where a model runs for the user; float32 where the command
    makes something that outlives it (a trained run, an export), so that it does not depend
    on the machine that made it."""
    names = TRAINING_PRECISIONS if training else PRECISIONS
    flags.DEFINE_string("precision", default, FLAG_HELP.format(names=", ".join(names))
                        + extra, flag_values=flag_values)


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
