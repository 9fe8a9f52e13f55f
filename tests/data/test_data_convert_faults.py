"""The converter under faults: frames of mixed sizes, videos the container cannot vouch
for, shards corrupted at the same size, a replaced video with its mtime kept, a split
converted alone, a full disk, a second converter, records unlike the manifest."""

import errno
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stabn_tf.data import convert, video
from stabn_tf.data.convert import conversion, shards
from stabn_tf.data.convert.output_dir import OutputLock

FAST = dict(workers=1, progress=False, num_shards=2)


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _shards(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pathlib.Path(out).glob("*.tfrecord"))}


@pytest.fixture
def folder(tmp_path, write_video, moving_bar) -> pathlib.Path:
    """A folder layout: train (2 classes × 2 videos) and test (1 video), 8 tiny frames."""
    root = tmp_path / "videos"
    for split, n in (("train", 2), ("test", 1)):
        for c, cls in enumerate(("left", "right")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                write_video(root / split / cls / f"{cls}{i}.mp4", moving_bar(8, 24, 32, 10 * c + i))
    (root / "train" / "left" / "broken.mp4").write_text("not a video")  # a failure
    return root


def _jpeg_file(path: pathlib.Path, h: int, w: int) -> None:
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path, quality=90)


def test_frame_folder_of_mixed_sizes_fails_as_predict_refuses_it(tmp_path):
    root = tmp_path / "ssv1"
    frames = root / "20bn-something-something-v1"
    sizes = {"ok": [(48, 64)] * 3, "mixed": [(64, 48), (48, 64), (300, 100)],
             "big_first": [(400, 300), (64, 48), (64, 48)]}
    for clip, hw in sizes.items():
        (frames / clip).mkdir(parents=True)
        for i, (h, w) in enumerate(hw):
            _jpeg_file(frames / clip / f"{i + 1:05d}.jpg", h, w)
    (frames / "not_jpeg").mkdir()
    _jpeg_file(frames / "not_jpeg" / "00001.jpg", 48, 64)
    (frames / "not_jpeg" / "00002.jpg").write_text("a text file named .jpg")
    (root / "something-something-v1-labels.csv").write_text("Holding something\n")
    (root / "something-something-v1-train.csv").write_text(
        "".join(f"{c};Holding something\n" for c in [*sizes, "not_jpeg"]))
    (root / "something-something-v1-validation.csv").write_text("")
    out = tmp_path / "out"
    manifest = convert.convert_dataset("ssv1", root, out, **FAST)
    assert manifest["splits"]["train"]["written"] == 1
    reasons = {json.loads(line)["id"]: json.loads(line)["reason"]
               for line in (out / convert.FAILURES_FILE).read_text().splitlines()}
    assert set(reasons) == {"mixed", "big_first", "not_jpeg"}
    assert reasons["not_jpeg"].endswith("00002.jpg: unreadable frame (not an image format "
                                        "Pillow reads)"), reasons["not_jpeg"]  # no <_io...>
    assert "00002.jpg: frame size 48×64 differs from the first frame's (00001.jpg) 64×48" \
        in reasons["mixed"]
    assert "never stretched or upscaled" in reasons["big_first"]
    with pytest.raises(video.VideoReadError) as refused:  # what predict reads
        video.read_frames(frames / "mixed")
    assert str(refused.value) in reasons["mixed"]


def _live_webm(path, frames) -> None:
    """A webm as a browser records it: no duration in the container."""
    video.write_video(str(path), frames, 12, "libvpx-vp9", container_options={"live": "1"})


