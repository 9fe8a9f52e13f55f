"""The converter's `--boxes`: Something-Else files fitted to the decoded videos, stored in
the records and read back by the pipeline; problems listed; resume follows the boxes."""

import glob
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import convert, make_dataset, tfrecord
from stabn_tf.data.convert import encode
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.data.video import write_video

H, W, N, FPS = 48, 64, 16, 24  # decoded at 24 fps: Something-Else's 12 fps frames land on 0, 2, ...
OBJECT_Y, HAND = (8, 28), (32, 40, 42, 50)  # hand: y1, x1, y2, x2 (static)
LABELS = ["Holding something", "Pushing something"]


def _object_x(t: int) -> tuple[int, int]:
    return 14 + t, 26 + t


def _frames() -> np.ndarray:
    """A bright object moving right (one pixel per decoded frame) and a bright static
    "hand" on a dark background: boxes that are right cover exactly the bright pixels."""
    frames = np.full((N, H, W, 3), 20, np.uint8)
    y1, x1, y2, x2 = HAND
    for t in range(N):
        a, b = _object_x(t)
        frames[t, OBJECT_Y[0]:OBJECT_Y[1], a:b] = 240
        frames[t, y1:y2, x1:x2] = 240
    return frames


def _write_webm(path, frames: np.ndarray) -> None:
    write_video(str(path), frames, FPS, "libvpx-vp9")


def _se_frame(clip_id: str, number: int, hand: bool = True, **object_box) -> dict:
    """One Something-Else frame: its name, the object's box (pixels) and the hand's."""
    a, b = _object_x(2 * (number - 1))  # 12 fps frame k is decoded frame 2 (k - 1)
    box = {"x1": a, "y1": OBJECT_Y[0], "x2": b, "y2": OBJECT_Y[1], **object_box}
    labels = [{"box2d": box, "category": "0000"}]
    if hand:  # newer files also carry "standard_category"; "category" alone is enough
        y1, x1, y2, x2 = HAND
        labels.append({"box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
                       "category": "hand"})
    return {"name": f"{clip_id}/{number:04d}.jpg", "labels": labels}


