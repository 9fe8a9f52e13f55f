"""Video files via PyAV: decoding for the converter, single-file inference input, and
the one encoder (`write_video`).

`decode_video` raises a `VideoReadError` naming the file and the reason for an empty or
unreadable file, so the converter can list it as a failure; a file that decodes to fewer
frames than its container declares (cut off in a download or a recording) gives what
decodes, and says so (`DecodedVideo.duration_note`). `read_frames` also reads folders of
frame images; `load_video` turns one input into a model-ready clip, prepared exactly as
evaluation prepares a stored video.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image

from stabn_tf.errors import StabnError

if TYPE_CHECKING:  # the encoder is used where TensorFlow is not imported
    from stabn_tf.data.preprocessor import ClipPreprocessor

#: Short side videos are stored at by default (evaluation resizes to 256; docs/architecture.md §3).
DEFAULT_SHORT_SIDE = 256


class VideoReadError(OSError, StabnError):
    """A video could not be read; `str(err)` names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


#: `DecodedVideo.duration_note` of a video whose frames end before the duration its
#: container declares by more than a frame: a file cut short (a truncated webm still
#: carries its full duration in the header, and decodes without an error).
SHORTER_THAN_HEADER = "shorter_than_header"
#: `DecodedVideo.duration_note` of a video whose container declares no duration (as
#: browsers record webm, or a fragmented mp4): a cut-off file cannot be told apart.
NO_DURATION = "no_duration"


@dataclasses.dataclass
class DecodedVideo:
    frames: np.ndarray  # uint8 [N, H, W, 3], RGB
    fps: float | None
    source_size: tuple[int, int]  # (height, width) before any resize
    #: None, SHORTER_THAN_HEADER or NO_DURATION: the frames are all that decodes, but the
    #: container cannot vouch that they are the whole video.
    duration_note: str | None = None
    #: With SHORTER_THAN_HEADER: how much decodes, in words ("21 decoded frames cover
    #: 0.84 s of the 2.00 s its container declares").
    duration_detail: str | None = None


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
    has no video stream, a decode error, or no decodable frames. A file that decodes to
    less than its declared duration (cut short), or declares none, is returned with what
    decodes and says so in `duration_note` (and `duration_detail`). `threads` caps the
    decoder's threads (1 in the converter's worker processes, which already use every
    core).
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
        start = _start_time(stream)  # PyAV 18: a closed container's streams refuse reads
    note = None if declared else NO_DURATION
    detail = None
    if declared and last_time is not None:
        frame_time = 1.0 / fps if fps else 0.0
        covered = last_time + frame_time - start
        if covered + 1.5 * frame_time < declared:
            note = SHORTER_THAN_HEADER
            detail = (f"{len(frames)} decoded frames cover {covered:.2f} s of the "
                      f"{declared:.2f} s its container declares")
    return DecodedVideo(np.stack(frames), fps, source_hw, note, detail)


def write_video(path: str, frames: Sequence[np.ndarray], fps: float, codec: str, *,
                format: str | None = None, container_options: dict[str, str] | None = None,
                options: dict[str, str] | None = None, threads: int | None = None) -> None:
    """Encodes equally sized uint8 RGB frames `[H, W, 3]` (even sides: yuv420p) into
    `path` with PyAV: the one encoding loop of the project (explanation MP4s, synthetic
    webms). `format` defaults to the one the extension names; `options` go to the codec
    (e.g. quality), `container_options` to the muxer (e.g. `fflags=+bitexact`); one
    encoder thread (`threads=1`) makes the bytes repeatable."""
    height, width = frames[0].shape[:2]
    with av.open(path, "w", format=format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if threads is not None:
            stream.codec_context.thread_count = threads
        if options:
            stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _av_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def image_reason(error: Exception) -> str:
    """Why Pillow could not read an image, for a failure line: its message without the
    `<_io.BytesIO object at 0x...>` it names an in-memory file by."""
    if isinstance(error, Image.UnidentifiedImageError):
        return "not an image format Pillow reads"
    return re.sub(r"\s*<_io\.\w+ object at 0x[0-9a-f]+>", "", str(error)) or type(error).__name__


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


#: Image files a frame folder may hold (one frame each, in file-name order).
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def frame_size_error(path: str, size: tuple[int, int], first_name: str,
                     first: tuple[int, int]) -> VideoReadError:
    """Why a frame folder whose frames differ in size is refused, the same words for
    `predict` and the converter: bringing them to one size would stretch or upscale
    some frames, which nothing else in the pipeline does."""
    return VideoReadError(path, f"frame size {size[0]}×{size[1]} differs from the first "
                          f"frame's ({first_name}) {first[0]}×{first[1]}: the frames of one "
                          "video must share one size (they are never stretched or upscaled)")


def read_frame_folder(path: str | os.PathLike,
                      short_side: int | None = DEFAULT_SHORT_SIDE) -> np.ndarray:
    """The images of a folder, sorted by name, as uint8 RGB `[N, H, W, 3]` with the short
    side brought down to `short_side` (as videos are stored). Raises `VideoReadError` for
    an empty folder, an unreadable image or mixed sizes."""
    path = os.fspath(path)
    try:
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(FRAME_EXTENSIONS))
    except OSError as e:
        raise VideoReadError(path, f"cannot list the frame folder ({e.strerror or e})") from e
    if not names:
        raise VideoReadError(path, f"frame folder has no {'/'.join(FRAME_EXTENSIONS)} images")
    frames, size = [], None
    for name in names:
        file = os.path.join(path, name)
        try:
            with Image.open(file) as img:
                img = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise VideoReadError(file, f"unreadable frame ({image_reason(e)})") from e
        if size is None:
            first = (img.height, img.width)
            size = scaled_size(img.height, img.width, short_side)
        elif (img.height, img.width) != first:
            raise frame_size_error(file, (img.height, img.width), names[0], first)
        if (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.Resampling.BOX)
        frames.append(np.asarray(img))
    return np.stack(frames)


def read_frames(path: str | os.PathLike,
                short_side: int | None = DEFAULT_SHORT_SIDE) -> DecodedVideo:
    """A video file or a folder of frame images → its frames (fps None for a folder)."""
    if os.path.isdir(path):
        frames = read_frame_folder(path, short_side)
        return DecodedVideo(frames, None, frames.shape[1:3])
    return decode_video(path, short_side=short_side)


def load_video(
    path: str | os.PathLike,
    preprocessor: ClipPreprocessor,
    num_clips: int = 1,
    *,
    short_side: int | None = DEFAULT_SHORT_SIDE,
) -> np.ndarray:
    """One video file (or frame folder) → normalised float32 clip `[T, S, S, 3]`
    (`[n, T, S, S, 3]` when `num_clips > 1`), exactly as evaluation prepares a stored
    video with the model's `preprocessor` (`model.preprocessor`): frames stored at
    `short_side` like the converter, centre segment sampling, centre crop of 224/256 of
    the short side resized to its `image_size`, ImageNet normalisation.

    Raises `VideoReadError` (an `OSError`) naming the file when it cannot be read.
    """
    clips, _, _ = preprocessor.from_frames(read_frames(path, short_side).frames, num_clips)
    return clips[0] if num_clips == 1 else clips
