"""Video convolution and pooling built from 2D ops only.

TFLite's CONV_3D kernel is float-only and 3D pooling does not convert at all
(docs/architecture.md §2), so the network that trains is written with 2D ops from the start:
the model that trains is the model that ships, with no second copy of the
architecture to keep in sync.

Kernels are stored in the Conv3D layout `[kt, kh, kw, C_in, C_out]`, so inflation
from 2D weights and comparison with `keras.layers.Conv3D` stay one-to-one.

Both layers also have `implementation="3d"`: the same computation and weights as one
5D op (Conv3D, MaxPool3D). No training or TFLite graph uses it; the OpenVINO int8 export
does, because its CPU plugin fuses the bias, residual Add and ReLU into a 5D int8
convolution but not across the reshapes of the 2D form (docs/architecture.md §2).
"""

from __future__ import annotations

import keras
from keras import ops


def _triple(value: int | tuple[int, ...], name: str) -> tuple[int, int, int]:
    if isinstance(value, int):
        value = (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3 or min(value) < 1:
        raise ValueError(f"`{name}` must be a positive int or 3 positive ints, got {value}.")
    return value


IMPLEMENTATIONS = ("2d", "3d")


def _implementation(value: str) -> str:
    if value not in IMPLEMENTATIONS:
        raise ValueError(f"`implementation` must be one of {IMPLEMENTATIONS}, got {value!r}.")
    return value


@keras.saving.register_keras_serializable(package="stabn_tf")
class Conv3DAs2D(keras.layers.Layer):
    """A `kt×kh×kw` convolution over `[B, T, H, W, C]` computed with Conv2D.

    Padding is "same" in time and, by default, in space, in the reference's
    (PyTorch) sense: k//2 zeros on each side, also when strided, so weights ported
    from the reference see the same windows (TF's own "same" pads a strided conv
    asymmetrically). "valid" pads nothing in space. Kernel sizes are odd. The
    temporal stride is always 1: the backbone never downsamples time.

    - `1×kh×kw`: Conv2D on the frames folded into the batch, `[B·T, H, W, C]`.
    - `kt×1×1`: Conv2D with a `(kt, 1)` kernel on `[B, T, H·W, C]`.
    - general: the kt time-shifted copies are stacked on channels and one
      `kh×kw` Conv2D sees them all (only the temporal attention's 3×3×3 conv).

    `implementation="3d"` computes the same with one Conv3D over the padded clip
    (see the module docstring for who uses it).

    Shapes: `[B, T, H, W, C_in] -> [B, T, H', W', filters]`.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int, int] = 1,
        strides: int | tuple[int, int] = 1,
        padding: str = "same",
        use_bias: bool = False,
        kernel_initializer="he_normal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        implementation: str = "2d",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.implementation = _implementation(implementation)
        self.filters = int(filters)
        self.kernel_size = _triple(kernel_size, "kernel_size")
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"`kernel_size` must be odd (centred), got {self.kernel_size}.")
        strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
        if len(strides) != 2 or min(strides) < 1:
            raise ValueError(f"`strides` are spatial (sh, sw) and positive, got {strides}.")
        self.strides = tuple(int(s) for s in strides)
        if padding not in ("same", "valid"):
            raise ValueError(f"`padding` must be 'same' or 'valid', got {padding!r}.")
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=5)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension of the input must be known.")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.filters,), initializer=self.bias_initializer
            )
        self.input_spec = keras.layers.InputSpec(ndim=5, axes={-1: channels})

    def call(self, inputs):
        if self.implementation == "3d":
            return self._call_3d(inputs)
        kt, kh, kw = self.kernel_size
        b, t, h, w, c = ops.shape(inputs)
        if kt == 1:
            frames = self._pad_frames(ops.reshape(inputs, (-1, h, w, c)))
            y = ops.conv(frames, self.kernel[0], strides=self.strides, padding=self._conv_padding)
        elif kh == 1 and kw == 1:
            if self.strides != (1, 1):  # a strided 1×1 conv is a subsample, then a 1×1 conv
                inputs = inputs[:, :, :: self.strides[0], :: self.strides[1], :]
                b, t, h, w, c = ops.shape(inputs)
            seq = ops.reshape(inputs, (-1, t, h * w, c))
            y = ops.conv(seq, self.kernel[:, 0], strides=1, padding="same")
            y = ops.reshape(y, (-1, h, w, self.filters))
        else:
            # Padded in time as [B, T, H·W, C]: a 5D PAD that shares its input with another
            # conv makes the TFLite int8 quantizer leave that conv in float.
            pad = kt // 2
            seq = ops.pad(ops.reshape(inputs, (-1, t, h * w, c)),
                          ((0, 0), (pad, kt - 1 - pad), (0, 0), (0, 0)))
            stacked = ops.concatenate([seq[:, i : i + t] for i in range(kt)], axis=-1)
            frames = self._pad_frames(ops.reshape(stacked, (-1, h, w, kt * c)))
            # [kt, kh, kw, C, F] -> [kh, kw, kt·C, F], matching the channel stacking order.
            kernel = ops.reshape(ops.transpose(self.kernel, (1, 2, 0, 3, 4)), (kh, kw, kt * c, -1))
            y = ops.conv(frames, kernel, strides=self.strides, padding=self._conv_padding)
        if self.use_bias:
            y = y + self.bias
        out_h, out_w = ops.shape(y)[1], ops.shape(y)[2]
        return ops.reshape(y, (-1, t, out_h, out_w, self.filters))

    def _call_3d(self, inputs):
        kt, kh, kw = self.kernel_size
        ph, pw = (kh // 2, kw // 2) if self.padding == "same" else (0, 0)
        pads = ((0, 0), (kt // 2, kt // 2), (ph, ph), (pw, pw), (0, 0))
        if any(p for p, _ in pads):
            inputs = ops.pad(inputs, pads)
        y = ops.conv(inputs, self.kernel, strides=(1, *self.strides), padding="valid")
        return y + self.bias if self.use_bias else y

    @property
    def _explicit_pad(self) -> bool:
        # Stride 1 with an odd kernel: TF's "same" already pads k//2 on both sides.
        return self.padding == "same" and self.strides != (1, 1)

    @property
    def _conv_padding(self) -> str:
        return "valid" if self._explicit_pad or self.padding == "valid" else "same"

    def _pad_frames(self, frames):
        if not self._explicit_pad:
            return frames
        ph, pw = self.kernel_size[1] // 2, self.kernel_size[2] // 2
        return ops.pad(frames, ((0, 0), (ph, ph), (pw, pw), (0, 0)))

    def compute_output_shape(self, input_shape):
        b, t, h, w, _ = input_shape
        (sh, sw), (_, kh, kw) = self.strides, self.kernel_size
        return (b, t, _out_size(h, kh, sh, self.padding), _out_size(w, kw, sw, self.padding),
                self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            implementation=self.implementation,
        )
        return config


@keras.saving.register_keras_serializable(package="stabn_tf")
class FrameMaxPool2D(keras.layers.Layer):
    """A `1×k×k` max-pool (one 2D pool per frame) with symmetric zero padding.

    Zero padding equals -inf padding here because the input follows a ReLU; it is
    the padding of the reference and of `keras.applications.ResNet50`.
    `implementation="3d"` pools with one `1×k×k` MaxPool3D instead.

    Shapes: `[B, T, H, W, C] -> [B, T, H', W', C]`.
    """

    def __init__(self, pool_size: int = 3, strides: int = 2, padding: int = 1,
                 implementation: str = "2d", **kwargs):
        super().__init__(**kwargs)
        self.implementation = _implementation(implementation)
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.pad = int(padding)
        self.input_spec = keras.layers.InputSpec(ndim=5)

    def call(self, inputs):
        p = self.pad
        if self.implementation == "3d":
            if p:
                inputs = ops.pad(inputs, ((0, 0), (0, 0), (p, p), (p, p), (0, 0)))
            size, stride = (1, self.pool_size, self.pool_size), (1, self.strides, self.strides)
            return ops.max_pool(inputs, size, stride, padding="valid")
        _, t, h, w, c = ops.shape(inputs)
        frames = ops.reshape(inputs, (-1, h, w, c))
        if p:
            frames = ops.pad(frames, ((0, 0), (p, p), (p, p), (0, 0)))
        y = ops.max_pool(frames, self.pool_size, self.strides, padding="valid")
        return ops.reshape(y, (-1, t, ops.shape(y)[1], ops.shape(y)[2], c))

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        size = self.pool_size
        return (b, t, _out_size(h, size, self.strides, "valid", self.pad),
                _out_size(w, size, self.strides, "valid", self.pad), c)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.pad,
                      implementation=self.implementation)
        return config


def _out_size(n, k, s, padding, pad=0):
    """Output length of a k-wide window with stride s over n (+2·pad) positions."""
    if n is None:
        return None
    return -(-n // s) if padding == "same" else (n + 2 * pad - k) // s + 1
