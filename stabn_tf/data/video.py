"""Video files via PyAV: decoding for the converter, and single-file inference input.

`decode_video` is strict on purpose: an empty, unreadable or truncated file raises a
`VideoReadError` naming the file and the reason, so the converter can list it as a
failure instead of writing a clip with half its frames. `load_video` turns one file into
a model-ready clip with exactly the sampling and normalisation of the eval pipeline.
"""

from __future__ import annotations

import dataclasses
import os

import av
import numpy as np
import tensorflow as tf

from stabn_tf.data import preprocess, sampling

#: Decoded frames covering less than this fraction of the duration the container declares
#: (with 2 frames of slack for rounding) mean the file was cut short: a truncated webm still
#: carries its full duration in the header, and decodes without an error.
MIN_DURATION_COVERAGE = 0.9

#: Short side videos are stored at by default (DESIGN.md §4: eval resizes to 256).
DEFAULT_SHORT_SIDE = 256


class VideoReadError(OSError):
    """A video could not be read; `str(err)` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


@dataclasses.dataclass
class DecodedVideo:
    frames: np.ndarray  # uint8 [N, H, W, 3], RGB
    fps: float | None
    source_size: tuple[int, int]  # (height, width) before any resize


def scaled_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) with the short side brought down to `short_side`; never upscales."""
    short = min(height, width)
    if not short_side or short <= short_side:
        return height, width
    scale = short_side / short
    return max(1, round(height * scale)), max(1, round(width * scale))


def decode_video(
    path: str | os.PathLike,
    *,
    short_side: int | None = DEFAULT_SHORT_SIDE,
    threads: int | None = None,
) -> DecodedVideo:
    """Decodes every frame of `path` to RGB uint8, shrinking the short side to
    `short_side` (None: keep the size; never upscales).

    Raises `VideoReadError` for a missing or empty file, a file PyAV cannot open or that
    has no video stream, a decode error, no decodable frames, or a truncated file (frames
    cover < 90% of the declared duration). `threads` caps the decoder's threads (1 in the
    converter's worker processes, which already use every core).
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise VideoReadError(path, f"cannot access file ({e.strerror or e})") from e
    if size == 0:
        raise VideoReadError(path, "empty file (0 bytes)")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoReadError(path, f"cannot open as a video ({_av_reason(e)})") from e
    with container:
        if not container.streams.video:
            raise VideoReadError(path, "no video stream in file")
        stream = container.streams.video[0]
        if threads is not None:
            stream.codec_context.thread_count = threads
        fps = float(stream.average_rate) if stream.average_rate else None
        frames: list[np.ndarray] = []
        out_hw = source_hw = None
        last_time = None
        try:
            for frame in container.decode(stream):
                if out_hw is None:
                    source_hw = (frame.height, frame.width)
                    out_hw = scaled_size(frame.height, frame.width, short_side)
                if (frame.height, frame.width) != out_hw:
                    frame = frame.reformat(width=out_hw[1], height=out_hw[0], format="rgb24",
                                           interpolation="AREA")
                frames.append(frame.to_ndarray(format="rgb24"))
                if frame.time is not None:
                    last_time = frame.time
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise VideoReadError(
                path, f"decode error after {len(frames)} frames ({_av_reason(e)})"
            ) from e
        if not frames:
            raise VideoReadError(path, "no decodable video frames (truncated or corrupt)")
        declared = _declared_duration(container, stream)
    if declared and last_time is not None:
        frame_time = 1.0 / fps if fps else 0.0
        covered = last_time + frame_time - _start_time(stream)
        if covered + 2 * frame_time < MIN_DURATION_COVERAGE * declared:
            raise VideoReadError(
                path,
                f"truncated: {len(frames)} decoded frames cover {covered:.2f}s of the "
                f"{declared:.2f}s the container declares",
            )
    return DecodedVideo(np.stack(frames), fps, source_hw)


def _av_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _start_time(stream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _declared_duration(container, stream) -> float | None:
    """The video stream's duration in seconds, from the stream or (when the file has no
    other stream that could be longer) from the container."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _sample_and_crop(frames: np.ndarray, num_frames: int, image_size: int | None,
                     num_clips: int) -> tuple[tf.Tensor, np.ndarray]:
    """Eval sampling + centre crop + resize, the same ops as the eval pipeline.

    Returns (0..255 float frames `[n, T, S, S, 3]`, indices `[n, T]`).
    """
    indices = sampling.segment_indices(len(frames), num_frames, training=False,
                                       num_clips=num_clips).numpy()
    picked = frames[indices]  # [n, T, H, W, 3]
    if image_size is None:
        return tf.convert_to_tensor(picked.astype(np.float32)), indices
    y, x, h, w = (int(v) for v in preprocess.eval_crop_window(*frames.shape[1:3]))
    cropped = picked[:, :, y:y + h, x:x + w]
    return preprocess.resize_frames(cropped, image_size), indices


def eval_clips(frames: np.ndarray, num_frames: int, image_size: int,
               num_clips: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded frames → what evaluation feeds the model and what a person looks at.

    Returns normalised float32 clips `[n, T, S, S, 3]`, the same pixels as uint8
    `[n, T, S, S, 3]`, and the sampled source indices `[n, T]`, from one sampling and
    crop (so explanations line up with the pixels the model saw).
    """
    pixels, indices = _sample_and_crop(frames, num_frames, image_size, num_clips)
    clips = preprocess.color_normalize(pixels).numpy()
    shown = np.clip(np.round(pixels.numpy()), 0, 255).astype(np.uint8)
    return clips, shown, indices


def load_video_frames(
    path: str | os.PathLike,
    num_frames: int,
    image_size: int | None = None,
    num_clips: int = 1,
    *,
    short_side: int | None = DEFAULT_SHORT_SIDE,
) -> np.ndarray:
    """The sampled frames of one video as uint8 RGB, for visualisation.

    `[T, H, W, 3]` (or `[n, T, H, W, 3]` when `num_clips > 1`): with `image_size`, the
    eval centre crop resized to `image_size` (pixel-aligned with `load_video`'s clip);
    without, the full sampled frames.
    """
    decoded = decode_video(path, short_side=short_side)
    clips, _ = _sample_and_crop(decoded.frames, num_frames, image_size, num_clips)
    out = np.clip(np.round(clips.numpy()), 0, 255).astype(np.uint8)
    return out[0] if num_clips == 1 else out


def load_video(
    path: str | os.PathLike,
    num_frames: int,
    image_size: int,
    num_clips: int = 1,
    *,
    short_side: int | None = DEFAULT_SHORT_SIDE,
) -> np.ndarray:
    """One video file → normalised float32 clip `[T, S, S, 3]` (`[n, T, S, S, 3]` when
    `num_clips > 1`), exactly as the eval pipeline prepares a stored video: frames stored
    at `short_side` like the converter, centre segment sampling, centre crop of 224/256
    of the short side resized to `image_size`, ImageNet normalisation.

    Raises `VideoReadError` (an `OSError`) naming the file when it cannot be read.
    """
    decoded = decode_video(path, short_side=short_side)
    clips, _, _ = eval_clips(decoded.frames, num_frames, image_size, num_clips)
    return clips[0] if num_clips == 1 else clips
