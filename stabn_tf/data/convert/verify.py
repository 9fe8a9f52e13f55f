"""`--verify`: read every shard of a converted directory once and list each problem."""

from __future__ import annotations

import glob
import json
import os

from stabn_tf.data import tfrecord
from stabn_tf.data.convert.items import UsageError
from stabn_tf.data.convert.manifest import MANIFEST_FILE


def verify_output_dir(output_dir: str) -> list[str]:
    """Problems of a converted directory, one line each: every shard read once
    (`tfrecord.verify_tfrecords`), and every shard the manifest lists present.

    Raises:
      UsageError: `output_dir` is not a directory or holds no shards.
    """
    if not os.path.isdir(output_dir):
        raise UsageError(f"output_dir {output_dir} is not a directory")
    files = sorted(glob.glob(os.path.join(glob.escape(output_dir), "*.tfrecord")))
    if not files:
        raise UsageError(f"output_dir {output_dir} holds no .tfrecord shards")
    problems = [str(p) for p in tfrecord.verify_tfrecords(files)]
    try:
        with open(os.path.join(output_dir, MANIFEST_FILE), encoding="utf-8") as f:
            listed = [n for s in json.load(f)["splits"].values() for n in s["shards"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = []
    problems += [f"{os.path.join(output_dir, n)}: missing (listed in {MANIFEST_FILE})"
                 for n in listed if not os.path.exists(os.path.join(output_dir, n))]
    return problems
