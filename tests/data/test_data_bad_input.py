"""Hostile input to the converter and the shard readers (issue 15): every probe ends in
one line that names the file or flag and what is wrong, exit code as documented, no
traceback, nothing silently dropped, and the good work already on disk left untouched."""

import glob
import json
import os
import pathlib
import re
import shutil

import pytest
import tensorflow as tf

import stabn_tf.data as data_lib
from stabn_tf.data import convert, count_examples, read_labels, tfrecord
from stabn_tf.data.synthetic import TEMPLATES

# TensorFlow's C++ start-up chatter (printed whatever TF_CPP_MIN_LOG_LEVEL says) and
# INFO log lines: not what a user reads as the error.
_TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog"
                       r"|[IWEF]\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\]"
                       r"|I\d{4} [\d:.]+\s+\d+ \S+\.py:\d+\])")


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and not _TF_NOISE.match(ln)]


def _assert_one_line(result, code: int, *needles: str) -> str:
    """Exit code `code`, no traceback, and exactly one stderr line holding every needle."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = _error_lines(result.stderr)
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _snapshot(out_dir) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every shard: 'untouched' means both are unchanged."""
    return {os.path.basename(p): (pathlib.Path(p).read_bytes(), os.stat(p).st_mtime_ns)
            for p in sorted(glob.glob(os.path.join(out_dir, "*.tfrecord")))}


def _failures(out_dir):
    with open(os.path.join(out_dir, convert.FAILURES_FILE)) as f:
        return [json.loads(line) for line in f]


def _ids(path):
    ids = []
    for raw in tf.data.TFRecordDataset(sorted(glob.glob(str(path)))):
        ex = tf.train.SequenceExample.FromString(raw.numpy())
        ids.append(ex.context.feature[tfrecord.CLIP_ID].bytes_list.value[0].decode())
    return ids


def _counts_add_up(manifest):
    for split, s in manifest["splits"].items():
        assert s["read"] == s["written"] + s["failed"], split


def _convert(*args, **kw):
    return convert.convert_dataset(*args, workers=1, progress=False, **kw)


def _entries(raw, split):
    with open(os.path.join(raw, f"something-something-v2-{split}.json")) as f:
        return json.load(f)


def _save_entries(raw, split, entries):
    with open(os.path.join(raw, f"something-something-v2-{split}.json"), "w") as f:
        json.dump(entries, f)


def _video(raw, clip_id):
    return pathlib.Path(raw, "20bn-something-something-v2", f"{clip_id}.webm")


def _shard_of(out_dir, clip_id):
    for path in sorted(glob.glob(os.path.join(out_dir, "*.tfrecord"))):
        if clip_id in _ids(path):
            return os.path.basename(path)
    return None


@pytest.fixture
def tiny_folder(tmp_path, write_video, moving_bar):
    """`make(root, {relative path: seed})` writes 8-frame 32×40 mp4s (fast to convert)."""
    def make(root, videos):
        for rel, seed in videos.items():
            path = pathlib.Path(root, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, moving_bar(8, 32, 40, seed=seed))
        return root
    return make


# --- 2. resume notices changed inputs ------------------------------------------------------