def test_videos_the_container_cannot_vouch_for_are_written_and_counted(
        tmp_path, write_video, moving_bar):
    root = tmp_path / "videos" / "cls"
    root.mkdir(parents=True)
    write_video(root / "whole.webm", moving_bar(48, 24, 32))
    data = (root / "whole.webm").read_bytes()
    (root / "short.webm").write_bytes(data[:int(len(data) * 0.96)])  # > 90%: not "truncated"
    _live_webm(tmp_path / "live.webm", moving_bar(48, 24, 32))
    live = (tmp_path / "live.webm").read_bytes()
    (root / "cut_live.webm").write_bytes(live[:len(live) // 2])  # cut, and nothing says so
    manifest = convert.convert_dataset("folder", tmp_path / "videos", tmp_path / "out",
                                       splits=["train"], **FAST)
    train = manifest["splits"]["train"]
    assert (train["written"], train["failed"]) == (3, 0)
    assert (train["videos_shorter_than_header"], train["videos_without_duration"]) == (1, 1)
    assert "1 videos shorter than their header / 1 without a duration" \
        in convert.format_summary(manifest)


def test_resume_rewrites_a_shard_corrupted_at_the_same_size(folder, tmp_path):
    out = tmp_path / "out"
    convert.convert_dataset("folder", folder, out, **FAST)
    good = _shards(out)
    victim, other = sorted(out.glob("train-*.tfrecord"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, same mtime semantics: only the content
    victim.write_bytes(bytes(data))
    other_stat = other.stat()
    manifest = convert.convert_dataset("folder", folder, out, **FAST)
    assert _shards(out) == good
    assert other.stat().st_mtime_ns == other_stat.st_mtime_ns  # the intact shard kept
    assert manifest["videos_processed_this_run"] >= 1
    assert convert.verify_output_dir(str(out)) == []


def test_a_video_replaced_with_size_and_mtime_kept_is_converted_again(folder, tmp_path):
    out = tmp_path / "out"
    convert.convert_dataset("folder", folder, out, **FAST)
    assert convert.convert_dataset("folder", folder, out, **FAST)[
        "videos_processed_this_run"] == 0
    target = folder / "train" / "right" / "right1.mp4"
    stat = target.stat()
    replacement = tmp_path / "replacement.mp4"
    data = bytearray(target.read_bytes())
    data[-200] ^= 0x01  # another video of the same size...
    replacement.write_bytes(bytes(data))
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    shutil.copy2(replacement, target)  # ...copied over it as `cp -p` does
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size,
                                                                  stat.st_mtime_ns)
    assert convert.convert_dataset("folder", folder, out, **FAST)[
        "videos_processed_this_run"] == 1


def test_converting_one_split_keeps_the_others_in_the_manifest(folder, tmp_path):
    out = tmp_path / "out"
    first = convert.convert_dataset("folder", folder, out, splits=["train"], **FAST)
    manifest = convert.convert_dataset("folder", folder, out, splits=["test"], **FAST)
    assert list(manifest["splits"]) == ["train", "test"]
    assert manifest["splits"]["train"] == first["splits"]["train"]
    assert json.loads((out / convert.MANIFEST_FILE).read_text())["splits"].keys() \
        == {"train", "test"}
    failures = [json.loads(line) for line in (out / convert.FAILURES_FILE).open()]
    assert [(f["split"], f["id"]) for f in failures] == [("train", "left/broken.mp4")]
    assert "(an earlier run's)" in convert.format_summary(manifest)
    assert convert.verify_output_dir(str(out)) == []


class _FullDisk:
    """A TFRecordWriter that runs out of space after `allowed` records in all."""

    allowed = 0

    def __init__(self, path):
        self._writer = _REAL_WRITER(path)

    def write(self, record):
        if _FullDisk.allowed <= 0:
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
        _FullDisk.allowed -= 1
        self._writer.write(record)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._writer.close()


_REAL_WRITER = tf.io.TFRecordWriter


def test_a_full_disk_is_one_line_and_a_rerun_resumes(folder, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    convert.convert_dataset("folder", folder, clean, splits=["train"], **FAST)
    out = tmp_path / "out"
    monkeypatch.setattr(shards.tf.io, "TFRecordWriter", _FullDisk)
    # The first shard's records fit, then the disk is full.
    _FullDisk.allowed = sum(1 for _ in tf.data.TFRecordDataset(
        str(clean / "train-00000-of-00002.tfrecord")))
    with pytest.raises(convert.DiskFullError) as full:
        convert.convert_dataset("folder", folder, out, splits=["train"], **FAST)
    message = str(full.value)
    assert ": the disk is full (" in message and "\n" not in message
    assert message.endswith("(the complete shards are kept and it resumes from them)")
    assert "train-00001-of-00002.tfrecord.tmp" in message and "MB more for the" in message
    assert sorted(_shards(out)) == ["train-00000-of-00002.tfrecord"]  # the good shard kept
    assert not list(out.glob("*.tmp"))
    monkeypatch.undo()
    convert.convert_dataset("folder", folder, out, splits=["train"], **FAST)
    assert _shards(out) == _shards(clean)

    def no_room(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", path)
    monkeypatch.setattr(conversion, "write_atomic", no_room)
    with pytest.raises(convert.DiskFullError, match=r"origin.json: the disk is full \([\d.]+ "
                       r"[kMG]?B free there\); this needs space for 5 videos \(no shard"
                       ):  # not "for 0 videos"
        convert.convert_dataset("folder", folder, out, splits=["train"], **FAST)


def test_a_full_disk_on_the_command_line_is_one_line(folder, tmp_path, monkeypatch,
                                                     run_command):
    class Full:  # every record write meets a full disk
        def __init__(self, path):
            open(path, "wb").close()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def write(self, record):
            raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(shards.tf.io, "TFRecordWriter", Full)
    proc = run_command("stabn_tf.data.convert", "--dataset=folder", f"--input_dir={folder}",
                       f"--output_dir={tmp_path / 'out'}", "--workers=1", "--progress=false")
    prefix = "stabn_tf.data.convert: error: "
    errors = [line for line in proc.stderr.splitlines() if line.startswith(prefix)]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(errors) == 1 and ": the disk is full (" in errors[0]


@pytest.mark.slow
def test_a_second_converter_stops_at_once_naming_the_first(folder, tmp_path, python):
    out = tmp_path / "out"
    convert.convert_dataset("folder", folder, out, jpeg_quality=95, **FAST)
    before = _tree(out)
    with OutputLock(str(out)) as lock:
        lock.acquire()  # this test process plays the first converter
        proc = python("-m", "stabn_tf.data.convert", "--dataset=folder",
                      f"--input_dir={folder}", f"--output_dir={out}", "--jpeg_quality=20",
                      "--workers=1", "--progress=false")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == (
            f"stabn_tf.data.convert: error: output_dir {out} is being written by another "
            f"converter (pid {os.getpid()}); wait for it to finish, or choose another --output_dir")
        # ... and does so before its slow start-up: TensorFlow is never imported.
        timed = python("-X", "importtime", "-m", "stabn_tf.data.convert", "--dataset=folder",
                       f"--input_dir={folder}", "--output_dir", str(out), timeout=120)
        lines = timed.stderr.splitlines()
        assert timed.returncode == 2 and lines[-1].startswith(
            "stabn_tf.data.convert: error: output_dir "), lines[-3:]
        assert not [line for line in lines if line.endswith("| tensorflow")]
        # The console script too: its entry point as installed, called as the script does.
        script = python("-X", "importtime", "-c", "import sys; from importlib.metadata import "
                        "entry_points; (found,) = entry_points(group='console_scripts', "
                        "name='stabn-convert'); sys.argv[0] = 'stabn-convert'; "
                        "sys.exit(found.load()())", "--dataset=folder",
                        f"--input_dir={folder}", f"--output_dir={out}", timeout=120)
        lines = script.stderr.splitlines()
        assert script.returncode == 2 and lines[-1].startswith(
            "stabn_tf.data.convert: error: output_dir "), lines[-3:]
        assert not [line for line in lines if line.endswith("| tensorflow")]
        verify = python("-m", "stabn_tf.data.convert", "--verify", f"--output_dir={out}")
        assert verify.returncode == 2 and "being written by another converter" in verify.stderr
    assert _tree(out) == before  # nothing touched: no race on temporary files or records
    # A converter that died holding the lock (the same flock, without importing TF) does
    # not block the next one.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, time
        fcntl.flock(os.open({str(out)!r}, os.O_RDONLY), fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    manifest = convert.convert_dataset("folder", folder, out, jpeg_quality=95, **FAST)
    assert manifest["videos_processed_this_run"] == 0


def test_verify_finds_records_unlike_the_manifest(folder, tmp_path, run_command):
    good, other = tmp_path / "q95", tmp_path / "q20"
    convert.convert_dataset("folder", folder, good, jpeg_quality=95, **FAST)
    convert.convert_dataset("folder", folder, other, jpeg_quality=20, **FAST)
    name = "train-00000-of-00002.tfrecord"  # what the two-converter race used to leave
    shutil.copy(other / name, good / name)
    shutil.copy(other / ".shards" / f"{name}.json", good / ".shards" / f"{name}.json")
    problems = convert.verify_output_dir(str(good))
    assert problems and all("JPEG quality 20, manifest.json says 95" in p for p in problems)
    assert problems[0].startswith(f"{good / name}: record 0 (clip ")
    proc = run_command("stabn_tf.data.convert", "--verify", f"--output_dir={good}")
    assert proc.returncode == 1 and "JPEG quality 20" in proc.stderr
    # Frames larger than the manifest's short side, and counts that do not add up.
    manifest = json.loads((other / convert.MANIFEST_FILE).read_text())
    manifest["splits"]["train"]["encoding"]["short_side"] = 16
    manifest["splits"]["train"]["written"] += 1
    (other / convert.MANIFEST_FILE).write_text(json.dumps(manifest))
    problems = convert.verify_output_dir(str(other))
    assert any("larger than the short side 16" in p for p in problems)
    assert any("the train shards hold 4 records, manifest.json says 5" in p for p in problems)


def test_verify_reads_the_quality_off_the_jpeg_tables():
    from stabn_tf.data.convert import verify

    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, format="JPEG", quality=37)
    tables = verify._tables(Image.open(io.BytesIO(buf.getvalue())))
    assert verify._guess_quality(tables) == "37"
