"""Boxes for attention supervision: file formats, validation, masks, records, pipeline."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stabn_tf.data import box_masks, make_dataset, tfrecord
from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data.box_masks import rasterize_boxes
from stabn_tf.data.preprocessor import ClipPreprocessor


def _mask(boxes, side: int, width: int | None = None) -> np.ndarray:
    return rasterize_boxes(np.asarray(boxes, np.float32)[np.newaxis], side, width).numpy()[0]


# --- rasterisation -----------------------------------------------------------------------


def test_rasterize_known_answers():
    np.testing.assert_allclose(_mask([[0, 0, 0.5, 0.5]], 2), [[1, 0], [0, 0]])
    # Half a cell covered (top half of the top-left cell) → 0.5.
    np.testing.assert_allclose(_mask([[0, 0, 0.25, 0.5]], 2), [[0.5, 0], [0, 0]])
    # A centred box covers a quarter of each of the four cells.
    np.testing.assert_allclose(_mask([[0.25, 0.25, 0.75, 0.75]], 2), np.full([2, 2], 0.25))
    # 4×4: rows 1-2 fully, columns: 0.5 of col 0, col 1 fully, 0.25 of col 2.
    np.testing.assert_allclose(
        _mask([[0.25, 0.125, 0.75, 0.5625]], 4),
        [[0, 0, 0, 0], [0.5, 1, 0.25, 0], [0.5, 1, 0.25, 0], [0, 0, 0, 0]], atol=1e-6)
    # Non-square map: width 3.
    np.testing.assert_allclose(_mask([[0, 0, 1, 0.5]], 1, 3), [[1, 0.5, 0]], atol=1e-6)


def test_rasterize_union_never_double_counts():
    # The same half cell twice is still half a cell; two halves make a whole one.
    np.testing.assert_allclose(_mask([[0, 0, 0.5, 0.25], [0, 0, 0.5, 0.25]], 2),
                               [[0.5, 0], [0, 0]])
    np.testing.assert_allclose(_mask([[0, 0, 0.5, 0.25], [0, 0.25, 0.5, 0.5]], 2),
                               [[1, 0], [0, 0]])
    # Overlapping boxes: clipped at 1 inside, exact union share at the border cells.
    np.testing.assert_allclose(_mask([[0, 0, 1, 0.75], [0, 0.25, 1, 1]], 2), np.ones([2, 2]))
    np.testing.assert_allclose(_mask([[0, 0, 0.5, 0.375], [0, 0.125, 0.5, 0.375]], 2),
                               [[0.75, 0], [0, 0]])


def test_rasterize_matches_supersampling_and_ignores_empty_boxes():
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 0.7, size=(5, 3, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(0.05, 0.3, size=lo.shape)], -1)
    boxes = boxes[..., [0, 1, 2, 3]].astype(np.float32)
    boxes[:, 2] = 0  # a padding box in every frame
    got = rasterize_boxes(boxes, 4).numpy()
    fine = 256
    centres = (np.arange(fine) + 0.5) / fine
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    for f in range(5):
        inside = np.zeros((fine, fine), bool)
        for y0, x0, y1, x1 in boxes[f]:
            inside |= (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        ref = inside.reshape(4, fine // 4, 4, fine // 4).mean(axis=(1, 3))
        np.testing.assert_allclose(got[f], ref, atol=0.01)
    assert rasterize_boxes(np.zeros([2, 3, 0, 4], np.float32), 3).shape == (2, 3, 3, 3)
    assert not rasterize_boxes(np.zeros([2, 1, 4], np.float32), 3).numpy().any()


# --- file formats and validation ---------------------------------------------------------


def _write(tmp_path, name, obj) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def _se_frame(clip_id, number, labels):
    return {"name": f"{clip_id}/{number:04d}.jpg", "nr_instances": len(labels),
            "gt_placeholders": ["cup"], "labels": labels}


def _se_label(category, standard, x1, y1, x2, y2):
    return {"box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, "category": category,
            "standard_category": standard}


SE_DATA = {
    "101": [
        _se_frame("101", 1, [_se_label("cup", "0000", 32, 24, 96, 72),
                             _se_label("hand", "hand", 0, 120, 64, 240)]),
        _se_frame("101", 2, [_se_label("cup", "0000", 64, 48, 128, 96)]),
        _se_frame("101", 3, []),
    ],
}


def test_something_else_parses_to_the_right_boxes(tmp_path):
    path = _write(tmp_path, "se.json", SE_DATA)
    table, problems = boxes_lib.load_box_files(path, "both")
    assert problems == []
    v = table["101"]
    assert v.pixels and v.frame_rate == 12 and v.first_frame == 1
    # Decoded at 12 fps, 240×320 original: frame 0001 → index 0, normalised by the size.
    per_frame, annotated, problems, _ = boxes_lib.resolve(v, 4, 12.0, (240, 320))
    assert problems == [] and annotated == [1, 1, 1, 0]
    assert per_frame[0] == [((0.1, 0.1, 0.3, 0.3), "object"), ((0.5, 0.0, 1.0, 0.2), "hand")]
    assert per_frame[1] == [((0.2, 0.2, 0.4, 0.4), "object")]
    assert per_frame[2] == [] and per_frame[3] == []
    # Categories pick the roles; a frame keeps its "annotated" flag with none left.
    hands, _ = boxes_lib.load_box_files(path, "hands")
    per_frame, annotated, _, _ = boxes_lib.resolve(hands["101"], 3, 12.0, (240, 320))
    assert [len(b) for b in per_frame] == [1, 0, 0] and per_frame[0][0][1] == "hand"
    assert annotated == [1, 1, 1]
    objects, _ = boxes_lib.load_box_files(path, "objects")
    assert {r for f in objects["101"].frames for r in (b.role for b in f[1])} == {"object"}
    with pytest.raises(ValueError, match="hands, objects, both"):
        boxes_lib.load_box_files(path, "faces")


def test_frames_are_mapped_by_time(tmp_path):
    table, _ = boxes_lib.load_box_files(_write(tmp_path, "se.json", SE_DATA))
    # Decoded at 24 fps: annotation frames (1/12 s apart) land on every other frame.
    _, annotated, problems, _ = boxes_lib.resolve(table["101"], 8, 24.0, (240, 320))
    assert annotated == [1, 0, 1, 0, 1, 0, 0, 0] and problems == []
    # At 6 fps frames 0001 and 0003 land on 0 and 1; 0002 sits between (t = 1/12 s) and
    # loses to the exact match.
    per_frame, annotated, _, _ = boxes_lib.resolve(table["101"], 2, 6.0, (240, 320))
    assert annotated == [1, 1] and per_frame[1] == [] and len(per_frame[0]) == 2


def test_simple_format(tmp_path):
    data = {"a": {"frames": {"0": [[0.1, 0.2, 0.5, 0.6]],
                             "2": [{"box": [0, 0, 0.5, 0.5], "role": "hand"}], "3": []}},
            "b": {"frame_size": [100, 200], "frames": {"1": [[10, 20, 50, 100]]}},
            "c": {"frame_rate": 6, "frames": {"1": [[0, 0, 1, 1]]}}}
    table, problems = boxes_lib.load_box_files(_write(tmp_path, "mine.json", data))
    assert problems == []
    per_frame, annotated, _, _ = boxes_lib.resolve(table["a"], 4, 12.0, (48, 64))
    assert annotated == [1, 0, 1, 1]
    assert per_frame[0] == [((0.1, 0.2, 0.5, 0.6), "object")]
    assert per_frame[2] == [((0.0, 0.0, 0.5, 0.5), "hand")]
    per_frame, _, _, _ = boxes_lib.resolve(table["b"], 2, 12.0, (48, 64))  # its own size wins
    assert per_frame[1] == [((0.1, 0.1, 0.5, 0.5), "object")]
    _, annotated, _, _ = boxes_lib.resolve(table["c"], 3, 12.0, None)  # 1/6 s → frame 2
    assert annotated == [0, 0, 1]


def test_bad_box_files_give_one_line_per_problem(tmp_path):
    data = {
        "good": {"frames": {"0": [[0.1, 0.1, 0.4, 0.4]]}},
        "typed": {"frames": {"0": [["a", 0, 1, 1]], "1": "box", "x": [], "2": [[0, 0, 1, 1]]}},
        "outside": {"frame_size": [100, 100], "frames": {"0": [[10, 10, 50, 150]],
                                                          "1": [[10, 10, 50, 50]]}},
        "late": {"frames": {"9": [[0, 0, 1, 1]], "1": [[0, 0, 1, 1]]}},
        "ghost": {"frames": {"0": [[0, 0, 1, 1]]}},
        "empty": {"frames": {"0": [[0.5, 0.5, 0.5, 0.9]]}},
    }
    path = _write(tmp_path, "mine.json", data)
    table, problems = boxes_lib.load_box_files(path)
    assert len(problems) == 4  # two wrong types, one bad key: found while reading
    assert all(p.startswith("mine.json: video typed, frame ") for p in problems)
    assert any("frame 0: a box must be 4 numbers" in p for p in problems)
    assert "mine.json: video typed, frame 0: no valid box on this frame: it is left " \
        "unannotated" in problems
    assert any("frame 1: expected a list of boxes" in p for p in problems)
    assert any("frame x: frame keys must be frame indices" in p for p in problems)
    unknown = boxes_lib.unknown_ids(table, ["good", "typed", "outside", "late", "empty"])
    assert unknown == ["mine.json: video ghost: no such video in the converted splits"]
    # The rest needs the decoded video: frame count and size.
    _, annotated, problems, _ = boxes_lib.resolve(table["outside"], 4, 12.0, (48, 64))
    assert problems == ["mine.json: video outside, frame 0: box [10, 10, 50, 150] lies "
                        "outside the 100x100 frame",
                        "mine.json: video outside, frame 0: no valid box on this frame: it "
                        "is left unannotated"]
    assert annotated == [0, 1, 0, 0]  # its only box was bad: not "nothing here"
    _, annotated, problems, _ = boxes_lib.resolve(table["late"], 4, 12.0, (48, 64))
    assert problems == ["mine.json: video late, frame 9: beyond the video (it would be "
                        "decoded frame 9; the video has 4)"]
    assert annotated == [0, 1, 0, 0]
    _, annotated, problems, _ = boxes_lib.resolve(table["empty"], 4, 12.0, (48, 64))
    assert len(problems) == 2 and "is empty" in problems[0] and annotated == [0] * 4
    per_frame, _, problems, _ = boxes_lib.resolve(table["good"], 4, 12.0, (48, 64))
    assert problems == [] and per_frame[0] == [((0.1, 0.1, 0.4, 0.4), "object")]
    # Something-Else: a frame without a name, and a box with a missing corner.
    bad_se = {"7": [{"labels": []}, _se_frame("7", 1, [{"box2d": {"x1": 1, "y1": 2, "x2": 3},
                                                         "standard_category": "0000"}])]}
    _, problems = boxes_lib.load_box_files(_write(tmp_path, "se.json", bad_se))
    assert len(problems) == 3 and all(p.startswith("se.json: video 7, frame ")
                                      for p in problems)
    assert problems[-1].endswith("7/0001.jpg: no valid box on this frame: it is left "
                                 "unannotated")
    with pytest.raises(ValueError, match="cannot read it as JSON"):
        (tmp_path / "broken.json").write_text("{")
        boxes_lib.load_box_files(str(tmp_path / "broken.json"))


def _se_box(x1, y1, x2, y2, standard="0000"):
    return {"box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, "standard_category": standard}


@pytest.mark.parametrize("layout", ["something_else", "simple"])
def test_a_frame_with_only_invalid_boxes_is_not_annotated(tmp_path, layout):
    """Issue 20 item 2: NaN/inf, inverted, outside or beyond the video → not annotated; an
    empty list → annotated, nothing here; a little outside → clipped and counted."""
    nan, inf = float("nan"), float("inf")
    # (frame as the file counts from 0, boxes as [y1, x1, y2, x2] pixels of a 100×200 frame)
    frames = {0: [[10, 20, nan, 60]],                 # NaN: invalid
              1: [[50, 50, 10, 90], [10, inf, 20, 30]],  # inverted, infinite: invalid
              2: [],                                  # annotated, nothing here
              3: [[10, 10, 50, 300]],                 # far outside the 200-wide frame
              4: [[-0.5, 10, 50, 201], [60, 60, 50, 50]],  # clipped + one invalid: kept
              5: [[10, 10, 90, 190]],                 # fine
              9: [[10, 10, 20, 20]]}                  # beyond the 8-frame video
    if layout == "simple":
        data = {"v": {"frame_size": [100, 200],
                      "frames": {str(f): boxes for f, boxes in frames.items()}}}
    else:  # Something-Else numbers frames from 1 at 12 fps; box2d is x1, y1, x2, y2
        data = {"v": [{"name": f"v/{f + 1:04d}.jpg",
                       "labels": [_se_box(b[1], b[0], b[3], b[2]) for b in boxes]}
                      for f, boxes in frames.items()]}
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data))  # NaN and Infinity as JSON writes them
    table, problems = boxes_lib.load_box_files(str(path))
    fitted = boxes_lib.resolve(table["v"], 8, 12.0, (100, 200))
    assert fitted.annotated == [0, 0, 1, 0, 1, 1, 0, 0]
    assert fitted.per_frame[2] == [] and fitted.clipped == 1
    assert fitted.per_frame[4] == [((0.0, 0.05, 0.5, 1.0), "object")]
    lines = problems + fitted.problems
    unannotated = [p for p in lines if p.endswith("no valid box on this frame: it is left "
                                                  "unannotated")]
    assert len(unannotated) == 3  # frames 0, 1 and 3; frame 9 says "beyond the video"
    assert any("beyond the video" in p for p in lines)
    assert all(p.startswith("boxes.json: video v, frame ") for p in lines)


@pytest.mark.parametrize("layout", ["something_else", "simple"])
def test_a_malformed_frame_name_is_one_problem_line(tmp_path, layout):
    """Issue 20 item 2 / issue 23 item 4: "²", 400 or 5000 digits: one line for that
    entry (shortened), never a stop; the video keeps its good boxes."""
    bad = ["²", "1" * 400, "9" * 5000, "٣"]
    if layout == "simple":
        data = {"v": {"frames": {**{key: [[0, 0, 1, 1]] for key in bad},
                                 "1": [[0.1, 0.1, 0.5, 0.5]]}}}
    else:
        data = {"v": [{"name": f"v/{key}.jpg", "labels": [_se_box(0, 0, 10, 10)]}
                      for key in bad] + [{"name": "v/0002.jpg",
                                          "labels": [_se_box(10, 10, 50, 50)]}]}
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(data))
    table, problems = boxes_lib.load_box_files(str(path))
    assert len(problems) == len(bad), problems
    assert all(len(p) < 250 and p.startswith("boxes.json: video v, frame ") for p in problems)
    assert any("400 digits" in p or "(404 chars)" in p or "(400 chars)" in p
               for p in problems)
    fitted = boxes_lib.resolve(table["v"], 4, 12.0, (100, 100))
    assert fitted.annotated == [0, 1, 0, 0] and fitted.problems == []


def test_supervised_subset_is_stable_and_nested():
    ids = tf.constant([f"video{i}" for i in range(2000)])
    ten = box_masks.in_supervised_subset(ids, 0.1, seed=3).numpy()
    assert 0.07 < ten.mean() < 0.13
    np.testing.assert_array_equal(ten, box_masks.in_supervised_subset(ids, 0.1, 3).numpy())
    half = box_masks.in_supervised_subset(ids, 0.5, seed=3).numpy()
    assert (half | ~ten).all()  # the 10 % subset lies inside the 50 % one
    other = box_masks.in_supervised_subset(ids, 0.1, seed=4).numpy()
    assert (other != ten).any()
    assert box_masks.in_supervised_subset(ids, 1.0).numpy().all()
    assert not box_masks.in_supervised_subset(ids, 0.0).numpy().any()
    assert bool(box_masks.in_supervised_subset(tf.constant("video1"), 1.0))


# --- records and the pipeline ------------------------------------------------------------


def _jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


H, W, N = 60, 80, 10


def _bright_box_video(n=N):
    """A white rectangle moving right and down over a dark background, and its boxes."""
    frames, boxes = [], []
    for t in range(n):
        f = np.full((H, W, 3), 20, np.uint8)
        y0, x0, y1, x1 = 6 + 2 * t, 4 + 3 * t, 30 + 2 * t, 34 + 3 * t
        f[y0:y1, x0:x1] = 240
        frames.append(_jpeg(f))
        boxes.append([((y0 / H, x0 / W, y1 / H, x1 / W), "object")])
    return frames, boxes


def test_records_round_trip_boxes_and_keep_the_gt_view(tmp_path):
    frames, boxes = _bright_box_video(3)
    hand = ((0.5, 0.5, 0.9, 0.9), "hand")
    rec = tfrecord.make_sequence_example(
        "v", 0, "x", frames, boxes=[[hand, *boxes[0]], [], boxes[2]], box_annotated=[1, 1, 0])
    parsed = tfrecord.parse_sequence_example(tf.constant(rec), with_boxes=True,
                                             with_ground_truth=False)
    values, roles, counts = tfrecord.box_values(parsed, 3)
    assert counts.numpy().tolist() == [2, 0, 1]
    assert roles.numpy().tolist() == [b"hand", b"object", b"object"]
    np.testing.assert_allclose(values.numpy()[0], hand[0])
    assert parsed[tfrecord.BOX_ANNOTATED].numpy().tolist() == [1, 1, 0]
    assert parsed[tfrecord.GT_ACTIVE].shape == (0,)
    # The synthetic layout: gt_box becomes role-object boxes; the old view is derived.
    gt = [[0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], [0.2, 0.2, 0.6, 0.6]]
    rec = tfrecord.make_sequence_example("s", 0, "x", frames, gt_active=[0, 1, 1], gt_box=gt)
    lists = tf.train.SequenceExample.FromString(rec).feature_lists.feature_list
    assert tfrecord.GT_BOX not in lists and tfrecord.BOX_YMIN in lists
    assert tfrecord.has_ground_truth(rec)
    parsed = tfrecord.parse_sequence_example(tf.constant(rec), with_ground_truth=True)
    np.testing.assert_allclose(parsed[tfrecord.GT_BOX].numpy(), gt, atol=1e-7)
    # Records written before (clip/gt/box) still read the same.
    old = tf.train.SequenceExample.FromString(
        tfrecord.make_sequence_example("o", 0, "x", frames))
    for a, b in zip([0, 1, 1], gt):
        old.feature_lists.feature_list[tfrecord.GT_ACTIVE].feature.add().int64_list.value \
            .append(a)
        old.feature_lists.feature_list[tfrecord.GT_BOX].feature.add().float_list.value \
            .extend(b)
    old = old.SerializeToString()
    assert tfrecord.has_ground_truth(old)
    parsed = tfrecord.parse_sequence_example(tf.constant(old), with_ground_truth=True)
    np.testing.assert_allclose(parsed[tfrecord.GT_BOX].numpy(), gt, atol=1e-7)


@pytest.fixture(scope="module")
def box_records(tmp_path_factory) -> str:
    """One shard: a boxed video with active labels, one with boxes only, one without."""
    path = str(tmp_path_factory.mktemp("boxes") / "train-00000-of-00001.tfrecord")
    frames, boxes = _bright_box_video()
    active = [int(3 <= t < 7) for t in range(N)]
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(tfrecord.make_sequence_example("a", 0, "Holding something", frames,
                                                    boxes=boxes, gt_active=active))
        writer.write(tfrecord.make_sequence_example("b", 0, "Holding something", frames,
                                                    boxes=boxes))
        writer.write(tfrecord.make_sequence_example("c", 0, "Holding something", frames))
    return path


def _take(path, **kwargs):
    options = dict(training=True, batch_size=3, preprocessor=ClipPreprocessor(4, 32),
                   with_boxes=True, with_metadata=True, with_ground_truth=False, seed=0, flip=True,
                   labels=["Holding something"],
                   color_jitter=0.0, shuffle_buffer=1)
    options.update(kwargs)
    return list(make_dataset(path, **options))


@pytest.mark.slow
def test_box_stays_on_the_bright_pixels_through_sampling_crop_resize_flip(box_records):
    """A mask at pixel resolution must match the white rectangle in every sampled frame,
    for random segments, crops and flips (several seeds)."""
    flips = set()
    for seed in range(3):
        for clips, targets in _take(box_records, seed=seed, box_mask_size=32,
                                    crop_area_range=(0.4, 1.0)):
            ids = [i.decode() for i in targets["clip_id"].numpy()]
            for b, clip_id in enumerate(ids):
                bright = clips.numpy()[b].mean(-1) > 0.5  # normalised: white ≈ 2, dark ≈ -1.7
                mask = targets["box_mask"].numpy()[b]
                if clip_id == "c":
                    assert not mask.any() and not targets["box_frames"].numpy()[b].any()
                    continue
                assert targets["box_frames"].numpy()[b].tolist() == [1, 1, 1, 1]
                for t in range(4):
                    inside, outside = bright[t][mask[t] > 0.99], bright[t][mask[t] < 0.01]
                    assert inside.size > 0 and inside.mean() > 0.97, (seed, clip_id, t)
                    assert outside.mean() < 0.03, (seed, clip_id, t)
                # Which way the rectangle moves tells whether the clip was flipped.
                cols = [np.nonzero(mask[t].max(0) > 0.5)[0].mean() for t in (0, 3)]
                flips.add(bool(cols[1] < cols[0]))
    assert flips == {True, False}


@pytest.mark.slow
def test_supervision_targets_shapes_and_unknowns(box_records):
    (clips, targets), = _take(box_records, flip=False)
    assert targets["box_mask"].shape == (3, 4, 2, 2)
    assert targets["box_mask"].dtype == tf.float32
    assert targets["box_frames"].shape == targets["active"].shape == (3, 4)
    assert targets["active_known"].shape == (3,)
    by_id = {c.decode(): i for i, c in enumerate(targets["clip_id"].numpy())}
    known = targets["active_known"].numpy()
    assert known[by_id["a"]] == 1 and known[by_id["b"]] == 0 and known[by_id["c"]] == 0
    frames = targets["frame_indices"].numpy()[by_id["a"]]
    np.testing.assert_array_equal(targets["active"].numpy()[by_id["a"]],
                                  ((frames >= 3) & (frames < 7)).astype(np.float32))
    assert not targets["active"].numpy()[by_id["b"]].any()
    # Without supervision the batches are what they were: same clips, no extra keys.
    (plain_clips, plain), = _take(box_records, flip=False, with_boxes=False)
    np.testing.assert_array_equal(plain_clips.numpy(), clips.numpy())
    assert not set(plain) & {"box_mask", "box_frames", "active", "active_known"}
    # supervised_fraction=0: every weight is zero; the clips do not change.
    (clips0, none), = _take(box_records, flip=False, supervised_fraction=0.0)
    np.testing.assert_array_equal(clips0.numpy(), clips.numpy())
    for key in ("box_mask", "box_frames", "active", "active_known"):
        assert not none[key].numpy().any()
    # Roles: a hand-only mask of object boxes is empty, but the frames stay annotated.
    (_, hands), = _take(box_records, flip=False, box_roles=("hand",))
    assert not hands["box_mask"].numpy().any() and hands["box_frames"].numpy().sum() == 8
    # Multi-clip evaluation gets an n axis.
    (_, multi), = _take(box_records, training=False, num_clips=2, flip=False)
    assert multi["box_mask"].shape == (3, 2, 4, 2, 2)
    assert multi["active"].shape == (3, 2, 4) and multi["active_known"].shape == (3,)
    with pytest.raises(ValueError, match="supervised_fraction"):
        _take(box_records, supervised_fraction=1.5)


# --- when: active frames ----------------------------------------------------------------


def test_active_frames_parse_and_fit(tmp_path):
    data = {"a": {"frames": {"0": [[0.1, 0.1, 0.5, 0.5]]}, "active_frames": [[2, 4], 7, 3]},
            "only": {"active_frames": [1]},  # no boxes: active labels alone
            "none": {"frames": {"0": []}, "active_frames": []},  # known: never active
            "boxes": {"frames": {"0": []}},  # no field: active unknown
            "timed": {"frame_rate": 6, "active_frames": [[1, 2]]}}
    table, problems = boxes_lib.load_box_files(_write(tmp_path, "mine.json", data))
    assert problems == []
    assert table["a"].active == ((2, 4), (3, 3), (7, 7)) and table["boxes"].active is None
    assert table["only"].frames == ()
    assert boxes_lib.resolve_active(table["a"], 9, 12.0) == ([0, 0, 1, 1, 1, 0, 0, 1, 0], [])
    assert boxes_lib.resolve_active(table["only"], 3, None) == ([0, 1, 0], [])
    assert boxes_lib.resolve_active(table["none"], 3, 12.0) == ([0, 0, 0], [])
    assert boxes_lib.resolve_active(table["boxes"], 3, 12.0) == (None, [])
    # By time: 6 fps frames 1..2 (1/6 s to 2/6 s) are decoded frames 2..4 at 12 fps.
    labels, _ = boxes_lib.resolve_active(table["timed"], 6, 12.0)
    assert labels == [0, 0, 1, 1, 1, 0]
    # A box file's boxes are unchanged by the field.
    assert boxes_lib.resolve(table["a"], 9, 12.0, None).annotated == [1] + [0] * 8


def test_bad_active_frames_give_one_line_each(tmp_path):
    data = {"dict": {"frames": {"0": []}, "active_frames": {"1": True}},
            "item": {"active_frames": [2, "3", [1, 2, 3], True, -1, [4, 5]]},
            "inverted": {"frames": {"0": [[0, 0, 1, 1]]}, "active_frames": [[12, 4]]},
            "frames": {"frames": [], "active_frames": [1]},
            "late": {"active_frames": [[2, 20], 30, 1]},
            "beyond": {"active_frames": [[40, 50]]}}
    table, problems = boxes_lib.load_box_files(_write(tmp_path, "mine.json", data))
    lines = [str(p) for p in problems]
    assert lines == [
        "mine.json: video dict: 'active_frames' must be a list of frame indices and "
        "[first, last] ranges, got dict",
        "mine.json: video item: 'active_frames' item \"3\" is neither a frame index "
        "(0, 1, ...) nor an inclusive [first, last] range",
        "mine.json: video item: 'active_frames' item [1, 2, 3] is neither a frame index "
        "(0, 1, ...) nor an inclusive [first, last] range",
        "mine.json: video item: 'active_frames' item true is neither a frame index "
        "(0, 1, ...) nor an inclusive [first, last] range",
        "mine.json: video item: 'active_frames' item -1 is neither a frame index "
        "(0, 1, ...) nor an inclusive [first, last] range",
        f"mine.json: video item: {boxes_lib.NO_VALID_ACTIVE}",
        "mine.json: video inverted: 'active_frames' range [12, 4] is inverted (needs "
        "first ≤ last)",
        f"mine.json: video inverted: {boxes_lib.NO_VALID_ACTIVE}",
        "mine.json: video frames: expected an object with 'frames': {frame index: [boxes]} "
        "and/or 'active_frames': [frame index or [first, last], ...]",
    ]
    # Bad labels leave the video's activity unknown; its boxes are kept.
    assert "item" not in table and table["dict"].active is None
    assert table["inverted"].active is None and len(table["inverted"].frames) == 1
    # Beyond the video (known only once decoded): a range running past the end is cut
    # at the last frame; one wholly beyond leaves the active frames unknown (not "nothing
    # happens here"), like any other bad item; each says so.
    labels, late = boxes_lib.resolve_active(table["late"], 6, None)
    assert labels is None
    assert [p.what for p in late] == [
        "'active_frames' item [2, 20] runs past the end of the video (it would end at "
        "decoded frame 20; the video has 6): cut at its last frame",
        "'active_frames' item 30 lies beyond the video (it would start at decoded frame "
        "30; the video has 6)", boxes_lib.NO_VALID_ACTIVE]
    assert all(p.clip_id == "late" and p.file == "mine.json" for p in late)
    labels, beyond = boxes_lib.resolve_active(table["beyond"], 6, None)
    assert labels is None and beyond[-1].what == boxes_lib.NO_VALID_ACTIVE
    assert boxes_lib.resolve_active(table["late"], 40, None)[0][29:32] == [0, 1, 0]


def test_active_labels_feed_mt_and_stay_apart_from_the_ground_truth(tmp_path):
    """`clip/active` (a box file's labels) supervises Mt ahead of `clip/gt/active`; a
    record converted with ground_truth_supervision=False supervises nothing, yet the
    metrics still read its ground truth."""
    frames, boxes = _bright_box_video()
    truth = [int(3 <= t < 7) for t in range(N)]
    mine = [int(t >= 5) for t in range(N)]
    gt_box = [b[0][0] for b in boxes]
    path = str(tmp_path / "train-00000-of-00001.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for clip_id, kwargs in (
                ("file", dict(boxes=boxes, active=mine)),  # a box file's labels only
                ("both", dict(gt_active=truth, gt_box=gt_box, active=mine)),
                ("truth", dict(gt_active=truth, gt_box=gt_box)),  # as always
                ("metrics", dict(gt_active=truth, gt_box=gt_box,
                                 ground_truth_supervision=False)),
                ("metrics_file", dict(gt_active=truth, gt_box=gt_box, active=mine,
                                      ground_truth_supervision=False))):
            writer.write(tfrecord.make_sequence_example(clip_id, 0, "Holding something",
                                                        frames, **kwargs))
    (_, targets), = _take(path, batch_size=5, flip=False, training=False)
    by_id = {c.decode(): i for i, c in enumerate(targets["clip_id"].numpy())}
    frames_of = targets["frame_indices"].numpy()
    known, active = targets["active_known"].numpy(), targets["active"].numpy()
    box_frames = targets["box_frames"].numpy()
    for clip_id, expected in (("file", mine), ("both", mine), ("truth", truth),
                              ("metrics_file", mine)):
        i = by_id[clip_id]
        assert known[i] == 1, clip_id
        np.testing.assert_array_equal(active[i], np.take(expected, frames_of[i]), clip_id)
    i = by_id["metrics"]
    assert known[i] == 0 and not active[i].any() and not box_frames[i].any()
    assert not box_frames[by_id["metrics_file"]].any() and box_frames[by_id["truth"]].all()
    # The explanation metrics' view is the generator's, whatever supervises.
    for raw in tf.data.TFRecordDataset(path).skip(1):
        assert tfrecord.has_ground_truth(raw.numpy())
        parsed = tfrecord.parse_sequence_example(raw, with_ground_truth=True)
        assert parsed[tfrecord.GT_ACTIVE].numpy().tolist() == truth
        np.testing.assert_allclose(parsed[tfrecord.GT_BOX].numpy(), gt_box, atol=1e-6)
    with pytest.raises(ValueError, match="active has 2 entries for 10 frames"):
        tfrecord.make_sequence_example("x", 0, "x", frames, active=[0, 1])
