"""Something-Something V1/V2 (or a folder of class sub-folders) → sharded TFRecords.

    python -m stabn_tf.data.convert --dataset=ssv2 --input_dir=/data/ssv2 \\
        --output_dir=/data/ssv2_tfrecords

Writes `<split>-00000-of-000NN.tfrecord` shards (schema: `stabn_tf.data.tfrecord`),
`labels.txt` (index order), `manifest.json` (counts per split and class, frame
statistics, settings), `failures.jsonl` (one line per video that was skipped, with its
reason) and `box_problems.jsonl` (one line per problem in the `--boxes` files).

Boxes for attention supervision (`docs/boxes.md`): `--boxes=a.json[,b.json...]`
(Something-Else's files for SSv2, or the simple format for boxes a person draws) and
`--box_categories=hands|objects|both` (default both). The files are read once; each
listed video's boxes are fitted to its decoded frames (Something-Else's 12 fps frame
numbers mapped by time onto the decoded frame rate, pixels normalised by the original
frame size) and stored per frame with their role. Videos not in the files get no box
lists (unsupervised). A bad box, frame or video entry is one line (file, video, frame,
what is wrong) in the summary and in `box_problems.jsonl`; the video is still written,
without the bad boxes. A simple-format video's `active_frames` (when the action happens)
are stored as `clip/active`, Mt's labels. `--noground_truth_supervision` keeps the
synthetic set's ground truth for the explanation metrics only, so only the box files
supervise.

Layouts (`--dataset`):
- ssv2: `something-something-v2-{labels,train,validation,test}.json` (or the newer
  `labels/{labels,train,validation,test}.json`) in `input_dir`, videos `<id>.webm` in
  `input_dir/20bn-something-something-v2/` (or `videos/`, or `input_dir` itself, or
  `--video_dir`). The class is the entry's `template` without brackets; test entries are
  written with label -1. An optional `something-something-v2-groundtruth.json` (the
  synthetic set's) adds per-frame `clip/gt/active` and `clip/gt/box`.
- ssv1: `something-something-v1-labels.csv` (one class per line) and
  `something-something-v1-{train,validation,test}.csv` (`id;class name` lines, test: ids),
  frames `20bn-something-something-v1/<id>/00001.jpg ...` (or `frames/`, or `--video_dir`).
  Frames already within the short side are stored byte-for-byte (no re-encoding).
- folder: `<class>/<video>` (mp4/webm/avi/mkv/mov/m4v), or `<split>/<class>/<video>` with
  split folders `train`, `validation` or `val`, `test`; classes are the sorted folder names.
  Videos deeper in a class folder (`<class>/<sub>/.../<video>`) belong to that class; a
  video outside any class folder is a failure; a class folder with no video is refused.

Design points:
- Nothing lost, nothing silent: every annotation entry is either written or listed as a
  failure (with its split); the summary checks `read = written + failed` per split. Bad
  videos never stop the run, nor do duplicate ids (an id listed twice with different
  labels, or in both train and validation, is a failure in each place). Unusable label
  files or an empty result stop it; unusable arguments stop it before anything is
  written (each is one line and exit status 2, as for every command): an output_dir
  that is a file or unwritable, or that holds another dataset's conversion (unless
  `--overwrite`), or that another converter is writing (an flock on output_dir, held
  for the whole run). A full disk stops it with
  one line (the file, the space needed; `DiskFullError`), keeping the complete shards.
  Frames are never stretched or upscaled: a frame folder of mixed sizes is a failure.
- Deterministic: a video's shard depends only on its id (ordered by a hash of the id, so
  classes are mixed across and within shards), and JPEG encoding is deterministic, so the
  same input gives byte-identical shards.
- Resumable: a shard is written under `<name>.tmp` and renamed when complete, with a small
  record in `.shards/`: per video a key of everything its bytes depend on (settings,
  annotation, its boxes, a SHA-256 of the source's content, cached by its stat stamp),
  the shard's byte size and SHA-256, statistics. A re-run keeps shards whose keys all
  match and whose bytes are still what was written, untouched; in the others it
  converts only the videos whose key changed (fixed, replaced, added, relabelled, or
  given other boxes: editing a box file re-converts exactly the videos whose boxes
  changed) and copies the rest's records, so the result is byte-identical to a fresh
  conversion. Adding or
  removing annotation entries re-deals the videos after them (in hash order) over the
  shards, which keeps shards balanced but converts those videos again. Converting some
  splits keeps the others' entries in the manifest.
- Checkable: `--verify --output_dir=DIR` reads every shard once and lists each corrupt,
  truncated or malformed one (`tfrecord.verify_tfrecords`), and each record unlike the
  manifest's settings and counts.
- Parallel: videos are decoded/encoded in `workers` processes (spawned, so it is safe to
  call from a process that already runs TensorFlow); the parent only writes bytes.

Modules, one per role: `items` (what is converted, settings, errors), the layouts `ssv2`,
`ssv1` and `folder`, `listing` (one call over the layouts: duplicates, boxes attached),
`encode` (one video → one record), `shards` (sharding, resume records, the shard writer),
`output_dir` (claiming the directory), `manifest` (manifest, failure files, summary),
`conversion` (`convert_dataset`), `verify` (`--verify`) and `cli` (the flags).
"""

