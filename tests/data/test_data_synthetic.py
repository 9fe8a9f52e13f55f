"""The synthetic Something-Something: classes, determinism, sub-window, ground truth."""

import json
import os
import time

import numpy as np
import pytest

from stabn_tf.data import synthetic
from stabn_tf.data.labels import flip_class_map, read_labels


def _render(cls, seed=11, n=24, res=64):
    return synthetic.render_video(synthetic.VideoSpec("x", "train", cls, seed, res, n, (1, 3)))


def _centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _area(box):
    return (box[2] - box[0]) * (box[3] - box[1])


def test_class_list():
    assert len(synthetic.CLASSES) >= 12 and len(set(synthetic.CLASSES)) == len(synthetic.CLASSES)
    assert len(synthetic.TEMPLATES) == len(synthetic.CLASSES)
    mapping, _ = flip_class_map(synthetic.CLASSES)
    assert sum(m != i for i, m in enumerate(mapping)) == 4  # L/R and cw/ccw pairs


def test_rendering_is_deterministic_from_the_seed(tmp_path):
    a, b, c = _render(0, seed=5), _render(0, seed=5), _render(0, seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]
    assert not np.array_equal(a[0], c[0])
    for name in ("a.webm", "b.webm"):
        synthetic.write_webm(str(tmp_path / name), a[0])
    assert (tmp_path / "a.webm").read_bytes() == (tmp_path / "b.webm").read_bytes()


@pytest.mark.parametrize("cls", range(len(synthetic.CLASSES)))
def test_action_only_in_a_sub_window_and_static_outside(cls):
    for seed in (1, 2, 3):
        frames, active, boxes, name = _render(cls, seed=seed)
        active = np.array(active)
        on = np.flatnonzero(active)
        assert 0 < len(on) < len(active) and np.all(np.diff(on) == 1)  # one contiguous window
        start, end = on[0], on[-1]
        before, after = boxes[:start + 1], boxes[end:]
        assert all(b == before[0] for b in before) and all(b == after[0] for b in after)
        assert before[0] != after[0] or cls == 11 or cls in (8, 9)  # it changed something
        # The distractors keep moving, so static frames are not a giveaway.
        for t in range(len(active) - 1):
            if not active[t] and not active[t + 1]:
                assert not np.array_equal(frames[t], frames[t + 1])
        assert len(name.split()) >= 2


def test_direction_decides_the_class():
    def first_last(cls):
        _, active, boxes, _ = _render(cls)
        on = np.flatnonzero(active)
        return boxes[on[0]], boxes[on[-1]]

    a, b = first_last(0)
    assert _centre(b)[1] - _centre(a)[1] > 0.2  # left → right
    a, b = first_last(1)
    assert _centre(a)[1] - _centre(b)[1] > 0.2
    a, b = first_last(2)
    assert _centre(a)[0] - _centre(b)[0] > 0.2  # up (y decreases)
    a, b = first_last(3)
    assert _centre(b)[0] - _centre(a)[0] > 0.2
    a, b = first_last(4)
    assert _area(b) > 2 * _area(a)  # closer
    a, b = first_last(5)
    assert _area(a) > 2 * _area(b)
    a, b = first_last(6)
    assert _area(a) == 0 and _area(b) > 0  # appear
    a, b = first_last(7)
    assert _area(a) > 0 and _area(b) == 0
    a, b = first_last(10)
    assert _area(a) > 0 and _area(b) == 0  # falls off the frame
    _, active, boxes, _ = _render(11)  # pretending: goes right, comes back
    on = np.flatnonzero(active)
    xs = [_centre(boxes[i])[1] for i in on]
    assert max(xs) - xs[0] > 0.15 and abs(xs[-1] - xs[0]) < 0.02


@pytest.mark.parametrize("cls", [0, 4, 8, 10])
def test_boxes_enclose_the_acting_object(cls):
    frames, _, boxes, _ = _render(cls, res=96)
    h, w = frames.shape[1:3]
    for frame, box in zip(frames, boxes):
        dark = np.argwhere(frame.max(axis=-1) < 30)  # only the object's outline is this dark
        if _area(box) == 0:
            assert len(dark) == 0
            continue
        if _area(box) > 0.01:  # (a sliver at the frame border may show no outline)
            assert len(dark) > 0
        y0, x0, y1, x1 = np.array(box) * [h, w, h, w]
        assert np.all((dark[:, 0] >= y0 - 1) & (dark[:, 0] <= y1 + 1))
        assert np.all((dark[:, 1] >= x0 - 1) & (dark[:, 1] <= x1 + 1))


def test_generated_layout_is_ssv2(synthetic_raw):
    files = sorted(os.listdir(synthetic_raw))
    for name in ("labels", "train", "validation", "test", "groundtruth"):
        assert f"something-something-v2-{name}.json" in files
    with open(os.path.join(synthetic_raw, "something-something-v2-labels.json")) as f:
        labels = json.load(f)
    assert labels == {c: str(i) for i, c in enumerate(synthetic.CLASSES)}
    entries = {}
    for split in ("train", "validation"):
        with open(os.path.join(synthetic_raw, f"something-something-v2-{split}.json")) as f:
            entries[split] = json.load(f)
    assert len(entries["train"]) == 24 and len(entries["validation"]) == 12
    e = entries["train"][0]
    assert set(e) == {"id", "label", "template", "placeholders"}
    assert e["template"].replace("[something]", e["placeholders"][0]).lower() == e["label"]
    ids = [x["id"] for v in entries.values() for x in v]
    assert len(set(ids)) == len(ids)
    videos = os.path.join(synthetic_raw, "20bn-something-something-v2")
    assert sorted(os.listdir(videos)) == sorted(f"{i}.webm" for i in ids)


def test_ensure_synthetic_tfrecords_caches(tmp_path):
    kw = dict(num_train_per_class=1, num_val_per_class=1, resolution=32, num_frames=6,
              workers=1, progress=False, num_shards=2)
    path = synthetic.ensure_synthetic_tfrecords(tmp_path, **kw)
    assert read_labels(os.path.join(path, "labels.txt")) == list(synthetic.CLASSES)
    shards = sorted(f for f in os.listdir(path) if f.endswith(".tfrecord"))
    assert shards == [f"{s}-0000{i}-of-00002.tfrecord" for s in ("train", "validation")
                      for i in (0, 1)]
    stamp = os.path.getmtime(os.path.join(path, shards[0]))
    t0 = time.time()
    assert synthetic.ensure_synthetic_tfrecords(tmp_path, **kw) == path
    assert time.time() - t0 < 1 and os.path.getmtime(os.path.join(path, shards[0])) == stamp
    other = synthetic.ensure_synthetic_tfrecords(tmp_path, **{**kw, "seed": 1})
    assert other != path


@pytest.mark.slow
def test_cli_generates_and_converts(tmp_path, python):
    result = python("-m", "stabn_tf.data.synthetic", f"--output_dir={tmp_path}",
                    "--num_train_per_class=1", "--num_val_per_class=0",
                    "--num_test_per_class=1", "--resolution=32", "--num_frames=5",
                    "--workers=1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["per_split"] == {"train": 12, "validation": 0, "test": 12}
    with open(tmp_path / "something-something-v2-test.json") as f:
        assert all(set(e) == {"id"} for e in json.load(f))
