"""`ClipPreprocessor`: how a model wants its evaluation clips, as one saveable object.

Evaluation preparation is always the same chain — pick T frames by centre segment
sampling, crop the centre 224/256 of the short side, resize to S×S, normalise with the
ImageNet statistics — and every consumer runs it through this layer: the tf.data pipeline
(from JPEG records), `load_video` and the inference runners (from decoded frames), and the
SavedModel's serving graphs. A model built by `stabn_tf.models` carries its preprocessor
in its config (`model.preprocessor`), so a `.keras` file alone says how to feed it.

Training augmentation (random crop, colour jitter, flips) is not part of it: that belongs
to the training pipeline, not to the shipped model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from stabn_tf.data import preprocess, sampling


@keras.saving.register_keras_serializable(package="stabn_tf")
class ClipPreprocessor(keras.layers.Layer):
    """Evaluation clip preparation for a model of `num_frames` × `image_size`².

    Called on frames already sampled, `uint8 [..., T, H, W, 3]` (or float on the 0..255
    scale) → normalised float32 `[..., T, S, S, 3]`: centre crop, bilinear resize,
    ImageNet normalisation. `frame_indices` does the sampling, `from_frames` and
    `from_jpeg` the whole chain for a decoded video or a record's JPEG strings.
    """

    def __init__(self, num_frames: int = 32, image_size: int = 224, **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("name", "clip_preprocessor")  # a fixed name: configs compare equal
        kwargs["dtype"] = "float32"  # input preparation stays float32 under mixed precision
        super().__init__(**kwargs)
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be an int >= 1, got {num_frames!r}.")
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"`image_size` must be an int >= 1, got {image_size!r}.")
        self.num_frames = num_frames
        self.image_size = image_size

    def frame_indices(self, num_source_frames, num_clips: int = 1) -> tf.Tensor:
        """Source frame indices `[num_clips, T]`: centre segment sampling, evenly offset
        clips (2 clips = the paper's "32+32")."""
        return sampling.segment_indices(num_source_frames, self.num_frames, training=False,
                                        num_clips=num_clips)

    def crop_window(self, height, width) -> tf.Tensor:
        """The centre crop `(y, x, h, w)` in source pixels."""
        return preprocess.eval_crop_window(height, width)

    def crop_in_frame(self, height: int, width: int) -> tuple[float, float, float, float]:
        """The centre crop `(y, x, h, w)` as fractions of a `height`×`width` source frame:
        where the model's view, and so every spatial map, lies in the video's own frame."""
        y, x, h, w = (int(v) for v in self.crop_window(height, width))
        return y / height, x / width, h / height, w / width

    def resize(self, cropped) -> tf.Tensor:
        """Cropped frames → float32 `[..., S, S, 3]` on the 0..255 scale (for display too)."""
        return preprocess.resize_frames(cropped, self.image_size)

    def normalize(self, resized) -> tf.Tensor:
        """`resize`'s output → the model's input (ImageNet mean/std, RGB)."""
        return preprocess.color_normalize(resized)

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
        config.update(num_frames=self.num_frames, image_size=self.image_size)
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
