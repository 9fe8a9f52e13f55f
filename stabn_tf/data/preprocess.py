"""Crop, resize, colour jitter and normalisation of clips (docs/architecture.md §3).

This is the one place the ImageNet statistics live. `IMAGENET_MEAN` / `IMAGENET_STD` are
RGB on the **0..1 scale**; `normalize` takes uint8 pixels (0..255) or floats already on the
0..1 scale (TF's image convention, as `tf.image.convert_image_dtype` produces).

Every op works on a whole clip `[..., T, H, W, 3]` with ONE set of random parameters, so
all frames of a clip get the same crop and the same colour change: motion is the signal in
Something-Something and per-frame jitter would add fake motion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

#: ImageNet RGB mean and std on the 0..1 scale (multiply by 255 for 0..255 pixels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Evaluation geometry at the paper's size: resize the short side to 256, centre-crop 224.
#: For other `image_size` values both scale together (short side 256/224·S, crop S).
EVAL_SHORT_SIDE = 256
EVAL_CROP = 224
#: The side of the centre crop as a fraction of the short side (224/256): the default of
#: `ClipPreprocessor(crop_ratio=...)`.
EVAL_CROP_RATIO = EVAL_CROP / EVAL_SHORT_SIDE

#: Default training crop: area as a fraction of the short side squared, and aspect range.
CROP_AREA_RANGE = (0.3, 1.0)
CROP_ASPECT_RANGE = (3 / 4, 4 / 3)


def _is_tf(x) -> bool:
    return isinstance(x, (tf.Tensor, tf.Variable))


def _affine_rgb(x: tf.Tensor, matrix, bias) -> tf.Tensor:
    """`x @ matrix + bias` over the RGB axis of `[..., H, W, 3]` float32, as a 1×1
    convolution: oneDNN runs it ~5× faster than elementwise ops broadcasting a size-3
    axis, and this is the hottest per-pixel step of the input pipeline."""
    shape = tf.shape(x)
    y = tf.nn.conv2d(tf.reshape(x, [-1, shape[-3], shape[-2], 3]),
                     tf.reshape(tf.cast(matrix, tf.float32), [1, 1, 3, 3]), 1, "VALID")
    y = tf.nn.bias_add(y, tf.cast(bias, tf.float32))
    return tf.ensure_shape(tf.reshape(y, shape), x.shape)


def _normalizer(pixel_scale: float, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> tuple[np.ndarray, np.ndarray]:
    """(matrix, bias) of `(x * pixel_scale - mean) / std` as an RGB affine map."""
    std = np.asarray(std, np.float32)
    mean = np.asarray(mean, np.float32)
    return np.diag(pixel_scale / std).astype(np.float32), (-mean / std).astype(np.float32)


def normalize(frames):
    """Frames → `(x - mean) / std` in float32, per RGB channel.

    uint8 input is on the 0..255 scale; float input must already be on the 0..1 scale.
    Works on numpy arrays (returns numpy) and TF tensors (returns a tensor).
    """
    if _is_tf(frames):
        x = tf.convert_to_tensor(frames)
        scale = 1.0 / 255.0 if x.dtype == tf.uint8 else 1.0
        x = tf.cast(x, tf.float32)
        matrix, bias = _normalizer(scale)
        if x.shape.rank is not None and x.shape.rank >= 3:
            return _affine_rgb(x, matrix, bias)
        return x * np.diag(matrix) + bias
    a = np.asarray(frames)
    x = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)


def denormalize(clips, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Inverse of `normalize`, for visualisation: normalised floats → uint8 RGB (numpy)."""
    x = np.asarray(clips.numpy() if _is_tf(clips) else clips, np.float32)
    x = x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def eval_short_side(image_size: int, crop_ratio: float = EVAL_CROP_RATIO) -> int:
    """Short side the eval path resizes to: 256 for 224 (`image_size / crop_ratio`)."""
    return int(round(image_size / crop_ratio))


# --- crop windows: int32 [4] = (y, x, height, width) in source pixels -----------------


