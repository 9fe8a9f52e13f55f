"""make_dataset: shapes, determinism, multi-clip, ground truth, flips, sharding, strategy."""

import glob
import json
import os
import shutil
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

from stabn_tf.data import (
    count_examples,
    list_files,
    load_video,
    make_dataset,
    preprocess,
    tfrecord,
)
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.data.synthetic import CLASSES, TEMPLATES


@pytest.fixture(scope="module")
def val_pattern(converted):
    return os.path.join(converted[0], "validation-*.tfrecord")


@pytest.fixture(scope="module")
def train_pattern(converted):
    return os.path.join(converted[0], "train-*.tfrecord")


def _ids(ds):
    return [c.decode() for _, t in ds for c in t["clip_id"].numpy()]


def test_eval_is_deterministic(val_pattern):
    ds = make_dataset(val_pattern, training=False, batch_size=4,
                      preprocessor=ClipPreprocessor(4, 32), with_metadata=True)
    a, b = list(ds), list(ds)
    assert len(a) == 3
    for (xa, ta), (xb, tb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta["clip_id"], tb["clip_id"])


def test_seeded_training_is_reproducible_and_reshuffles_each_epoch(train_pattern):
    def first(ds):
        x, t = next(iter(ds))
        return x.numpy(), t["clip_id"].numpy(), t["frame_indices"].numpy()

    kw = dict(training=True, batch_size=4, preprocessor=ClipPreprocessor(4, 32), with_metadata=True)
    ds1 = make_dataset(train_pattern, seed=3, **kw)
    a, b = first(ds1), first(make_dataset(train_pattern, seed=3, **kw))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    epoch2 = first(ds1)
    assert not np.array_equal(a[1], epoch2[1]) or not np.array_equal(a[2], epoch2[2])
    assert ds1.element_spec[0].shape == (4, 4, 32, 32, 3)  # static batch (drop_remainder)


def test_multi_clip_eval(val_pattern):
    ds = make_dataset(val_pattern, training=False, batch_size=3,
                      preprocessor=ClipPreprocessor(4, 32), num_clips=2, with_metadata=True)
    clips, t = next(iter(ds))
    assert clips.shape == (3, 2, 4, 32, 32, 3)
    assert t["frame_indices"].shape == (3, 2, 4)
    assert t["gt_box"].shape == (3, 2, 4, 4) and t["gt_active"].shape == (3, 2, 4)
    idx = t["frame_indices"].numpy()
    assert np.all(idx[:, 0] < idx[:, 1])  # 12 frames, 4 segments: offsets 1/4 and 3/4
    assert not np.allclose(clips[:, 0], clips[:, 1])


def test_ground_truth_follows_sampling_and_crop(val_pattern, synthetic_raw):
    with open(os.path.join(synthetic_raw, "something-something-v2-groundtruth.json")) as f:
        gt = json.load(f)
    ds = make_dataset(val_pattern, training=False, batch_size=12,
                      preprocessor=ClipPreprocessor(6, 32), with_metadata=True)
    _, t = next(iter(ds))
    # Frames are 48x60 (resolution 48): the eval crop is the centre 42x42 square.
    y, x, h, w = preprocess.eval_crop_window(48, 60).numpy()
    assert (y, x, h, w) == (3, 9, 42, 42)
    for i, cid in enumerate(t["clip_id"].numpy()):
        raw = gt[cid.decode()]
        idx = t["frame_indices"][i].numpy()
        np.testing.assert_array_equal(t["gt_active"][i], np.array(raw["active"])[idx])
        boxes = np.array(raw["box"], np.float32)[idx]
        expected = np.clip((boxes * [48, 60, 48, 60] - [y, x, y, x]) / [h, w, h, w], 0, 1)
        visible = (expected[:, 2] > expected[:, 0]) & (expected[:, 3] > expected[:, 1]) \
            & (boxes[:, 2] > boxes[:, 0])
        expected[~visible] = 0
        np.testing.assert_allclose(t["gt_box"][i], expected, atol=1e-5)
    assert t["gt_active"].dtype == tf.int32 and t["gt_box"].dtype == tf.float32


def test_training_boxes_stay_normalised(train_pattern):
    ds = make_dataset(train_pattern, training=True, batch_size=8,
                      preprocessor=ClipPreprocessor(6, 32), with_metadata=True, seed=1)
    for _, t in ds:
        b = t["gt_box"].numpy()
        assert np.all((b >= 0) & (b <= 1))
        nonzero = b.any(-1)
        assert np.all(b[nonzero][:, 2] > b[nonzero][:, 0])
        assert np.all(b[nonzero][:, 3] > b[nonzero][:, 1])


def test_flip_swaps_direction_classes_and_never_flips_orphans(train_pattern, val_pattern):
    truth = {}
    for pattern in (train_pattern,):
        ds = make_dataset(pattern, training=False, batch_size=24,
                          preprocessor=ClipPreprocessor(2, 16), with_metadata=True)
        for _, t in ds:
            truth.update(zip(_ids([(None, t)]), t["perception"].numpy()))
    name = {c: i for i, c in enumerate(CLASSES)}
    swap = {name["Moving something from left to right"]:
            name["Moving something from right to left"],
            name["Rotating something clockwise"]: name["Rotating something counterclockwise"]}
    swap.update({v: k for k, v in swap.items()})
    flipped_labels = set()
    ds = make_dataset(train_pattern, training=True, batch_size=8,
                      preprocessor=ClipPreprocessor(2, 16), with_metadata=True, flip=True, seed=5)
    for _ in range(6):
        for _, t in ds:
            for cid, label in zip(_ids([(None, t)]), t["perception"].numpy()):
                original = truth[cid]
                if label != original:
                    assert swap.get(original) == label, (original, label)
                    flipped_labels.add(original)
    assert flipped_labels == set(swap)  # every mirror pair flipped at least once


