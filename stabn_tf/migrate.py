"""Convert a `.keras` checkpoint saved before models carried their config.

    python -m stabn_tf.migrate runs/demo/checkpoints/final.keras \\
        --labels=data/cache/synthetic-.../tfrecords/labels.txt [--output=new.keras]

(`python -m stabn_tf.models.migrate` is the same command.) Flags only: the work is
`stabn_tf.models.migrate.migrate_file`, whose docstring says what it does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.models.migrate import migrate_file


def define_flags() -> None:
    flags.DEFINE_string("labels", None, "labels.txt with the model's class names, in order.")
    flags.DEFINE_string("output", "", "Where the converted model goes (default: over the old "
                        "file, which is kept as <name>.legacy.keras).")
    flags.mark_flag_as_required("labels")


def main(argv: Sequence[str]) -> None:
    if len(argv) != 2:
        print("usage: python -m stabn_tf.models.migrate OLD.keras --labels=labels.txt "
              "[--output=NEW.keras]", file=sys.stderr)
        sys.exit(2)
    out = migrate_file(argv[1], flags.FLAGS.labels, flags.FLAGS.output or None)
    print(f"converted {argv[1]} → {out}")


# A MigrationError prints one line, `stabn_tf.models.migrate: error: ...`, and exits with 2.
command = cli.Command("stabn_tf.models.migrate", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