def eval_crop_window(height, width, crop_ratio: float = EVAL_CROP_RATIO) -> tf.Tensor:
    """Centre square covering `crop_ratio` of the short side (by default 224/256:
    resize-256-then-crop-224, done as one crop + one resize so nothing outside the crop
    is ever decoded)."""
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    side = tf.maximum(tf.round(tf.minimum(h, w) * crop_ratio), 1.0)
    y = tf.floor((h - side) / 2)
    x = tf.floor((w - side) / 2)
    return tf.cast(tf.stack([y, x, side, side]), tf.int32)


def random_crop_window(
    height,
    width,
    seed,
    area_range: tuple[float, float] = CROP_AREA_RANGE,
    aspect_range: tuple[float, float] = CROP_ASPECT_RANGE,
) -> tf.Tensor:
    """Random-resized-crop window for a whole clip.

    The area is a fraction of the short side squared (so area 1, aspect 1 is the largest
    centred-scale square, the same scale family as the eval crop) and the aspect ratio is
    log-uniform; sides are clamped to the frame. `seed` is a stateless seed (shape [2]).
    """
    lo, hi = area_range
    if not 0 < lo <= hi:
        raise ValueError(f"crop area range must satisfy 0 < lo <= hi, got {area_range}")
    s_area, s_aspect, s_y, s_x = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    short = tf.minimum(h, w)
    area = tf.random.stateless_uniform([], s_area, lo, hi) * short * short
    log_r = tf.random.stateless_uniform(
        [], s_aspect, math.log(aspect_range[0]), math.log(aspect_range[1])
    )
    ratio = tf.exp(log_r)  # width / height
    ch = tf.clip_by_value(tf.round(tf.sqrt(area / ratio)), 1.0, h)
    cw = tf.clip_by_value(tf.round(tf.sqrt(area * ratio)), 1.0, w)
    y = tf.floor(tf.random.stateless_uniform([], s_y) * (h - ch + 1))
    x = tf.floor(tf.random.stateless_uniform([], s_x) * (w - cw + 1))
    y = tf.minimum(y, h - ch)
    x = tf.minimum(x, w - cw)
    return tf.cast(tf.stack([y, x, ch, cw]), tf.int32)