from __future__ import annotations

from stabn_tf.import_hooks import lazy_names

#: The public names, by the module that defines them, imported on first use: importing
#: a submodule (e.g. the converter's lock) then costs no TensorFlow import.
_API = {
    "assign_shards": "stabn_tf.data.convert.shards",
    "auto_num_shards": "stabn_tf.data.convert.shards",
    "BOX_PROBLEMS_FILE": "stabn_tf.data.convert.manifest",
    "BOX_PROBLEMS_SHOWN": "stabn_tf.data.convert.manifest",
    "ConversionError": "stabn_tf.data.convert.items",
    "convert_dataset": "stabn_tf.data.convert.conversion",
    "convert_item": "stabn_tf.data.convert.encode",
    "DATASETS": "stabn_tf.data.convert.listing",
    "DEFAULT_SPLITS": "stabn_tf.data.convert.items",
    "DiskFullError": "stabn_tf.disk",  # the project's one, named here for the converter
    "EncodeSettings": "stabn_tf.data.convert.items",
    "FAILURES_FILE": "stabn_tf.data.convert.manifest",
    "FOLDER_SPLIT_DIRS": "stabn_tf.data.convert.folder",
    "format_summary": "stabn_tf.data.convert.manifest",
    "FORMAT_VERSION": "stabn_tf.data.convert.shards",
    "FRAME_EXTENSIONS": "stabn_tf.data.convert.encode",
    "KNOWN_SPLITS": "stabn_tf.data.convert.items",
    "LABELS_FILE": "stabn_tf.data.convert.manifest",
    "list_dataset": "stabn_tf.data.convert.listing",
    "list_folder": "stabn_tf.data.convert.folder",
    "list_ssv1": "stabn_tf.data.convert.ssv1",
    "list_ssv2": "stabn_tf.data.convert.ssv2",
    "Listing": "stabn_tf.data.convert.items",
    "MANIFEST_FILE": "stabn_tf.data.convert.manifest",
    "MIN_SHARDS": "stabn_tf.data.convert.shards",
    "ORIGIN_FILE": "stabn_tf.data.convert.output_dir",
    "OWN_FILES": "stabn_tf.data.convert.output_dir",
    "shard_name": "stabn_tf.data.convert.shards",
    "SSV1_FILES": "stabn_tf.data.convert.ssv1",
    "SSV1_FRAME_DIRS": "stabn_tf.data.convert.ssv1",
    "SSV2_FILES": "stabn_tf.data.convert.ssv2",
    "SSV2_GROUND_TRUTH": "stabn_tf.data.convert.ssv2",
    "SSV2_VIDEO_DIRS": "stabn_tf.data.convert.ssv2",
    "STATE_DIR": "stabn_tf.data.convert.shards",
    "UsageError": "stabn_tf.data.convert.items",
    "validate_id": "stabn_tf.data.convert.items",
    "verify_output_dir": "stabn_tf.data.convert.verify",
    "VIDEO_EXTENSIONS": "stabn_tf.data.convert.folder",
    "VideoItem": "stabn_tf.data.convert.items",
    "VIDEOS_PER_SHARD": "stabn_tf.data.convert.shards",
}

__all__ = [
    "BOX_PROBLEMS_FILE",
    "BOX_PROBLEMS_SHOWN",
    "ConversionError",
    "DiskFullError",
    "DATASETS",
    "DEFAULT_SPLITS",
    "EncodeSettings",
    "FAILURES_FILE",
    "FOLDER_SPLIT_DIRS",
    "FORMAT_VERSION",
    "FRAME_EXTENSIONS",
    "KNOWN_SPLITS",
    "LABELS_FILE",
    "Listing",
    "MANIFEST_FILE",
    "MIN_SHARDS",
    "ORIGIN_FILE",
    "OWN_FILES",
    "SSV1_FILES",
    "SSV1_FRAME_DIRS",
    "SSV2_FILES",
    "SSV2_GROUND_TRUTH",
    "SSV2_VIDEO_DIRS",
    "STATE_DIR",
    "UsageError",
    "VIDEOS_PER_SHARD",
    "VIDEO_EXTENSIONS",
    "VideoItem",
    "assign_shards",
    "auto_num_shards",
    "convert_dataset",
    "convert_item",
    "format_summary",
    "list_dataset",
    "list_folder",
    "list_ssv1",
    "list_ssv2",
    "shard_name",
    "validate_id",
    "verify_output_dir",
]


__getattr__ = lazy_names(__name__, _API)
