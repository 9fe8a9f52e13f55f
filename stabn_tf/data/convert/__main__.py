"""`python -m stabn_tf.data.convert` and `stabn-convert`: the converter's command line
(`cli`). The lock on --output_dir is taken first (`lock.lock_early`), before the converter
and TensorFlow are imported, so a second converter on the same directory stops at once."""

import sys

from stabn_tf.cli import ERROR_STATUS, error_prefix
from stabn_tf.data.convert import lock


def __getattr__(name: str):
    """`command` for code that imports this module instead of running it (tests running
    the converter in process): the command itself, without the early lock."""
    if name == "command":
        from stabn_tf.data.convert.cli import command  # imports TensorFlow: on use only
        return command
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def locked_first() -> None:
    """The converter as `python -m stabn_tf.data.convert` and the console script
    `stabn-convert` run it: the --output_dir lock first, then TensorFlow and the command."""
    output_dir = lock.output_dir_flag(sys.argv[1:])
    busy = lock.lock_early(output_dir) if output_dir else None
    if busy:
        print(f"{error_prefix('stabn_tf.data.convert')}{busy}", file=sys.stderr, flush=True)
        sys.exit(ERROR_STATUS)
    from stabn_tf.data.convert.cli import command  # after the lock: imports TensorFlow

    command()


if __name__ == "__main__":
    locked_first()
