"""Video data for ST-ABN: converters, the tf.data pipeline, single-file loading, and the
built-in synthetic Something-Something (docs/architecture.md §3).

- `python -m stabn_tf.data.convert`: SSv1 / SSv2 / class-folder videos → TFRecord shards.
- `python -m stabn_tf.data.synthetic`: the synthetic dataset (SSv2 layout + ground truth).
- `make_dataset(...)`: shards → `(clips, {"perception", "attention"})` batches.
- `load_video(path, model.preprocessor)`: one file → a normalised clip, eval-style.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stabn_tf.data.labels import LabelFileError, read_labels, write_labels
    from stabn_tf.data.pipeline import count_examples, list_files, make_dataset
    from stabn_tf.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize
    from stabn_tf.data.preprocessor import ClipPreprocessor
    from stabn_tf.data.sampling import segment_indices
    from stabn_tf.data.tfrecord import CorruptShardError, verify_tfrecords
    from stabn_tf.data.video import (
        VideoReadError,
        decode_video,
        load_video,
        read_frame_folder,
        read_frames,
    )

#: The public names, by the module that defines them. Imported on first use, so that a
#: TensorFlow-free module here (`boxes`, `json_stream`) can be imported, e.g. by a worker
#: process reading box files, without this package importing TensorFlow.
_API = {
    "LabelFileError": "labels", "read_labels": "labels", "write_labels": "labels",
    "count_examples": "pipeline", "list_files": "pipeline", "make_dataset": "pipeline",
    "IMAGENET_MEAN": "preprocess", "IMAGENET_STD": "preprocess",
    "denormalize": "preprocess", "normalize": "preprocess",
    "ClipPreprocessor": "preprocessor",
    "segment_indices": "sampling",
    "CorruptShardError": "tfrecord", "verify_tfrecords": "tfrecord",
    "VideoReadError": "video", "decode_video": "video", "load_video": "video",
    "read_frame_folder": "video", "read_frames": "video",
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "CorruptShardError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipPreprocessor",
    "LabelFileError",
    "VideoReadError",
    "count_examples",
    "decode_video",
    "denormalize",
    "list_files",
    "load_video",
    "read_frame_folder",
    "read_frames",
    "make_dataset",
    "normalize",
    "read_labels",
    "segment_indices",
    "verify_tfrecords",
    "write_labels",
]
