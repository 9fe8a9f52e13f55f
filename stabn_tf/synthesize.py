"""Write the built-in synthetic dataset: `python -m stabn_tf.synthesize --output_dir=DIR`.

    python -m stabn_tf.synthesize --output_dir=/tmp/synth             # SSv2 layout only
    python -m stabn_tf.synthesize --output_dir=/tmp/synth --convert   # + TFRecords

(`python -m stabn_tf.data.synthetic` is the same command.) Flags only: the dataset is
`stabn_tf.data.synthetic` (`generate_synthetic_dataset`, `ensure_synthetic_tfrecords`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from absl import flags

from stabn_tf import cli
from stabn_tf.data.synthetic import (
    DEFAULTS,
    ensure_synthetic_tfrecords,
    generate_synthetic_dataset,
)


def define_flags() -> None:
    flags.DEFINE_string("output_dir", None, "Where to write the SSv2-layout dataset "
                        "(with --convert: the cache directory).", required=True)
    flags.DEFINE_integer("num_train_per_class", DEFAULTS["num_train_per_class"],
                         "Training videos per class.")
    flags.DEFINE_integer("num_val_per_class", DEFAULTS["num_val_per_class"],
                         "Validation videos per class.")
    flags.DEFINE_integer("num_test_per_class", DEFAULTS["num_test_per_class"],
                         "Unlabelled test videos per class (ids only in test.json).")
    flags.DEFINE_integer("resolution", DEFAULTS["resolution"], "Frame height in pixels.")
    flags.DEFINE_integer("num_frames", DEFAULTS["num_frames"], "Frames per video.")
    flags.DEFINE_integer("seed", DEFAULTS["seed"], "Random seed (same seed, same data).")
    flags.DEFINE_integer("workers", 0, "Processes; 0 = all cores.")
    flags.DEFINE_bool("convert", False, "Also convert to TFRecords (cached by settings) and "
                      "print their directory.")


def main(argv: Sequence[str]) -> None:
    cli.no_arguments(argv)
    f = flags.FLAGS
    t0 = time.time()
    if f.convert:
        path = ensure_synthetic_tfrecords(
            f.output_dir, num_train_per_class=f.num_train_per_class,
            num_val_per_class=f.num_val_per_class, resolution=f.resolution,
            num_frames=f.num_frames, seed=f.seed, workers=f.workers or None)
        print(f"TFRecords in {path} ({time.time() - t0:.1f}s)")
        return
    summary = generate_synthetic_dataset(
        f.output_dir, num_train_per_class=f.num_train_per_class,
        num_val_per_class=f.num_val_per_class, num_test_per_class=f.num_test_per_class,
        resolution=f.resolution, num_frames=f.num_frames, seed=f.seed,
        workers=f.workers or None)
    print(json.dumps(summary, indent=1))


command = cli.Command("stabn_tf.synthesize", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