def test_flip_needs_the_class_names(train_pattern, tmp_path):
    shutil.copy(list_files(train_pattern)[0], tmp_path)
    with pytest.raises(ValueError, match="labels"):
        make_dataset(str(tmp_path / "*.tfrecord"), preprocessor=ClipPreprocessor(), training=True,
                     batch_size=2, flip=True)
    make_dataset(str(tmp_path / "*.tfrecord"), preprocessor=ClipPreprocessor(), training=True,
                 batch_size=2, flip=True, labels=CLASSES)


@pytest.mark.slow
def test_file_sharding_gives_disjoint_complete_splits(val_pattern):
    kw = dict(training=False, batch_size=2, preprocessor=ClipPreprocessor(2, 16),
              with_metadata=True)
    ds = make_dataset(val_pattern, **kw)
    everything = sorted(_ids(ds))
    auto = [_ids(_AutoShardDataset(ds, 3, i)) for i in range(3)]  # multi-worker FILE policy
    ctx = [_ids(make_dataset(val_pattern, input_context=tf.distribute.InputContext(3, i, 1),
                             **kw)) for i in range(3)]
    for parts in (auto, ctx):
        assert sorted(sum(parts, [])) == everything
        assert all(parts)
    with pytest.raises(ValueError, match="cannot be sharded"):
        make_dataset(val_pattern, input_context=tf.distribute.InputContext(4, 0, 1), **kw)


def test_list_files_and_count_examples(converted, tmp_path):
    out, manifest = converted
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        list_files(os.path.join(out, "nothing-here-*.tfrecord"))
    files = list_files([os.path.join(out, "train-*.tfrecord"),
                        os.path.join(out, "train-00000-*.tfrecord")])
    assert len(files) == 3
    assert count_examples(os.path.join(out, "train-*.tfrecord")) == 24
    # Without the converter's shard records it counts the records themselves.
    for f in glob.glob(os.path.join(out, "validation-*.tfrecord")):
        shutil.copy(f, tmp_path)
    assert count_examples(str(tmp_path / "*.tfrecord")) == \
        manifest["splits"]["validation"]["written"]


def test_short_video_and_records_without_ground_truth(tmp_path):
    import io

    from PIL import Image

    def jpeg(v):
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 30, 3), v, np.uint8)).save(buf, "JPEG")
        return buf.getvalue()

    path = str(tmp_path / "short.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        w.write(tfrecord.make_sequence_example("a", 1, "x", [jpeg(v) for v in (10, 120, 240)]))
    ds = make_dataset(path, training=False, batch_size=1, preprocessor=ClipPreprocessor(8, 8),
                      with_metadata=True)
    clips, t = next(iter(ds))
    assert set(t) == {"perception", "attention", "clip_id", "frame_indices",
                      "frame_size"}
    np.testing.assert_array_equal(t["frame_indices"][0], [0, 0, 0, 1, 1, 2, 2, 2])
    means = preprocess.denormalize(clips[0]).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, [10, 10, 10, 120, 120, 240, 240, 240], atol=3)


def test_load_video_matches_the_eval_pipeline(val_pattern, synthetic_raw):
    ds = make_dataset(val_pattern, training=False, batch_size=1,
                      preprocessor=ClipPreprocessor(6, 32), with_metadata=True)
    (clips, t), (other, _) = list(ds.take(2))
    cid = t["clip_id"][0].numpy().decode()
    path = os.path.join(synthetic_raw, "20bn-something-something-v2", f"{cid}.webm")
    direct = load_video(path, preprocessor=ClipPreprocessor(6, 32))
    assert direct.shape == (6, 32, 32, 3)
    # Same frames, crop and normalisation; only the stored JPEG's loss differs (a few
    # levels of 255 at this tiny size), far less than from another video.
    error = np.abs(direct - clips[0].numpy()).mean()
    assert error < 0.08
    assert error < 0.2 * np.abs(direct - other[0].numpy()).mean()


def test_labels_match_templates(converted, synthetic_raw):
    with open(os.path.join(synthetic_raw, "something-something-v2-train.json")) as f:
        expected = {e["id"]: TEMPLATES.index(e["template"]) for e in json.load(f)}
    ds = make_dataset(os.path.join(converted[0], "train-*.tfrecord"), training=False,
                      batch_size=24, preprocessor=ClipPreprocessor(2, 16), with_metadata=True)
    _, t = next(iter(ds))
    got = dict(zip(_ids([(None, t)]), t["perception"].numpy().tolist()))
    assert got == expected


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus(train_pattern, tmp_path, python):
    script = tmp_path / "mirrored.py"
    script.write_text(textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from stabn_tf.data import ClipPreprocessor, make_dataset
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        clips = ClipPreprocessor(2, 16)
        ds = make_dataset({train_pattern!r}, preprocessor=clips, training=True, batch_size=4,
                          seed=0)
        x, t = next(iter(strategy.experimental_distribute_dataset(ds)))
        shapes = [v.shape for v in strategy.experimental_local_results(x)]
        assert shapes == [(2, 2, 16, 16, 3)] * 2, shapes
        fn = lambda ctx: make_dataset({train_pattern!r}, preprocessor=clips, training=True,
                                      seed=0, input_context=ctx,
                                      batch_size=ctx.get_per_replica_batch_size(4))
        x, t = next(iter(strategy.distribute_datasets_from_function(fn)))
        shapes = [v.shape for v in strategy.experimental_local_results(t["perception"])]
        assert shapes == [(2,), (2,)], shapes
        print("OK")
    """))
    result = python(script, timeout=120)  # a fresh TensorFlow: its CPU split before start
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
