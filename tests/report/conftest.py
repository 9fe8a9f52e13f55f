"""Fixtures shared by the report tests."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stabn_tf.data import tfrecord


def write_named_clips(path, names) -> None:
    """One TFRecord shard at `path`: a clip of 6 random 40×48 frames per name, the name
    being its id and its class name (label: its index)."""
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as w:
        for k, name in enumerate(names):
            jpegs = []
            for _ in range(6):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(buffer, "JPEG")
                jpegs.append(buffer.getvalue())
            w.write(tfrecord.make_sequence_example(name, k, name, jpegs))


@pytest.fixture(scope="session")
def named_clips():
    """`named_clips(path, names)`: `write_named_clips`, for names that once broke pages or
    pictures."""
    return write_named_clips
