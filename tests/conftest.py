"""Test-wide settings (quiet TF logs, float32 restored) and the shared tiny data and model."""

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


@pytest.fixture(scope="session")
def calibrated_stabn(tiny_tfrecords):
    """Makes a small ST-ABN (R18, the tiny set's 12 classes and their names) whose BN
    statistics come from 8 of the tiny set's training clips, so export tests see real
    activations, not fresh-BN ones."""
    def make(num_frames: int, image_size: int, width_multiplier: float = 0.125):
        import keras

        import stabn_tf
        from stabn_tf.data import read_labels
        from stabn_tf.deploy import tflite

        keras.utils.set_random_seed(0)
        model = stabn_tf.build_stabn(
            num_classes=12, num_frames=num_frames, image_size=image_size, depth=18,
            width_multiplier=width_multiplier,
            class_names=read_labels(os.path.join(tiny_tfrecords, "labels.txt")))
        clips = tflite.representative_clips(f"{tiny_tfrecords}/train-*.tfrecord", 8,
                                            model.preprocessor)
        tflite.calibrate_batch_norm(model, clips)
        return model
    return make
