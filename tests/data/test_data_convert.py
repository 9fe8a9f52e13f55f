"""The converter: SSv2 / SSv1 / folder layouts, failures listed, determinism, resume."""

import glob
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stabn_tf.data import convert, make_dataset, read_labels, tfrecord
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.data.synthetic import CLASSES, TEMPLATES


def _records(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        for raw in tf.data.TFRecordDataset(path):
            out.append(tf.train.SequenceExample.FromString(raw.numpy()))
    return out


def _ctx(ex, key):
    feat = ex.context.feature[key]
    return (feat.bytes_list.value or feat.int64_list.value or feat.float_list.value)[0]


def _shard_bytes(out_dir):
    return {os.path.basename(p): pathlib.Path(p).read_bytes()
            for p in sorted(glob.glob(os.path.join(out_dir, "*.tfrecord")))}


def _failures(out_dir):
    with open(os.path.join(out_dir, convert.FAILURES_FILE)) as f:
        return [json.loads(line) for line in f]


# --- SSv2 (synthetic) end to end ----------------------------------------------------------


def test_synthetic_ssv2_end_to_end(converted, synthetic_raw):
    out, manifest = converted
    assert read_labels(os.path.join(out, "labels.txt")) == list(CLASSES)
    with open(os.path.join(out, convert.MANIFEST_FILE)) as f:
        assert json.load(f)["splits"] == manifest["splits"]
    for split, per_class in (("train", 2), ("validation", 1)):
        s = manifest["splits"][split]
        assert s["read"] == s["written"] + s["failed"] == 12 * per_class
        assert s["failed"] == 0 and sum(s["per_class"].values()) == s["written"]
        assert set(s["per_class"].values()) == {per_class}
        assert s["frames"] == {"total": 12 * 12 * per_class, "min": 12, "max": 12, "mean": 12}
        assert len(glob.glob(os.path.join(out, f"{split}-*-of-00003.tfrecord"))) == 3
    # The synthetic ground truth: active flags, and the object box as `clip/box/*` boxes.
    assert manifest["schema"]["feature_lists"] == [
        tfrecord.IMAGE_ENCODED, tfrecord.GT_ACTIVE, *tfrecord.BOX_COORDS, tfrecord.BOX_ROLE,
        tfrecord.BOX_ANNOTATED]
    assert manifest["boxes"]["files"] == [] and manifest["boxes"]["problems"] == 0

    # Labels in the records agree with the annotation files.
    with open(os.path.join(synthetic_raw, "something-something-v2-validation.json")) as f:
        expected = {e["id"]: TEMPLATES.index(e["template"]) for e in json.load(f)}
    recs = _records(os.path.join(out, "validation-*.tfrecord"))
    got = {_ctx(r, tfrecord.CLIP_ID).decode(): _ctx(r, tfrecord.LABEL_INDEX) for r in recs}
    assert got == expected
    for r in recs:
        assert len(r.feature_lists.feature_list[tfrecord.GT_ACTIVE].feature) == 12

    # make_dataset: training batches.
    ds = make_dataset(os.path.join(out, "train-*.tfrecord"), training=True, batch_size=5,
                      preprocessor=ClipPreprocessor(6, 32), with_metadata=True, seed=0)
    batches = list(ds)
    assert len(batches) == 24 // 5  # drop_remainder in training
    clips, targets = batches[0]
    assert clips.shape == (5, 6, 32, 32, 3) and clips.dtype == tf.float32
    assert float(tf.reduce_min(clips)) > -2.2 and float(tf.reduce_max(clips)) < 2.7
    assert float(tf.math.reduce_std(clips)) > 0.1
    assert targets["perception"].dtype == tf.int32
    np.testing.assert_array_equal(targets["perception"], targets["attention"])
    assert set(targets) == {"perception", "attention", "clip_id", "frame_indices", "frame_size",
                            "gt_active", "gt_box"}
    assert targets["gt_active"].shape == (5, 6) and targets["gt_box"].shape == (5, 6, 4)
    assert targets["gt_active"].numpy().sum() > 0
    # Eval: every validation clip exactly once, labels as annotated.
    ds = make_dataset(os.path.join(out, "validation-*.tfrecord"), training=False,
                      batch_size=5, preprocessor=ClipPreprocessor(6, 32), with_metadata=True)
    seen = {}
    for _, t in ds:
        for cid, label in zip(t["clip_id"].numpy(), t["perception"].numpy()):
            assert cid.decode() not in seen
            seen[cid.decode()] = int(label)
    assert seen == expected


@pytest.mark.slow
def test_parallel_conversion_gives_identical_shards(synthetic_raw, converted, tmp_path):
    out, _ = converted
    manifest = convert.convert_dataset("ssv2", synthetic_raw, tmp_path / "par", workers=2,
                                       num_shards=3, progress=False)
    assert manifest["settings"]["workers"] == 2
    assert _shard_bytes(tmp_path / "par") == _shard_bytes(out)


# --- robustness ------------------------------------------------------------------------------


def _entries(raw, split):
    with open(os.path.join(raw, f"something-something-v2-{split}.json")) as f:
        return json.load(f)


def test_bad_videos_are_listed_and_good_ones_converted(raw_copy, run_command, tmp_path):
    videos = os.path.join(raw_copy, "20bn-something-something-v2")
    train = _entries(raw_copy, "train")
    ids = [e["id"] for e in train]
    truncated, zero, text, missing = ids[:4]
    cut = pathlib.Path(videos, f"{truncated}.webm")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 4 // 5])  # decodes, cut short
    pathlib.Path(videos, f"{zero}.webm").write_bytes(b"")
    pathlib.Path(videos, f"{text}.webm").write_text("not a video, just text\n" * 50)
    os.remove(os.path.join(videos, f"{missing}.webm"))
    train.append({"id": ids[4] + "0", "label": "x", "template": "Juggling [something]",
                  "placeholders": ["x"]})
    train.append({"id": "../etc/passwd", "label": "x", "template": TEMPLATES[0],
                  "placeholders": ["x"]})
    with open(os.path.join(raw_copy, "something-something-v2-train.json"), "w") as f:
        json.dump(train, f)
    gt_path = os.path.join(raw_copy, "something-something-v2-groundtruth.json")
    with open(gt_path) as f:
        gt = json.load(f)
    gt[ids[4] + "0"] = gt[ids[4]]
    with open(gt_path, "w") as f:
        json.dump(gt, f)

    out = tmp_path / "out"
    result = run_command("stabn_tf.data.convert", "--dataset=ssv2", f"--input_dir={raw_copy}",
                         f"--output_dir={out}", "--workers=1", "--num_shards=2",
                         "--noprogress")
    assert result.returncode == 0, result.stderr
    assert "train: read 26 = written 21 + failed 5 [ok]" in result.stdout
    assert "validation: read 12 = written 12 + failed 0 [ok]" in result.stdout
    # The video cut short is written with the frames that decode, and counted.
    assert "1 videos shorter than their header / 0 without a duration" in result.stdout
    assert f"train {truncated} " in result.stderr and "decoded frames cover" in result.stderr
    reasons = {f["id"]: f["reason"] for f in _failures(out)}
    assert set(reasons) == {zero, text, missing, ids[4] + "0", "../etc/passwd"}
    assert "empty file" in reasons[zero]
    assert "cannot open" in reasons[text]
    assert "cannot access" in reasons[missing]
    assert "Juggling something" in reasons[ids[4] + "0"] and "not in" in reasons[ids[4] + "0"]
    assert "invalid id" in reasons["../etc/passwd"]
    with open(out / convert.MANIFEST_FILE) as f:
        manifest = json.load(f)
    s = manifest["splits"]["train"]
    assert (s["read"], s["written"], s["failed"]) == (26, 21, 5)
    assert s["videos_shorter_than_header"] == 1
    assert len(_records(str(out / "train-*.tfrecord"))) == 21


def test_malformed_label_file_exits_nonzero_naming_it(raw_copy, run_command, tmp_path):
    labels = os.path.join(raw_copy, "something-something-v2-labels.json")
    with open(labels, "w") as f:
        f.write('{\n  "Moving something up": "0",\n  "Moving something down": 1\n  oops\n}')
    result = run_command("stabn_tf.data.convert", "--dataset=ssv2", f"--input_dir={raw_copy}",
                         f"--output_dir={tmp_path / 'out'}", "--workers=1")
    assert result.returncode == 2
    assert f"{labels}:4: invalid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_nothing_written_is_an_error(raw_copy, tmp_path):
    for path in glob.glob(os.path.join(raw_copy, "20bn-something-something-v2", "*.webm")):
        os.remove(path)
    with pytest.raises(convert.ConversionError, match="no video could be written"):
        convert.convert_dataset("ssv2", raw_copy, tmp_path / "out", workers=1, progress=False)
    assert len(_failures(tmp_path / "out")) == 36


def test_missing_annotation_file_is_named(raw_copy, tmp_path):
    os.remove(os.path.join(raw_copy, "something-something-v2-validation.json"))
    with pytest.raises(convert.ConversionError, match="something-something-v2-validation.json"):
        convert.convert_dataset("ssv2", raw_copy, tmp_path / "out", workers=1, progress=False)


@pytest.mark.parametrize("bad", ["", "..", ".hidden", "a/b", "/abs", "a\\b", None, " x"])
def test_unsafe_ids_are_rejected(bad):
    with pytest.raises(ValueError):
        convert.validate_id(bad)
    assert convert.validate_id(12345) == "12345"


# --- resume ------------------------------------------------------------------------------------


def test_resume_rewrites_only_incomplete_shards(synthetic_raw, converted, tmp_path):
    out, _ = converted
    work = tmp_path / "resume"
    shutil.copytree(out, work)
    os.remove(work / "train-00001-of-00003.tfrecord")
    (work / "train-00001-of-00003.tfrecord.tmp").write_bytes(b"partial junk")
    with open(work / "validation-00002-of-00003.tfrecord", "r+b") as f:
        f.truncate(100)  # same name, wrong size: must be rewritten
    manifest = convert.convert_dataset("ssv2", synthetic_raw, work, workers=1, num_shards=3,
                                       progress=False)
    assert manifest["videos_processed_this_run"] == 8 + 4
    assert _shard_bytes(work) == _shard_bytes(out)
    assert not glob.glob(str(work / "*.tmp"))
    # A different shard count replaces the old shards instead of mixing with them.
    manifest = convert.convert_dataset("ssv2", synthetic_raw, work, workers=1, num_shards=2,
                                       progress=False)
    assert sorted(_shard_bytes(work)) == [f"{s}-0000{i}-of-00002.tfrecord"
                                          for s in ("train", "validation") for i in (0, 1)]
    assert manifest["splits"]["train"]["written"] == 24


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(synthetic_raw, converted, tmp_path):
    out, _ = converted
    work = tmp_path / "killed"
    script = tmp_path / "slow_convert.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from stabn_tf.data import convert
        from stabn_tf.data.convert import encode
        original = encode.convert_item
        def slow(item, settings):
            time.sleep(0.25)
            return original(item, settings)
        encode.convert_item = slow
        convert.convert_dataset("ssv2", {synthetic_raw!r}, {str(work)!r}, workers=1,
                                num_shards=3, progress=False)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    done = work / "train-00000-of-00003.tfrecord"
    partial = work / "train-00001-of-00003.tfrecord.tmp"
    deadline = time.time() + 90
    try:
        while not (done.exists() and partial.exists() and partial.stat().st_size > 0):
            assert proc.poll() is None, "converter finished before it could be killed"
            assert time.time() < deadline, "converter made no progress"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (work / "train-00002-of-00003.tfrecord").exists()
    manifest = convert.convert_dataset("ssv2", synthetic_raw, work, workers=1, num_shards=3,
                                       progress=False)
    assert manifest["videos_processed_this_run"] == 36 - 8  # shard 0 was kept
    assert _shard_bytes(work) == _shard_bytes(out)


# --- SSv1 and folder layouts --------------------------------------------------------------------


def _jpeg(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_ssv1_layout(tmp_path, moving_bar):
    root = tmp_path / "ssv1"
    frames_root = root / "20bn-something-something-v1"
    classes = ["Moving something up", "Moving something down", "Dropping something"]
    (frames_root).mkdir(parents=True)
    (root / "something-something-v1-labels.csv").write_text("\n".join(classes) + "\n")
    originals = {}
    for vid, (n, h, w) in {"101": (10, 100, 132), "102": (7, 100, 176),
                           "103": (5, 300, 400), "201": (9, 100, 132)}.items():
        (frames_root / vid).mkdir()
        for i, img in enumerate(moving_bar(n, h, w, seed=int(vid)), start=1):
            data = _jpeg(img)
            (frames_root / vid / f"{i:05d}.jpg").write_bytes(data)
            originals.setdefault(vid, []).append(data)
    (root / "something-something-v1-train.csv").write_text(
        "101;Moving something up\n102;Dropping something\n103;Moving something down\n"
        "104;Moving something up\n105;Flying something\nbadline\n")
    (root / "something-something-v1-validation.csv").write_text("201;Moving something down\n")
    out = tmp_path / "out"
    manifest = convert.convert_dataset("ssv1", root, out, workers=1, num_shards=2,
                                       progress=False)
    train = manifest["splits"]["train"]
    assert (train["read"], train["written"], train["failed"]) == (6, 3, 3)
    assert manifest["splits"]["validation"]["written"] == 1
    reasons = {f["id"]: f["reason"] for f in _failures(out)}
    assert "frame folder missing" in reasons["104"]
    assert "Flying something" in reasons["105"]
    assert "expected 'id;class name'" in reasons["badline"]
    assert "something-something-v1-train.csv:6" in reasons["badline"]
    recs = {_ctx(r, tfrecord.CLIP_ID).decode(): r
            for r in _records(str(out / "train-*.tfrecord"))}
    assert {k: _ctx(r, tfrecord.LABEL_INDEX) for k, r in recs.items()} == \
        {"101": 0, "102": 2, "103": 1}
    # Small frames are stored as they are (byte-identical, no re-encoding)...
    stored = [f.bytes_list.value[0] for f in
              recs["101"].feature_lists.feature_list[tfrecord.IMAGE_ENCODED].feature]
    assert stored == originals["101"]
    # ...large ones are shrunk to the short side.
    big = recs["103"].feature_lists.feature_list[tfrecord.IMAGE_ENCODED].feature[0]
    assert Image.open(io.BytesIO(big.bytes_list.value[0])).size == (341, 256)
    assert train["height"] == [100, 256]


def test_folder_layout_with_mp4(tmp_path, write_video, moving_bar):
    root = tmp_path / "videos"
    for cls in ("open", "close"):
        (root / cls).mkdir(parents=True)
        for k in range(3):
            write_video(root / cls / f"clip{k}.mp4", moving_bar(8, 48, 64, seed=k))
    (root / "open" / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    manifest = convert.convert_dataset("folder", root, out, workers=1,
                                       validation_fraction=0.5, progress=False)
    assert read_labels(out / "labels.txt") == ["close", "open"]
    splits = manifest["splits"]
    assert splits["train"]["written"] + splits["validation"]["written"] == 6
    assert splits["train"]["failed"] == splits["validation"]["failed"] == 0
    assert manifest["notes"]["ignored_non_video_files"] == 1
    recs = _records(str(out / "*.tfrecord"))
    labels = {_ctx(r, tfrecord.CLIP_ID).decode(): _ctx(r, tfrecord.LABEL_INDEX) for r in recs}
    assert labels == {f"{c}/clip{k}.mp4": i for i, c in enumerate(["close", "open"])
                      for k in range(3)}
    ds = make_dataset(str(out / "*.tfrecord"), training=False, batch_size=6,
                      preprocessor=ClipPreprocessor(4, 32))
    clips, targets = next(iter(ds))
    assert clips.shape == (6, 4, 32, 32, 3)


def test_folder_layout_with_split_folders(tmp_path, write_video):
    root = tmp_path / "videos"
    for split, cls in (("train", "a"), ("train", "b"), ("val", "a"), ("val", "c")):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        # Different names per split: one relative path in both would be one id twice.
        write_video(root / split / cls / f"{split}.webm")
    manifest = convert.convert_dataset("folder", root, tmp_path / "out", workers=1,
                                       progress=False)
    assert read_labels(tmp_path / "out" / "labels.txt") == ["a", "b", "c"]
    assert manifest["splits"]["train"]["written"] == 2
    assert manifest["splits"]["validation"]["per_class"] == {"a": 1, "c": 1}


def test_ssv2_newer_labels_folder_layout_and_test_split(raw_copy, tmp_path):
    # The newer download: labels/{labels,train,validation,test}.json and videos/.
    os.makedirs(os.path.join(raw_copy, "labels"))
    for name in ("labels", "train", "validation", "test"):
        os.rename(os.path.join(raw_copy, f"something-something-v2-{name}.json"),
                  os.path.join(raw_copy, "labels", f"{name}.json"))
    os.rename(os.path.join(raw_copy, "20bn-something-something-v2"),
              os.path.join(raw_copy, "videos"))
    with open(os.path.join(raw_copy, "labels", "validation.json")) as f:
        ids = [e["id"] for e in json.load(f)][:3]
    with open(os.path.join(raw_copy, "labels", "test.json"), "w") as f:
        json.dump([{"id": i} for i in ids], f)
    out = tmp_path / "out"
    manifest = convert.convert_dataset("ssv2", raw_copy, out, workers=1, progress=False,
                                       splits=("validation", "test"))
    assert manifest["splits"]["validation"]["written"] == 12
    assert manifest["splits"]["test"]["written"] == 3
    assert manifest["splits"]["test"]["per_class"] == {"<unlabelled>": 3}
    labels = {_ctx(r, tfrecord.LABEL_INDEX) for r in _records(str(out / "test-*.tfrecord"))}
    assert labels == {tfrecord.NO_LABEL}