def test_resume_redoes_exactly_the_changed_videos(raw_copy, tmp_path):
    train = [e["id"] for e in _entries(raw_copy, "train")]
    broken, replaced, donor = train[0], train[5], train[9]
    original = _video(raw_copy, broken).read_bytes()
    _video(raw_copy, broken).write_bytes(original[: len(original) // 2])
    out = tmp_path / "out"
    first = _convert("ssv2", raw_copy, out, num_shards=3)
    assert [f["id"] for f in _failures(out)] == [broken]
    before = _snapshot(out)

    # Fix the broken video, replace another one: exactly these two are redone.
    _video(raw_copy, broken).write_bytes(original)
    shutil.copyfile(_video(raw_copy, donor), _video(raw_copy, replaced))
    manifest = _convert("ssv2", raw_copy, out, num_shards=3)
    assert manifest["videos_processed_this_run"] == 2
    assert _failures(out) == []
    _counts_add_up(manifest)
    assert manifest["splits"]["train"]["written"] == first["splits"]["train"]["written"] + 1
    after = _snapshot(out)
    changed = {_shard_of(out, broken), _shard_of(out, replaced)}
    assert {n for n in before if before[n] != after[n]} == changed
    # The redone shards are what a fresh conversion of today's inputs gives.
    fresh = tmp_path / "fresh"
    _convert("ssv2", raw_copy, fresh, num_shards=3)
    assert {n: b for n, (b, _) in after.items()} == {n: b for n, (b, _) in
                                                     _snapshot(fresh).items()}
    # Nothing changed: nothing redone, nothing touched.
    again = _convert("ssv2", raw_copy, out, num_shards=3)
    assert again["videos_processed_this_run"] == 0
    assert _snapshot(out) == after


def test_resume_notices_a_changed_annotation_file(raw_copy, tmp_path):
    out = tmp_path / "out"
    _convert("ssv2", raw_copy, out, num_shards=3)
    before = _snapshot(out)
    entries = _entries(raw_copy, "validation")
    relabelled = entries[3]
    relabelled["template"] = next(t for t in TEMPLATES if t != relabelled["template"])
    _save_entries(raw_copy, "validation", entries)
    manifest = _convert("ssv2", raw_copy, out, num_shards=3)
    assert manifest["videos_processed_this_run"] == 1
    after = _snapshot(out)
    assert {n for n in before if before[n] != after[n]} == \
        {_shard_of(out, relabelled["id"])}
    for raw in tf.data.TFRecordDataset(str(out / _shard_of(out, relabelled["id"]))):
        ex = tf.train.SequenceExample.FromString(raw.numpy())
        if ex.context.feature[tfrecord.CLIP_ID].bytes_list.value[0].decode() == \
                relabelled["id"]:
            label = ex.context.feature[tfrecord.LABEL_INDEX].int64_list.value[0]
            assert label == TEMPLATES.index(relabelled["template"])


# --- 3. folder layout: nested videos, loose videos, empty class folders ------------------


def test_folder_nested_videos_belong_to_their_top_class_folder(tmp_path, tiny_folder):
    root = tiny_folder(tmp_path / "videos", {
        "a/v.mp4": 1, "a/take2/w.mp4": 2, "a/take2/deeper/x.mp4": 3, "b/v.mp4": 4,
        "loose.mp4": 5})
    out = tmp_path / "out"
    manifest = _convert("folder", root, out)
    assert read_labels(out / "labels.txt") == ["a", "b"]
    train = manifest["splits"]["train"]
    assert (train["read"], train["written"], train["failed"]) == (5, 4, 1)
    assert train["per_class"] == {"a": 3, "b": 1}
    assert sorted(_ids(out / "train-*.tfrecord")) == \
        ["a/take2/deeper/x.mp4", "a/take2/w.mp4", "a/v.mp4", "b/v.mp4"]
    [failure] = _failures(out)
    assert failure["source"].endswith("loose.mp4") and failure["split"] == "train"
    assert "not inside a class folder" in failure["reason"]


def test_folder_same_path_in_train_and_val_is_a_duplicate_id(tmp_path, tiny_folder):
    """train/a/v.mp4 and val/a/v.mp4 would both be id "a/v.mp4": neither is written."""
    root = tiny_folder(tmp_path / "videos", {
        "train/a/v.mp4": 1, "train/a/w.mp4": 2, "train/b/v.mp4": 3, "val/a/v.mp4": 4,
        "val/b/x.mp4": 5})
    out = tmp_path / "out"
    manifest = _convert("folder", root, out)
    _counts_add_up(manifest)
    ids = _ids(out / "*.tfrecord")
    assert sorted(ids) == ["a/w.mp4", "b/v.mp4", "b/x.mp4"]
    failures = [f for f in _failures(out) if f["id"] == "a/v.mp4"]
    assert sorted(f["split"] for f in failures) == ["train", "validation"]
    assert all("is used by 2 different videos" in f["reason"] and "train/a/v.mp4" in
               f["reason"] and "val/a/v.mp4" in f["reason"] for f in failures), failures


def test_folder_empty_class_folder_is_refused(tmp_path, tiny_folder, run_command):
    root = tiny_folder(tmp_path / "videos", {"a/v.mp4": 1, "b/v.mp4": 2})
    out = tmp_path / "out"
    _convert("folder", root, out)
    before = _snapshot(out)
    (root / "empty").mkdir()
    (root / "notes_only").mkdir()
    (root / "notes_only" / "readme.txt").write_text("no videos here")
    result = run_command("stabn_tf.data.convert", "--dataset=folder", f"--input_dir={root}",
                         f"--output_dir={out}", "--workers=1", "--noprogress")
    _assert_one_line(result, 2, "empty", "notes_only", "no videos")
    assert _snapshot(out) == before
    assert read_labels(out / "labels.txt") == ["a", "b"]


# --- 5. corrupt TFRecords --------------------------------------------------------------------

_SHARD = "train-00001-of-00003.tfrecord"


def _corrupt(path, how: str) -> None:
    data = bytearray(pathlib.Path(path).read_bytes())
    if how == "random_bytes":
        data = bytearray(os.urandom(5000))
    elif how == "truncated":
        data = data[: len(data) // 2]
    else:  # same size: flip bytes inside the second record's JPEG data
        data[len(data) // 2] ^= 0xFF
    pathlib.Path(path).write_bytes(bytes(data))


@pytest.fixture
def converted_copy(converted, tmp_path):
    work = tmp_path / "shards"
    shutil.copytree(converted[0], work)
    return work


@pytest.mark.parametrize("how", ["random_bytes", "truncated"])
def test_count_examples_names_a_corrupt_shard(converted_copy, how):
    _corrupt(converted_copy / _SHARD, how)
    with pytest.raises(tfrecord.CorruptShardError) as info:
        count_examples(str(converted_copy / "train-*.tfrecord"))
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(converted_copy / _SHARD) in message and "\n" not in message
    assert "corrupt" in message or "truncated" in message


@pytest.mark.parametrize("how", ["random_bytes", "truncated", "same_size"])
def test_verify_tfrecords_names_file_and_record(converted_copy, how):
    files = sorted(glob.glob(str(converted_copy / "*.tfrecord")))
    assert data_lib.verify_tfrecords(files) == []
    _corrupt(converted_copy / _SHARD, how)
    problems = data_lib.verify_tfrecords(files)
    assert len(problems) == 1
    [problem] = problems
    assert problem.path == str(converted_copy / _SHARD)
    assert str(problem).startswith(f"{converted_copy / _SHARD}: ")
    assert "\n" not in str(problem)
    if how != "random_bytes":
        assert problem.record is not None and problem.record >= 1
        assert f"record {problem.record}" in str(problem)


def test_verify_cli_lists_corrupt_shards(converted_copy, run_command):
    _corrupt(converted_copy / _SHARD, "same_size")
    before = _snapshot(converted_copy)
    result = run_command("stabn_tf.data.convert", "--verify",
                         f"--output_dir={converted_copy}")
    _assert_one_line(result, 1, str(converted_copy / _SHARD), "record")
    assert _snapshot(converted_copy) == before


# --- 6. unusable --output_dir ----------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "under_a_file", "read_only"])
def test_unusable_output_dir_is_one_line(synthetic_raw, tmp_path, run_command, where):
    blocker = tmp_path / "taken.txt"
    blocker.write_text("keep me\n")
    # procfs refuses new folders to everyone, root included (tests run as root in CI).
    out = {"file": blocker, "under_a_file": blocker / "out",
           "read_only": pathlib.Path("/proc/stabn_tf_unwritable")}
    result = run_command("stabn_tf.data.convert", "--dataset=ssv2",
                         f"--input_dir={synthetic_raw}", f"--output_dir={out[where]}",
                         "--workers=1", "--noprogress")
    _assert_one_line(result, 2, "output_dir", str(out[where]))
    assert blocker.read_text() == "keep me\n"


# --- 8. duplicates, another dataset's output dir, split of rejected entries ------------------


def test_duplicate_and_cross_split_ids_are_failures_not_written_twice(raw_copy, tmp_path):
    train, val = _entries(raw_copy, "train"), _entries(raw_copy, "validation")
    conflict, same, leaked = train[1], train[2], val[0]
    other = next(t for t in TEMPLATES if t != conflict["template"])
    train += [dict(conflict, template=other), dict(same), dict(leaked)]
    _save_entries(raw_copy, "train", train)
    out = tmp_path / "out"
    manifest = _convert("ssv2", raw_copy, out, num_shards=2)
    _counts_add_up(manifest)
    ids = _ids(out / "*.tfrecord")
    assert len(ids) == len(set(ids))
    assert conflict["id"] not in ids and leaked["id"] not in ids and same["id"] in ids
    reasons = {}
    for f in _failures(out):
        reasons.setdefault(f["id"], []).append((f["split"], f["reason"]))
    assert [s for s, _ in reasons[conflict["id"]]] == ["train", "train"]
    assert all("different labels" in r for _, r in reasons[conflict["id"]])
    assert sorted(s for s, _ in reasons[leaked["id"]]) == ["train", "validation"]
    assert all("both train and validation" in r for _, r in reasons[leaked["id"]])
    [(split, reason)] = reasons[same["id"]]
    assert split == "train" and "duplicate" in reason
    assert manifest["splits"]["train"]["read"] == 27


def test_another_datasets_output_dir_is_refused(converted_copy, tmp_path, tiny_folder,
                                                run_command):
    before = _snapshot(converted_copy)
    labels = (converted_copy / "labels.txt").read_bytes()
    root = tiny_folder(tmp_path / "videos", {"a/v.mp4": 1, "b/v.mp4": 2})
    result = run_command("stabn_tf.data.convert", "--dataset=folder", f"--input_dir={root}",
                         f"--output_dir={converted_copy}", "--workers=1", "--noprogress")
    _assert_one_line(result, 2, str(converted_copy), "--overwrite")
    assert _snapshot(converted_copy) == before
    assert (converted_copy / "labels.txt").read_bytes() == labels
    # With overwrite=True the old dataset's files go, all splits of it.
    manifest = _convert("folder", root, converted_copy, overwrite=True)
    assert manifest["splits"]["train"]["written"] == 2
    assert not glob.glob(str(converted_copy / "*-of-00003.tfrecord"))
    assert data_lib.count_examples(str(converted_copy / "*.tfrecord")) == 2
    assert read_labels(converted_copy / "labels.txt") == ["a", "b"]


def test_rejected_annotation_entries_name_their_split(raw_copy, tmp_path):
    val = _entries(raw_copy, "validation")
    val.append({"id": "../escape", "template": val[0]["template"]})
    val.append({"id": "424242", "template": "Juggling [something]"})
    _save_entries(raw_copy, "validation", val)
    out = tmp_path / "out"
    _convert("ssv2", raw_copy, out, splits=("validation",))
    failures = _failures(out)
    assert {f["id"] for f in failures} == {"../escape", "424242"}
    assert all(f["split"] == "validation" for f in failures)
