"""Train ST-ABN or the baseline: `python -m stabn_tf.train --flagfile=configs/ssv2.flags`.

A thin absl front end over `stabn_tf.training.trainer.train`: every `TrainConfig` field is a flag
of the same name, and `--preset=<name>` (`stabn_tf.models.presets`) starts from a named setting
that explicit flags override. Errors found before training (missing files, labels that disagree
with --num_classes, an unwritable output directory, settings that differ from the existing run's,
a run another process is training) print one line and exit with status 2, and so do faults
during training (a full disk, a non-finite loss). SIGINT (Ctrl-C) and SIGTERM stop it with one
line and status 130 / 143. Re-running the same command after any of these resumes from the
last good backup.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

from absl import app, flags

from stabn_tf import cli
from stabn_tf.models import presets
from stabn_tf.training.signals import Interrupted, interruptible
from stabn_tf.training.trainer import ConfigError, TrainConfig, train


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One flag per `TrainConfig` field, typed by its default, with the field's help text;
    and --preset."""
    flags.DEFINE_string("preset", "", "A named setting to start from (model, architecture "
                        "and training recipe); flags given explicitly override it. One of: "
                        f"{presets.known()}.", flag_values=flag_values)
    for field in dataclasses.fields(TrainConfig):
        default, name, text = field.default, field.name, field.metadata["help"]
        if name == "precision":  # the one definition every command's --precision has
            cli.define_precision(default, training=True, flag_values=flag_values)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, text, flag_values=flag_values)
        elif isinstance(default, str):
            flags.DEFINE_string(name, default, text, flag_values=flag_values)
        else:
            flags.DEFINE_list(name, [str(v) for v in default], text, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """The flags' `TrainConfig`: the --preset's settings where a flag was not given."""
    try:
        preset = presets.get(flag_values.preset).train_settings() if flag_values.preset else {}
    except presets.PresetError as e:
        raise ConfigError(f"--preset: {e}") from None
    values = {}
    for field in dataclasses.fields(TrainConfig):
        flag = flag_values[field.name]
        if field.name in preset and not flag.present:
            values[field.name] = preset[field.name]
            continue
        value = flag.value
        values[field.name] = tuple(int(v) for v in value) if isinstance(value, list) else value
    return TrainConfig(**values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TensorFlow's own INFO lines (one per collective all-reduce under a multi-worker
    # strategy) would bury the progress bars; its warnings still show.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    try:
        with interruptible():
            train(config_from_flags())
    except Interrupted as e:
        print(f"stabn_tf.train: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


# ConfigError and TrainingError (StabnErrors) print one line and exit with status 2.
command = cli.Command("stabn_tf.train", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
