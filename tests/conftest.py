"""Test-wide settings: quiet TF logs; the float32 policy restored after every test."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def tiny_tfrecords(tmp_path_factory):
    """A tiny synthetic dataset converted to TFRecords (12 classes, 2 + 1 videos each)."""
    from stabn_tf.data.synthetic import ensure_synthetic_tfrecords

    cache = tmp_path_factory.mktemp("synthetic_cache")
    return ensure_synthetic_tfrecords(cache, num_train_per_class=2, num_val_per_class=1,
                                      resolution=48, num_frames=8, num_shards=2, progress=False)