GOOD = {"1": [_se_frame("1", k) for k in range(1, 9)]}
BAD = {
    "3": [_se_frame("3", 1), _se_frame("3", 2, x2=200), _se_frame("3", 3, x1="a"),
          _se_frame("3", 40),
          _se_frame("3", 4, hand=False, x1=float("nan")),  # its only box invalid
          {"name": "3/²².jpg", "labels": []}, {"name": f"3/{'1' * 400}.jpg", "labels": []},
          _se_frame("3", 5, x2=64.3)],  # a little outside the 64-wide frame: clipped
    "999": [_se_frame("999", 1)],
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> str:
    """SSv2 layout: train videos 1 (boxed) and 2 (no boxes), validation video 3."""
    root = tmp_path_factory.mktemp("ssv2_boxes")
    videos = root / "20bn-something-something-v2"
    videos.mkdir()
    frames = _frames()
    for clip_id in ("1", "2", "3"):
        _write_webm(videos / f"{clip_id}.webm", frames)
    (root / "something-something-v2-labels.json").write_text(
        json.dumps({name: str(i) for i, name in enumerate(LABELS)}))
    (root / "something-something-v2-train.json").write_text(json.dumps(
        [{"id": "1", "template": "Holding [something]"},
         {"id": "2", "template": "Pushing [something]"}]))
    (root / "something-something-v2-validation.json").write_text(json.dumps(
        [{"id": "3", "template": "Holding [something]"}]))
    return str(root)


def _write(path, data) -> str:
    pathlib.Path(path).write_text(json.dumps(data))
    return str(path)


def _convert(raw, out, **kwargs) -> dict:
    return convert.convert_dataset("ssv2", raw, out, workers=1, num_shards=1,
                                   progress=False, **kwargs)


def _records(out, split) -> dict[str, tf.train.SequenceExample]:
    path = os.path.join(out, f"{split}-00000-of-00001.tfrecord")
    recs = [tf.train.SequenceExample.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    return {r.context.feature[tfrecord.CLIP_ID].bytes_list.value[0].decode(): r for r in recs}


def _roles(rec) -> list[list[str]]:
    return [[r.decode() for r in f.bytes_list.value]
            for f in rec.feature_lists.feature_list[tfrecord.BOX_ROLE].feature]


def _clips(out, split, **kwargs):
    ds = make_dataset(os.path.join(out, f"{split}-*.tfrecord"), training=False, batch_size=4,
                      preprocessor=ClipPreprocessor(N, 48), box_mask_size=48, with_boxes=True,
                      with_metadata=True, labels=LABELS, **kwargs)
    (clips, targets), = list(ds)
    ids = [c.decode() for c in targets["clip_id"].numpy()]
    return ids, clips.numpy(), {k: v.numpy() for k, v in targets.items()}


def test_something_else_boxes_cover_the_right_pixels(raw, tmp_path):
    out = str(tmp_path / "out")
    manifest = _convert(raw, out, boxes=_write(tmp_path / "se.json", GOOD))
    assert manifest["boxes"]["videos_with_boxes"] == 1 and manifest["boxes"]["problems"] == 0
    assert manifest["splits"]["train"]["videos_with_boxes"] == 1
    assert manifest["schema"]["feature_lists"] == [
        tfrecord.IMAGE_ENCODED, *tfrecord.BOX_COORDS, tfrecord.BOX_ROLE,
        tfrecord.BOX_ANNOTATED]
    recs = _records(out, "train")
    assert tfrecord.BOX_YMIN not in recs["2"].feature_lists.feature_list  # unsupervised
    # 12 fps frames 1..8 → decoded frames 0, 2, ..., 14 of the 24 fps video.
    assert _roles(recs["1"]) == [["object", "hand"] if t % 2 == 0 else [] for t in range(N)]

    ids, clips, targets = _clips(out, "train")
    for b, clip_id in enumerate(ids):
        frames, mask = targets["frame_indices"][b], targets["box_mask"][b]
        annotated = targets["box_frames"][b]
        if clip_id == "2":
            assert not annotated.any() and not mask.any()
            continue
        np.testing.assert_array_equal(annotated, (frames % 2 == 0).astype(annotated.dtype))
        bright = clips[b].mean(-1) > 0.5  # normalised: bright ≈ 2, dark ≈ -1.7
        for t in np.nonzero(annotated)[0]:
            inside, outside = bright[t][mask[t] > 0.99], bright[t][mask[t] < 0.01]
            assert inside.size > 100 and inside.mean() > 0.97, t
            assert outside.mean() < 0.02, t


def test_box_categories_hands_keeps_only_hand_boxes(raw, tmp_path):
    out = str(tmp_path / "out")
    manifest = _convert(raw, out, boxes=_write(tmp_path / "se.json", GOOD),
                        box_categories="hands", splits=("train",))
    assert manifest["boxes"]["categories"] == "hands"
    assert _roles(_records(out, "train")["1"]) == [
        ["hand"] if t % 2 == 0 else [] for t in range(N)]
    ids, clips, targets = _clips(out, "train")
    b = ids.index("1")
    mask = targets["box_mask"][b][0]  # frame 0: the hand square only, not the object
    bright = clips[b][0].mean(-1) > 0.5
    assert bright[mask > 0.99].mean() > 0.97 and mask.sum() < 0.5 * bright.sum()
    with pytest.raises(convert.UsageError, match="box_categories"):
        _convert(raw, str(tmp_path / "x"), boxes=str(tmp_path / "se.json"),
                 box_categories="faces")
    with pytest.raises(convert.UsageError, match="cannot read it as JSON"):
        _convert(raw, str(tmp_path / "y"), boxes=str(tmp_path / "missing.json"))


def test_bad_box_files_give_one_line_per_problem_and_every_video_converts(
        raw, tmp_path, run_command):
    good, bad = _write(tmp_path / "se.json", GOOD), _write(tmp_path / "bad.json", BAD)
    out = str(tmp_path / "out")
    proc = run_command("stabn_tf.data.convert", "--dataset=ssv2", f"--input_dir={raw}",
                       f"--output_dir={out}", f"--boxes={good},{bad}", "--workers=1",
                       "--num_shards=1", "--noprogress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = [
        "bad.json: video 3, frame 3/0003.jpg: a label needs 'box2d' with numbers x1, y1, "
        "x2, y2, got {'x1': 'a', 'y1': 8, 'x2': 30, 'y2': 28}",
        "bad.json: video 3, frame 3/0004.jpg: a label needs 'box2d' with numbers x1, y1, "
        "x2, y2, got {'x1': nan, 'y1': 8, 'x2': 32, 'y2': 28}",
        "bad.json: video 3, frame 3/0004.jpg: no valid box on this frame: it is left "
        "unannotated",
        "bad.json: video 3, frame #5: a frame needs a 'name' like '3/0001.jpg', got "
        "'3/²².jpg'",
        f"bad.json: video 3, frame 3/{'1' * 78}... (406 chars): the frame number has 400 "
        "digits; a frame number has at most 7",
        "bad.json: video 999: no such video in the converted splits",
        "bad.json: video 3, frame 2: box [8, 16, 28, 200] lies outside the 64x48 frame",
        "bad.json: video 3, frame 40: beyond the video (it would be decoded frame 78; the "
        "video has 16)",
    ]
    with open(os.path.join(out, convert.BOX_PROBLEMS_FILE)) as f:
        rows = [json.loads(line) for line in f]
    assert [r["line"] for r in rows] == expected
    assert [(r["split"], r["id"], r["frame"]) for r in rows] == [
        (None, "3", "3/0003.jpg"), (None, "3", "3/0004.jpg"), (None, "3", "3/0004.jpg"),
        (None, "3", "#5"), (None, "3", f"3/{'1' * 78}... (406 chars)"), (None, "999", None),
        ("validation", "3", 2), ("validation", "3", 40)]
    for line in expected:  # the summary lists each
        assert f"  {line}" in proc.stdout
    assert "boxes (both) from 2 file(s): 2 videos with boxes, 1 boxes clipped to the frame, " \
        "8 problems" in proc.stdout
    with open(os.path.join(out, convert.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert [manifest["splits"][s]["written"] for s in ("train", "validation")] == [2, 1]
    assert manifest["splits"]["validation"]["failed"] == 0
    assert manifest["boxes"]["clipped"] == 1
    # Video 3 keeps its good boxes: frames 1 and 2 (minus the bad object box), 3 (minus
    # its untyped object box) and 5 (clipped) are annotated; frame 4, whose only box was
    # invalid, is not ("no box here" would be a lie); frame 40 is dropped.
    rec = _records(out, "validation")["3"]
    assert _roles(rec)[:10] == [["object", "hand"], [], ["hand"], [], ["hand"], [], [], [],
                                ["object", "hand"], []]
    annotated = [f.int64_list.value[0]
                 for f in rec.feature_lists.feature_list[tfrecord.BOX_ANNOTATED].feature]
    assert annotated == [1, 0, 1, 0, 1, 0, 0, 0, 1] + [0] * (N - 9)


def test_resume_follows_the_boxes(raw, tmp_path):
    out = str(tmp_path / "out")
    plain = _convert(raw, out)
    assert plain["videos_processed_this_run"] == 3
    unboxed = _record_bytes(out, "train", "2")
    # Adding box files re-converts only the videos they list (1 and 3); video 2's record
    # is copied unchanged.
    se = _write(tmp_path / "se.json", GOOD)
    files = [se, _write(tmp_path / "bad.json", BAD)]
    first = _convert(raw, out, boxes=files)
    assert first["videos_processed_this_run"] == 2
    assert _record_bytes(out, "train", "2") == unboxed
    assert _convert(raw, out, boxes=files)["videos_processed_this_run"] == 0
    # One changed box of video 1: exactly that video again; validation is untouched.
    validation = os.path.join(out, "validation-00000-of-00001.tfrecord")
    stamp = os.stat(validation).st_mtime_ns
    changed = json.loads(json.dumps(GOOD))
    changed["1"][3]["labels"][0]["box2d"]["x2"] -= 4
    _write(se, changed)
    again = _convert(raw, out, boxes=files)
    assert again["videos_processed_this_run"] == 1
    assert os.stat(validation).st_mtime_ns == stamp
    assert again["boxes"]["problems"] == first["boxes"]["problems"] == 8  # kept on reuse
    # ...and the result is what a fresh conversion gives.
    fresh = str(tmp_path / "fresh")
    _convert(raw, fresh, boxes=files)
    for name in ("train-00000-of-00001.tfrecord", "validation-00000-of-00001.tfrecord"):
        assert pathlib.Path(out, name).read_bytes() == pathlib.Path(fresh, name).read_bytes()
    # Other categories change the boxed videos' records only.
    assert _convert(raw, out, boxes=files, box_categories="objects"
                    )["videos_processed_this_run"] == 2


def _record_bytes(out: str, split: str, clip_id: str) -> bytes:
    (path,) = glob.glob(os.path.join(out, f"{split}-*.tfrecord"))
    for raw in tf.data.TFRecordDataset(path):
        ex = tf.train.SequenceExample.FromString(raw.numpy())
        if ex.context.feature[tfrecord.CLIP_ID].bytes_list.value[0].decode() == clip_id:
            return raw.numpy()
    raise KeyError(clip_id)


def test_a_persons_boxes_on_a_synthetic_clip_keep_its_ground_truth(tmp_path):
    """Frames the file annotates take its boxes; the others keep the synthetic object box,
    and `clip/gt/box` (what the explanation metrics read) stays the generator's."""
    gt = ((0.1, 0.1, 0.5, 0.5), (0.0, 0.0, 0.0, 0.0), (0.2, 0.2, 0.6, 0.6))
    table, _ = boxes_lib.load_box_files(_write(
        tmp_path / "mine.json", {"s": {"frames": {"1": [[0.3, 0.3, 0.9, 0.9]]}}}))
    item = convert.VideoItem("train", "s", 0, "x", "s.webm", gt_active=(0, 1, 1), gt_box=gt,
                             boxes=table["s"])
    boxes, annotated, problems, clipped = encode._fit_boxes(item, 3, 12.0, (48, 64))
    assert problems == [] and annotated == [1, 1, 1] and clipped == 0
    assert boxes == [[(gt[0], "object")], [((0.3, 0.3, 0.9, 0.9), "object")],
                     [(gt[2], "object")]]
    jpeg = tf.io.encode_jpeg(tf.zeros([4, 4, 3], tf.uint8)).numpy()
    rec = tfrecord.make_sequence_example("s", 0, "x", [jpeg] * 3, gt_active=[0, 1, 1],
                                         gt_box=gt, boxes=boxes, box_annotated=annotated)
    parsed = tfrecord.parse_sequence_example(tf.constant(rec), with_ground_truth=True)
    np.testing.assert_allclose(parsed[tfrecord.GT_BOX].numpy(), gt, atol=1e-7)


def test_active_frames_are_stored_reported_and_resumed(raw, tmp_path):
    out = str(tmp_path / "out")
    data = {"1": {"frames": {"0": [[0.1, 0.1, 0.5, 0.5]]}, "active_frames": [[4, 9]]},
            "2": {"active_frames": [[12, 40]]},  # no boxes; runs past the 16 frames
            "3": {"frames": {"1": []}}}  # boxes, no field: active unknown
    mine = _write(tmp_path / "mine.json", data)
    manifest = _convert(raw, out, boxes=[mine])
    assert tfrecord.ACTIVE in manifest["schema"]["feature_lists"]
    assert manifest["boxes"]["first_problems"] == [
        "mine.json: video 2: 'active_frames' item [12, 40] runs past the end of the video "
        "(it would end at decoded frame 40; the video has 16): cut at its last frame"]
    train, validation = _records(out, "train"), _records(out, "validation")

    def labels(rec):
        return [f.int64_list.value[0]
                for f in rec.feature_lists.feature_list[tfrecord.ACTIVE].feature]

    assert labels(train["1"]) == [int(4 <= t <= 9) for t in range(N)]
    assert labels(train["2"]) == [int(t >= 12) for t in range(N)]
    assert tfrecord.BOX_YMIN not in train["2"].feature_lists.feature_list  # no boxes given
    assert tfrecord.ACTIVE not in validation["3"].feature_lists.feature_list
    ids, _, targets = _clips(out, "train")
    for clip_id in ("1", "2"):
        i = ids.index(clip_id)
        assert targets["active_known"][i] == 1
        np.testing.assert_array_equal(targets["active"][i], labels(train[clip_id]))
    assert targets["box_frames"][ids.index("1")].sum() == 1
    assert not targets["box_frames"][ids.index("2")].any()
    ids, _, targets = _clips(out, "validation")
    assert targets["active_known"][0] == 0 and targets["box_frames"][0].sum() == 1
    # Resume: editing one video's active frames re-converts that video alone.
    assert _convert(raw, out, boxes=[mine])["videos_processed_this_run"] == 0
    data["1"]["active_frames"] = [[4, 10]]
    _write(mine, data)
    assert _convert(raw, out, boxes=[mine])["videos_processed_this_run"] == 1
    assert labels(_records(out, "train")["1"])[10] == 1


def test_ground_truth_for_the_metrics_only(raw, tmp_path):
    """ground_truth_supervision=False: the synthetic ground truth stays the metrics'
    (clip/gt/*), and only the box file's videos are supervised."""
    root = tmp_path / "raw"
    shutil.copytree(raw, root)
    truth = {"active": [int(t >= 8) for t in range(N)], "box": [[0.1, 0.2, 0.6, 0.7]] * N}
    (root / "something-something-v2-groundtruth.json").write_text(
        json.dumps({c: truth for c in ("1", "2", "3")}))
    mine = _write(tmp_path / "mine.json",
                  {"1": {"frames": {"2": [[0.2, 0.2, 0.4, 0.4]]}, "active_frames": [[0, 3]]}})
    out = str(tmp_path / "out")
    manifest = _convert(str(root), out, boxes=[mine], ground_truth_supervision=False)
    assert manifest["boxes"]["ground_truth_supervision"] is False
    assert tfrecord.GT_SUPERVISION in manifest["schema"]["context"]
    ids, _, targets = _clips(out, "train")
    one, two = ids.index("1"), ids.index("2")
    assert targets["box_frames"][one].tolist() == [int(t == 2) for t in range(N)]
    np.testing.assert_array_equal(targets["active"][one], [int(t <= 3) for t in range(N)])
    assert targets["active_known"][two] == 0 and not targets["box_frames"][two].any()
    # The metrics read the generator's truth in every record.
    for rec in _records(out, "train").values():
        parsed = tfrecord.parse_sequence_example(tf.constant(rec.SerializeToString()),
                                                 with_ground_truth=True)
        assert parsed[tfrecord.GT_ACTIVE].numpy().tolist() == truth["active"]
        np.testing.assert_allclose(parsed[tfrecord.GT_BOX].numpy(), truth["box"], atol=1e-6)
    # The default is what it always was: every synthetic clip supervises (re-converted).
    again = _convert(str(root), out, boxes=[mine])
    assert again["videos_processed_this_run"] == 3
    assert "ground_truth_supervision" not in again["boxes"]
    ids, _, targets = _clips(out, "train")
    two = ids.index("2")
    assert targets["active_known"][two] == 1 and targets["box_frames"][two].all()