def crop_boxes(boxes, window, height, width) -> tf.Tensor:
    """Maps normalised boxes `[..., 4]` (ymin, xmin, ymax, xmax of the full frame) into the
    crop `window`, so they still match the cropped (and resized) pixels.

    Boxes are clipped to the crop; a box that ends up with zero area (object outside the
    crop, or an all-zero "not visible" box) becomes all zeros.
    """
    boxes = tf.cast(boxes, tf.float32)
    win = tf.cast(window, tf.float32)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    scale = tf.stack([h, w, h, w])
    origin = tf.stack([win[0], win[1], win[0], win[1]])
    size = tf.stack([win[2], win[3], win[2], win[3]])
    out = tf.clip_by_value((boxes * scale - origin) / size, 0.0, 1.0)
    visible = (out[..., 2] > out[..., 0]) & (out[..., 3] > out[..., 1])
    visible &= (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    return tf.where(visible[..., tf.newaxis], out, tf.zeros_like(out))


def flip_boxes(boxes) -> tf.Tensor:
    """Horizontal flip of normalised boxes; all-zero boxes stay all zeros."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    flipped = tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)
    empty = tf.reduce_all(tf.equal(boxes, 0.0), axis=-1, keepdims=True)
    return tf.where(empty, boxes, flipped)


def resize_frames(frames, image_size: int) -> tf.Tensor:
    """uint8 frames `[..., H, W, 3]` → float32 `[..., S, S, 3]`, still on the 0..255 scale
    (bilinear; `color_normalize` folds the 1/255 into its single affine pass)."""
    # Cast first: TF's bilinear kernel is ~1.5× faster on float32 input than on uint8,
    # with the same result.
    frames = tf.cast(frames, tf.float32)
    if frames.shape.rank is not None and frames.shape.rank <= 4:
        return tf.image.resize(frames, [image_size, image_size], method="bilinear")
    shape = tf.shape(frames)
    flat = tf.reshape(frames, tf.concat([[-1], shape[-3:]], 0))
    out = tf.image.resize(flat, [image_size, image_size], method="bilinear")
    return tf.reshape(out, tf.concat([shape[:-3], [image_size, image_size, 3]], 0))


# --- colour jitter: brightness, contrast, saturation, hue as ONE affine map per clip ---

# RGB → YIQ; hue rotation is a rotation of the I/Q plane around the luma axis.
_YIQ = np.array([[0.299, 0.587, 0.114],
                 [0.596, -0.274, -0.322],
                 [0.211, -0.523, 0.312]], np.float64)
_YIQ_INV = np.linalg.inv(_YIQ)
_LUMA = _YIQ[0]


def color_jitter_transform(strength: float, seed, mean_rgb) -> tuple[tf.Tensor, tf.Tensor]:
    """(matrix [3, 3], offset [3]) of one random colour jitter on 0..1 RGB row vectors,
    `pixel' = pixel @ matrix + offset`.

    Brightness, contrast and saturation factors are drawn from `[1 - s, 1 + s]` and the hue
    shift from `±s/4` of a turn (s = `strength`). All four are linear in RGB (contrast
    blends towards the clip's mean luma, computed from `mean_rgb`; saturation towards each
    pixel's luma; hue rotates the YIQ chroma plane around the luma axis), so they compose
    into one affine map: one pass over the pixels instead of four.
    """
    s_b, s_c, s_s, s_h = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    b = tf.random.stateless_uniform([], s_b, 1.0 - strength, 1.0 + strength)
    c = tf.random.stateless_uniform([], s_c, 1.0 - strength, 1.0 + strength)
    s = tf.random.stateless_uniform([], s_s, 1.0 - strength, 1.0 + strength)
    theta = tf.random.stateless_uniform([], s_h, -strength / 4, strength / 4) * (2 * math.pi)

    luma = tf.constant(_LUMA, tf.float32)
    sat = s * tf.eye(3) + (1.0 - s) * luma[:, tf.newaxis] * tf.ones([1, 3])
    cos, sin = tf.cos(theta), tf.sin(theta)
    zero, one = tf.zeros([]), tf.ones([])
    rot = tf.stack([tf.stack([one, zero, zero]),
                    tf.stack([zero, cos, sin]),
                    tf.stack([zero, -sin, cos])])
    hue = tf.constant(_YIQ.T, tf.float32) @ rot @ tf.constant(_YIQ_INV.T, tf.float32)
    chroma = sat @ hue
    mean_luma = tf.reduce_sum(tf.cast(mean_rgb, tf.float32) * luma) * b
    matrix = (b * c) * chroma
    offset = (((1.0 - c) * mean_luma) * tf.ones([1, 3]) @ chroma)[0]
    return matrix, offset


def color_normalize(frames, *, jitter: float = 0.0, seed=None,
                    mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> tf.Tensor:
    """0..255 float frames `[..., H, W, 3]` (as `resize_frames` returns) → normalised clip.

    With `jitter > 0` (training), one colour jitter for the whole clip
    (`color_jitter_transform`, stateless `seed`), clipped to the valid 0..1 range, then the
    normalisation by `mean` and `std` (0..1 scale; ImageNet's by default); otherwise just
    the normalisation. Each step is one affine pass.
    """
    x = tf.cast(frames, tf.float32)
    if jitter > 0:
        if seed is None:
            raise ValueError("color jitter needs a stateless seed")
        # The clip's mean colour (for contrast), from about 4 of its frames: a full pass
        # over the clip would cost as much as the jitter itself.
        # (tf.gather, not a strided slice: TF's strided copy is ~10× slower here.)
        shape = tf.shape(x)
        flat = tf.reshape(x, [-1, shape[-3], shape[-2], 3])
        count = tf.shape(flat)[0]
        some = tf.gather(flat, tf.range(0, count, tf.maximum(1, count // 4)))
        mean_rgb = tf.reduce_mean(some, axis=[0, 1, 2]) / 255.0
        matrix, offset = color_jitter_transform(jitter, seed, mean_rgb)
        x = tf.clip_by_value(_affine_rgb(x, matrix / 255.0, offset), 0.0, 1.0)
        return _affine_rgb(x, *_normalizer(1.0, mean, std))
    return _affine_rgb(x, *_normalizer(1.0 / 255.0, mean, std))
