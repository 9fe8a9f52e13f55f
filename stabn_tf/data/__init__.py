"""Video data for ST-ABN: converters, the tf.data pipeline, single-file loading, and the
built-in synthetic Something-Something (docs/architecture.md §3).

- `python -m stabn_tf.data.convert`: SSv1 / SSv2 / class-folder videos → TFRecord shards.
- `python -m stabn_tf.data.synthetic`: the synthetic dataset (SSv2 layout + ground truth).
- `make_dataset(...)`: shards → `(clips, {"perception", "attention"})` batches.
- `load_video(path, model.preprocessor)`: one file → a normalised clip, eval-style.
"""

from stabn_tf.import_hooks import lazy_names

#: The public names, by the module that defines them, imported on first use: importing
#: a submodule (e.g. the converter's lock) then costs no TensorFlow import.
_API = {
    "ClipPreprocessor": "stabn_tf.data.preprocessor",
    "CorruptShardError": "stabn_tf.data.tfrecord",
    "count_examples": "stabn_tf.data.pipeline",
    "decode_video": "stabn_tf.data.video",
    "denormalize": "stabn_tf.data.preprocess",
    "IMAGENET_MEAN": "stabn_tf.data.preprocess",
    "IMAGENET_STD": "stabn_tf.data.preprocess",
    "LabelFileError": "stabn_tf.data.labels",
    "list_files": "stabn_tf.data.pipeline",
    "load_video": "stabn_tf.data.video",
    "make_dataset": "stabn_tf.data.pipeline",
    "normalize": "stabn_tf.data.preprocess",
    "read_frame_folder": "stabn_tf.data.video",
    "read_frames": "stabn_tf.data.video",
    "read_labels": "stabn_tf.data.labels",
    "segment_indices": "stabn_tf.data.sampling",
    "verify_tfrecords": "stabn_tf.data.tfrecord",
    "VideoReadError": "stabn_tf.data.video",
    "write_labels": "stabn_tf.data.labels",
}

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


__getattr__ = lazy_names(__name__, _API)
