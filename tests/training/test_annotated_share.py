"""`--annotated_share`: the few clips with boxes or action labels fill that share of every
training batch; which records count as annotated; the settings it refuses."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stabn_tf.data import tfrecord
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.outputs import ATTENTION, PERCEPTION, SPATIAL_ATTENTION
from stabn_tf.training.backup import BackupState
from stabn_tf.training.trainer import (
    ConfigError,
    TrainConfig,
    TrainingData,
    annotated_records,
    check_config,
    is_annotated,
    make_datasets,
    setup_execution,
)

FRAMES = 4
BOXED = {"c1", "c5", "c9"}


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _record(clip: str, label: int) -> bytes:
    """A clip with a person's box on every frame and action labels (the BOXED ones), or
    with the synthetic ground truth kept for the metrics only (all others)."""
    frames = [_jpeg(40 * i) for i in range(FRAMES)]
    truth = dict(gt_active=[0, 1, 1, 0], gt_box=[(0.1, 0.1, 0.6, 0.6)] * FRAMES,
                 ground_truth_supervision=False)
    if clip in BOXED:
        return tfrecord.make_sequence_example(
            clip, label, str(label), frames, boxes=[[((0.2, 0.2, 0.7, 0.7), "object")]] * FRAMES,
            active=[0, 1, 1, 0], **truth)
    return tfrecord.make_sequence_example(clip, label, str(label), frames, **truth)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotated_share")
    paths = [str(folder / f"train-{i}.tfrecord") for i in range(2)]
    for i, path in enumerate(paths):
        with tf.io.TFRecordWriter(path) as writer:
            for n in range(i, 12, 2):
                writer.write(_record(f"c{n}", n % 3))
    return paths


def test_annotated_means_boxes_or_labels_not_truth_kept_for_metrics(shards):
    frames = [_jpeg(0)] * FRAMES
    assert not is_annotated(tfrecord.make_sequence_example("p", 0, "0", frames))
    assert is_annotated(tfrecord.make_sequence_example("l", 0, "0", frames,
                                                       active=[0, 1, 0, 0]))
    # The synthetic ground truth supervises unless converted to be for the metrics only.
    assert is_annotated(tfrecord.make_sequence_example(
        "g", 0, "0", frames, gt_active=[1] * FRAMES, gt_box=[(0, 0, 1, 1)] * FRAMES))
    (path,) = annotated_records(shards)
    ids = {tf.train.SequenceExample.FromString(raw).context.feature[tfrecord.CLIP_ID]
           .bytes_list.value[0].decode() for raw in tf.data.TFRecordDataset(path)
           .as_numpy_iterator()}
    assert ids == BOXED


def _annotated_per_batch(shards, share: float, steps: int = 6) -> list[int]:
    config = TrainConfig.from_preset("stabn_tiny", num_frames=FRAMES, image_size=32,
                                     batch_size=4, attention_supervision_weight=1.0,
                                     annotated_share=share, seed=5)
    data = TrainingData(shards, shards, ["0", "1", "2"], 12, 12)
    training, _ = make_datasets(config, data, setup_execution(config),
                                ClipPreprocessor(FRAMES, 32), [PERCEPTION, ATTENTION], steps,
                                annotated_records(shards) if share else [])
    counts = []
    for clips, targets in training(BackupState(0, 0)).take(steps):
        assert clips.shape[0] == 4 and targets[PERCEPTION].shape == (4,)
        frame_annotated = targets[SPATIAL_ATTENTION][..., 1].numpy()  # [B, T, h, w]
        counts.append(int((frame_annotated.reshape(4, -1).max(axis=1) > 0).sum()))
    return counts


def test_each_batch_holds_its_share_of_annotated_clips(shards):
    mixed = _annotated_per_batch(shards, 0.5)
    assert min(mixed) >= 2  # 2 of 4 from the 3 boxed clips, whatever else is drawn
    plain = _annotated_per_batch(shards, 0.0)
    assert sum(plain) < sum(mixed) and min(plain) < 2  # 3 of 12 clips: ~1 per batch


@pytest.mark.parametrize("overrides, message", [
    (dict(annotated_share=1.0, attention_supervision_weight=1.0), "must be in [0, 1)"),
    (dict(annotated_share=0.5), "needs attention supervision"),
])
def test_bad_annotated_share_is_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        check_config(TrainConfig.from_preset("stabn_tiny", **overrides))
