"""`ClipPreprocessor`: how a model wants its evaluation clips, as one saveable object.

Evaluation preparation is always the same chain — pick T frames by centre segment
sampling, crop the centre of the short side (224/256 by default), resize to S×S,
normalise (ImageNet's mean and std by default) — and every consumer runs it through this
layer: the tf.data pipeline
(from JPEG records), `load_video` and the inference runners (from decoded frames), and the
SavedModel's serving graphs. A model built by `stabn_tf.models` carries its preprocessor
in its config (`model.preprocessor`), so a `.keras` file alone says how to feed it: the
preprocessor's config holds the whole clip (T, S, crop ratio, mean, std), and files saved
before it held the last three get the defaults, which are what they were always fed.

Training augmentation (random crop, colour jitter, flips) is not part of it: that belongs
to the training pipeline, not to the shipped model.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from stabn_tf.data import preprocess, sampling


@keras.saving.register_keras_serializable(package="stabn_tf")
class ClipPreprocessor(keras.layers.Layer):
    """Evaluation clip preparation for a model of `num_frames` × `image_size`².

    Called on frames already sampled, `uint8 [..., T, H, W, 3]` (or float on the 0..255
    scale) → normalised float32 `[..., T, S, S, 3]`: centre crop (`crop_ratio` of the short
    side), bilinear resize, normalisation by `mean` and `std` (RGB, 0..1 scale).
    `frame_indices` does the sampling, `from_frames` and `from_jpeg` the whole chain for
    a decoded video or a record's JPEG strings.
    """

    def __init__(self, num_frames: int = 32, image_size: int = 224,
                 crop_ratio: float = preprocess.EVAL_CROP_RATIO,
                 mean: Sequence[float] = preprocess.IMAGENET_MEAN,
                 std: Sequence[float] = preprocess.IMAGENET_STD, **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("name", "clip_preprocessor")  # a fixed name: configs compare equal
        kwargs["dtype"] = "float32"  # input preparation stays float32 under mixed precision
        super().__init__(**kwargs)
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be an int >= 1, got {num_frames!r}.")
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"`image_size` must be an int >= 1, got {image_size!r}.")
        if not isinstance(crop_ratio, (int, float)) or not 0.0 < crop_ratio <= 1.0:
            raise ValueError(f"`crop_ratio` must be in (0, 1], got {crop_ratio!r}.")
        for name, value in (("mean", mean), ("std", std)):
            if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value) \
                    or (name == "std" and min(value) <= 0):
                raise ValueError(f"`{name}` must be 3 numbers (RGB, 0..1 scale)"
                                 f"{', each > 0' if name == 'std' else ''}, got {value!r}.")
        self.num_frames = num_frames
        self.image_size = image_size
        self.crop_ratio = float(crop_ratio)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def frame_indices(self, num_source_frames, num_clips: int = 1) -> tf.Tensor:
        """Source frame indices `[num_clips, T]`: centre segment sampling, evenly offset
        clips (2 clips = the paper's "32+32")."""
        return sampling.segment_indices(num_source_frames, self.num_frames, training=False,
                                        num_clips=num_clips)

    def crop_window(self, height, width) -> tf.Tensor:
        """The centre crop `(y, x, h, w)` in source pixels."""
        return preprocess.eval_crop_window(height, width, self.crop_ratio)

    def crop_in_frame(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The centre crop `(y, x, h, w)` as fractions of a `height`×`width` source frame:
        where the model's view, and so every spatial map, lies in the video's own frame."""
        y, x, h, w = (int(v) for v in self.crop_window(height, width))
        return y / height, x / width, h / height, w / width

    def resize(self, cropped) -> tf.Tensor:
        """Cropped frames → float32 `[..., S, S, 3]` on the 0..255 scale (for display too)."""
        return preprocess.resize_frames(cropped, self.image_size)

    def normalize(self, resized) -> tf.Tensor:
        """`resize`'s output → the model's input (`mean`/`std`, RGB)."""
        return preprocess.color_normalize(resized, mean=self.mean, std=self.std)

    def denormalize(self, clips) -> np.ndarray:
        """The model's input → uint8 RGB pictures, for display."""
        return preprocess.denormalize(clips, self.mean, self.std)

    @property
    def short_side(self) -> int:
        """The short side a video is shown at so that the crop is `image_size`."""
        return preprocess.eval_short_side(self.image_size, self.crop_ratio)

    def call(self, frames):
        frames = tf.convert_to_tensor(frames)
        shape = tf.shape(frames)
        y, x, h, w = tf.unstack(self.crop_window(shape[-3], shape[-2]))
        cropped = frames[..., y:y + h, x:x + w, :]
        return self.normalize(self.resize(cropped))

    def from_frames(self, frames: np.ndarray, num_clips: int = 1
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A decoded video `uint8 [N, H, W, 3]` → (normalised clips `[n, T, S, S, 3]`, the
        same pixels as uint8 for display, source indices `[n, T]`), from one sampling and
        one crop, so pictures line up with what the model saw."""
        indices = self.frame_indices(len(frames), num_clips).numpy()
        y, x, h, w = (int(v) for v in self.crop_window(*frames.shape[1:3]))
        resized = self.resize(frames[indices][:, :, y:y + h, x:x + w])
        clips = self.normalize(resized).numpy()
        shown = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)
        return clips, shown, indices

    def from_jpeg(self, encoded: tf.Tensor, num_clips: int = 1
                  ) -> tuple[tf.Tensor, tf.Tensor]:
        """A record's JPEG strings `[N]` → (normalised clips `[n·T, S, S, 3]`, indices
        `[n, T]`), decoding only the sampled frames and only their crop window."""
        indices = self.frame_indices(tf.shape(encoded)[0], num_clips)
        jpeg_shape = tf.io.extract_jpeg_shape(encoded[0])
        window = self.crop_window(jpeg_shape[0], jpeg_shape[1])
        frames = decode_jpeg_window(tf.gather(encoded, tf.reshape(indices, [-1])), window)
        return self.normalize(self.resize(frames)), indices

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-3], self.image_size, self.image_size, 3)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(num_frames=self.num_frames, image_size=self.image_size,
                      crop_ratio=self.crop_ratio, mean=list(self.mean), std=list(self.std))
        config.pop("dtype", None)
        return config


def decode_jpeg_window(encoded: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """JPEG strings `[K]` → uint8 `[K, h, w, 3]`, decoding only the crop `window`."""
    return tf.map_fn(
        lambda jpeg: tf.io.decode_and_crop_jpeg(jpeg, window, channels=3),
        encoded,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        parallel_iterations=16,
    )
