"""PyAV decoding: errors naming the file, files cut short decoded with a note; load_video
matches the eval pipeline."""

import pathlib
import re

import numpy as np
import pytest

from stabn_tf.data import preprocess, video
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.inference.inputs import load_clip


@pytest.mark.parametrize("ext", [".webm", ".mp4", ".avi", ".mkv"])
def test_decode_round_trip(tmp_path, write_video, moving_bar, ext):
    frames = moving_bar(16, 64, 80)
    path = write_video(tmp_path / f"v{ext}", frames)
    decoded = video.decode_video(path)
    assert decoded.frames.shape == (16, 64, 80, 3) and decoded.frames.dtype == np.uint8
    assert decoded.fps == pytest.approx(12)
    assert np.abs(decoded.frames.astype(int) - frames).mean() < 6


def test_short_side_shrinks_but_never_upscales(tmp_path, write_video, moving_bar):
    path = write_video(tmp_path / "v.webm", moving_bar(8, 96, 160))
    assert video.decode_video(path, short_side=48).frames.shape == (8, 48, 80, 3)
    assert video.decode_video(path, short_side=256).frames.shape == (8, 96, 160, 3)
    assert video.decode_video(path, short_side=None).source_size == (96, 160)
    assert video.scaled_size(240, 427, 128) == (128, 228)


def test_bad_files_raise_errors_naming_the_file(tmp_path, write_video):
    good = write_video(tmp_path / "good.webm")
    data = pathlib.Path(good).read_bytes()
    cases = {
        "zero.webm": b"",
        "text.webm": b"this is not a video\n" * 20,
        "headless.webm": data[: len(data) // 50],  # cut before its first frame
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(video.VideoReadError) as err:
            video.decode_video(path)
        assert str(path) in str(err.value)
        assert isinstance(err.value, OSError)
    with pytest.raises(video.VideoReadError, match="missing.webm"):
        video.decode_video(tmp_path / "missing.webm")
    with pytest.raises(video.VideoReadError, match="headless.webm"):
        video.decode_video(tmp_path / "headless.webm")
    with pytest.raises(video.VideoReadError, match="empty file"):
        video.decode_video(tmp_path / "zero.webm")


def test_load_video_shapes_range_and_sampling(tmp_path, write_video, moving_bar):
    path = write_video(tmp_path / "v.mp4", moving_bar(16, 64, 80))
    clip = video.load_video(path, preprocessor=ClipPreprocessor(4, 32))
    assert clip.shape == (4, 32, 32, 3) and clip.dtype == np.float32
    lo = (0 - np.array(preprocess.IMAGENET_MEAN)) / np.array(preprocess.IMAGENET_STD)
    hi = (1 - np.array(preprocess.IMAGENET_MEAN)) / np.array(preprocess.IMAGENET_STD)
    assert np.all(clip >= lo - 1e-4) and np.all(clip <= hi + 1e-4)
    two = video.load_video(path, preprocessor=ClipPreprocessor(4, 32), num_clips=2)
    assert two.shape == (2, 4, 32, 32, 3)
    assert not np.allclose(two[0], two[1])
    # uint8 frames for visualisation line up with the normalised clip.
    preprocessor = ClipPreprocessor(4, 32)
    decoded = video.read_frames(path).frames
    clips, frames, indices = preprocessor.from_frames(decoded)
    assert frames.shape == (1, 4, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(clips[0], clip, atol=1e-6)
    assert np.abs(preprocess.denormalize(clip).astype(int) - frames[0]).max() <= 1
    # The sampled source frames (the bar moves right between them).
    full = decoded[indices[0]]
    assert full.shape == (4, 64, 80, 3)
    bar_x = [np.argmax(f[32, :, 0] > 200) for f in full]
    assert bar_x == sorted(bar_x) and len(set(bar_x)) == 4


def test_load_video_unreadable_names_the_file(tmp_path):
    path = tmp_path / "broken.webm"
    path.write_bytes(b"junk" * 100)
    with pytest.raises(OSError, match="broken.webm"):
        video.load_video(path, ClipPreprocessor(8, 32))


@pytest.mark.parametrize("ext", [".webm", ".mkv"])
def test_a_file_cut_short_gives_what_decodes_and_says_so(tmp_path, write_video, ext):
    frames = np.random.default_rng(0).integers(0, 255, size=(48, 48, 64, 3), dtype=np.uint8)
    data = pathlib.Path(write_video(tmp_path / f"v{ext}", frames)).read_bytes()
    assert video.decode_video(tmp_path / f"v{ext}").duration_note is None
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: int(len(data) * 0.6)])
    decoded = video.decode_video(path)
    assert 0 < len(decoded.frames) < 48
    np.testing.assert_array_equal(decoded.frames[0], video.decode_video(
        tmp_path / f"v{ext}").frames[0])
    assert decoded.duration_note == video.SHORTER_THAN_HEADER
    assert re.fullmatch(rf"{len(decoded.frames)} decoded frames cover \d\.\d\d s of the "
                        r"4\.00 s its container declares", decoded.duration_detail)
    # predict runs on what decodes and says so.
    clip = load_clip(path, ClipPreprocessor(4, 32))
    assert clip.note == (f"the video ends early: {decoded.duration_detail}; predicted from "
                         "what decodes")
    assert load_clip(tmp_path / f"v{ext}", ClipPreprocessor(4, 32)).note is None


def test_the_one_encoder_writes_the_bytes_the_synthetic_set_always_had(tmp_path, moving_bar):
    """`write_webm` through `write_video` gives byte for byte what its own PyAV loop gave
    (written out here as it was), and the same bytes each time."""
    import av

    from stabn_tf.data import synthetic

    frames = moving_bar(6, 32, 48)
    with av.open(str(tmp_path / "loop.webm"), "w", format="webm",
                 options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libvpx-vp9", rate=synthetic.FPS)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "28", "b:v": "0",
                          "row-mt": "0"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for name in ("a.webm", "b.webm"):
        synthetic.write_webm(str(tmp_path / name), frames)
    expected = (tmp_path / "loop.webm").read_bytes()
    assert (tmp_path / "a.webm").read_bytes() == expected == (tmp_path / "b.webm").read_bytes()
    decoded = video.decode_video(str(tmp_path / "a.webm")).frames
    assert np.abs(decoded.astype(int) - frames).mean() < 8
