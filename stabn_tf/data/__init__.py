"""Video data for ST-ABN: converters, the tf.data pipeline, single-file loading, and the
built-in synthetic Something-Something (docs/architecture.md §3).

- `python -m stabn_tf.data.convert`: SSv1 / SSv2 / class-folder videos → TFRecord shards.
- `python -m stabn_tf.data.synthetic`: the synthetic dataset (SSv2 layout + ground truth).
- `make_dataset(...)`: shards → `(clips, {"perception", "attention"})` batches.
- `load_video(path, model.preprocessor)`: one file → a normalised clip, eval-style.
"""

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
