"""The command line: `python -m stabn_tf.data.convert` (flags below; `--verify`)."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Sequence

from absl import flags

from stabn_tf.cli import Command
from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import video
from stabn_tf.data.convert.conversion import convert_dataset
from stabn_tf.data.convert.items import DEFAULT_SPLITS, UsageError
from stabn_tf.data.convert.listing import DATASETS
from stabn_tf.data.convert.manifest import MANIFEST_FILE, format_summary
from stabn_tf.data.convert.shards import MIN_SHARDS, VIDEOS_PER_SHARD
from stabn_tf.data.convert.verify import verify_output_dir


def define_flags() -> None:
    # Defined only when run as a program, so importing this module (e.g. from the trainer)
    # never clashes with the importer's own flags.
    flags.DEFINE_enum("dataset", None, list(DATASETS), "Input layout (required unless "
                      "--verify).")
    flags.DEFINE_string("input_dir", None, "Dataset root directory (required unless --verify).")
    flags.DEFINE_string("output_dir", None, "Where to write TFRecords.", required=True)
    flags.DEFINE_bool("overwrite", False, "Replace another dataset's conversion in "
                      "--output_dir (refused without it; re-runs of the same dataset resume).")
    flags.DEFINE_bool("verify", False, "Convert nothing: read every shard in --output_dir "
                      "once and list each corrupt, truncated or malformed one (exit 1).")
    flags.DEFINE_string("video_dir", None, "Videos / frame folders, if not in the usual "
                        "sub-folder of input_dir.")
    flags.DEFINE_integer("short_side", video.DEFAULT_SHORT_SIDE,
                         "Shrink frames to this short side (never upscales); 0 keeps sizes.")
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of stored frames.")
    flags.DEFINE_integer("num_shards", 0, "Shards per split; 0 = about "
                         f"{VIDEOS_PER_SHARD} videos per shard, at least {MIN_SHARDS}.")
    flags.DEFINE_integer("workers", 0, "Decoding processes; 0 = all cores, 1 = no pool.")
    flags.DEFINE_list("splits", list(DEFAULT_SPLITS), "Splits to convert.")
    flags.DEFINE_float("validation_fraction", 0.0, "folder layout without split folders: "
                       "fraction of videos put in the validation split.")
    flags.DEFINE_bool("progress", True, "Show progress bars.")
    flags.DEFINE_list("boxes", [], "Box files (Something-Else JSON or the simple format of "
                      "docs/boxes.md), comma-separated: the listed videos' boxes go into "
                      "their records for attention supervision.")
    flags.DEFINE_enum("box_categories", "both", list(boxes_lib.CATEGORIES),
                      "Which boxes of --boxes count: hands, objects or both.")
    flags.DEFINE_bool("ground_truth_supervision", True, "The synthetic set's ground truth "
                      "(object box, active frames) also supervises attention. "
                      "--noground_truth_supervision keeps it for the explanation metrics "
                      "only, so only the --boxes files supervise.")


def _verify_main(output_dir: str) -> None:
    problems = verify_output_dir(output_dir)
    for line in problems:
        print(line, file=sys.stderr)
    n = len(glob.glob(os.path.join(glob.escape(output_dir), "*.tfrecord")))
    if problems:
        print(f"{len(problems)} problems in {n} shards; delete the bad shards and re-run the "
              "same convert command to rewrite them")
        raise SystemExit(1)
    print(f"{n} shards verified: every record readable and as {MANIFEST_FILE} describes it")


def main(argv: Sequence[str]) -> None:
    f = flags.FLAGS
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}")
    if f.verify:
        _verify_main(f.output_dir)
        return
    for name in ("dataset", "input_dir"):
        if getattr(f, name) is None:
            raise UsageError(f"--{name} is required (unless --verify)")
    manifest = convert_dataset(
        f.dataset, f.input_dir, f.output_dir, short_side=f.short_side or None,
        num_shards=f.num_shards or None, workers=f.workers or None, splits=f.splits,
        jpeg_quality=f.jpeg_quality, video_dir=f.video_dir,
        validation_fraction=f.validation_fraction, progress=f.progress,
        overwrite=f.overwrite, boxes=f.boxes, box_categories=f.box_categories,
        ground_truth_supervision=f.ground_truth_supervision)
    print(format_summary(manifest))
    print(f"wrote {os.path.join(f.output_dir, MANIFEST_FILE)}")


command = Command("stabn_tf.data.convert", main, define_flags, __doc__)
