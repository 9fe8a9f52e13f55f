"""Which frames a clip uses: uniform segment sampling (docs/architecture.md §3).

The video's N frames are split into T equal segments and one frame is taken from each:
a random position inside the segment when training, the centre when evaluating. For
multi-clip evaluation (`num_clips=n`), clip j takes the point at fraction (j + ½)/n of
every segment, so the n clips are evenly offset and clip 0 of a 1-clip eval is the centre.

Videos shorter than T frames fall out of the same formula: segments are shorter than one
frame, so each frame is repeated about T/N times, evenly, in order (never "frame 1 T times").

These are TF ops, so the tf.data pipeline and the eager single-file path
(`stabn_tf.data.video.load_video`) run the exact same code.
"""

from __future__ import annotations

import tensorflow as tf


def segment_indices(
    num_video_frames,
    num_frames: int,
    *,
    training: bool,
    num_clips: int = 1,
    seed=None,
) -> tf.Tensor:
    """Frame indices `[num_clips, num_frames]` (int32, each in `[0, num_video_frames)`).

    Args:
      num_video_frames: N, the video's frame count (int or scalar tensor, must be ≥ 1).
      num_frames: T, frames per clip.
      training: random position per segment (True) or evenly offset fixed points (False).
      num_clips: clips per video; in training each clip draws its own positions.
      seed: optional stateless seed (shape [2] int tensor) for the training draw, so a
        seeded pipeline is reproducible; None uses TF's global random state.
    """
    if num_frames < 1 or num_clips < 1:
        raise ValueError(f"num_frames and num_clips must be >= 1, got {num_frames}, {num_clips}")
    n = tf.cast(num_video_frames, tf.int64)
    check = tf.debugging.assert_positive(n, message="a video needs at least one frame")
    with tf.control_dependencies([check] if check is not None else []):
        segment = tf.cast(n, tf.float64) / num_frames
    starts = tf.range(num_frames, dtype=tf.float64)[tf.newaxis, :]  # [1, T]
    if training:
        shape = [num_clips, num_frames]
        if seed is None:
            offsets = tf.random.uniform(shape, dtype=tf.float64)
        else:
            offsets = tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float64)
    else:
        offsets = (tf.range(num_clips, dtype=tf.float64)[:, tf.newaxis] + 0.5) / num_clips
    positions = tf.floor((starts + offsets) * segment)
    indices = tf.clip_by_value(tf.cast(positions, tf.int64), 0, n - 1)
    return tf.cast(indices, tf.int32)
