"""Initialise the 3D backbone from a 2D `keras.applications.ResNet50` (ImageNet).

Each 2D kernel `[kh, kw, C, F]` is repeated over the temporal kernel size kt and
divided by kt, so a clip of identical frames gives the 2D features away from the
clip's ends (the zero temporal padding makes the first and last few frames differ).

Two differences between Keras's ResNet50 and ours are handled, not hidden:
- Keras's convs have biases; ours don't (a BN follows every conv). A bias b before
  a BN equals moving_mean − b, so it is folded into the BN's moving mean.
- Keras's BN epsilon is 1.001e-5, ours 1e-5: the difference goes into moving_variance.
- Keras puts a block's spatial stride in its first 1×1 conv, the reference in the 1×3×3
  conv. The weights copy either way; `stride_in_1x1=True` at build gives the 2D net's
  exact function (tests use it), the default keeps the reference layout.
- Keras's ImageNet weights expect "caffe" input (BGR, 0–255, mean subtracted, no std);
  ours get RGB normalised with ImageNet mean/std. `fold_input_normalization` rewrites
  the stem conv so the same image gives the same activations (exact except for the
  zero-padded border pixels of the stem).
"""

from __future__ import annotations

import keras
import numpy as np

from stabn_tf.layers.norm import BN_EPSILON

KERAS_RESNET50_BN_EPSILON = 1.001e-5
# keras.applications.resnet50.preprocess_input ("caffe"): BGR means in 0..255.
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
_BRANCH_SUFFIX = {"a": "1", "b": "2", "c": "3", "shortcut": "0"}


def keras_resnet50_name(name: str) -> str | None:
    """Our conv/BN layer name → the 2D ResNet50 layer it inflates from (None if none).

    `stem_conv_a` → `conv1_conv`; `res3_block2_bn_b` → `conv3_block2_2_bn`. The
    attention branch's res5 copy (`att_res5_...`) has no 2D source: it starts random.
    """
    if name in ("stem_conv_a", "stem_bn_a"):
        return "conv1_" + name.split("_")[1]
    parts = name.split("_")
    if len(parts) != 4 or not parts[0].startswith("res") or parts[2] not in ("conv", "bn"):
        return None
    stage, block, kind, branch = parts
    if branch not in _BRANCH_SUFFIX:
        return None
    return f"conv{stage[3:]}_{block}_{_BRANCH_SUFFIX[branch]}_{kind}"


def inflate_resnet50(
    model: keras.Model,
    resnet2d: keras.Model | None = None,
    *,
    fold_input_normalization: bool = True,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
) -> list[str]:
    """Copy (inflated) ResNet-50 weights into a depth-50, width-1 ST-ABN or baseline model.

    Args:
      model: from `build_stabn(depth=50)` or `build_baseline(depth=50)`.
      resnet2d: a 2D `keras.applications.ResNet50`; default downloads the ImageNet
        weights (needs network, so only on a user's machine).
      fold_input_normalization: adapt the stem to our RGB mean/std input (see module doc).
        Leave it off when the 2D net is fed the very same tensor as ours.
      mean, std: the RGB normalisation our data uses, 0..1 scale (default: ImageNet's).

    Returns:
      The names of our layers that received weights.
    """
    if resnet2d is None:
        resnet2d = keras.applications.ResNet50(weights="imagenet", include_top=False)
    source = {layer.name: layer for layer in resnet2d.layers}
    copied = []
    for layer in model.layers:
        source_name = keras_resnet50_name(layer.name)
        if source_name is None:
            continue
        if source_name not in source:
            raise ValueError(f"{layer.name}: no layer {source_name!r} in the 2D ResNet50.")
        src = source[source_name]
        if layer.name.split("_")[-2] == "conv":
            _inflate_conv(layer, src)
        else:
            conv_src = source[source_name.replace("_bn", "_conv")]
            _copy_bn(layer, src, conv_bias=conv_src.get_weights()[1])
        copied.append(layer.name)
    if not copied:
        raise ValueError(f"no layer of {model.name!r} maps to ResNet50: built with depth=50?")
    if fold_input_normalization:
        _fold_input_normalization(model, mean, std)
    return copied


def _inflate_conv(layer, src) -> None:
    kernel2d = src.get_weights()[0]  # [kh, kw, C, F]; its bias goes into the next BN
    kt = layer.kernel.shape[0]
    expected = tuple(layer.kernel.shape[1:])
    if kernel2d.shape != expected:
        raise ValueError(f"{layer.name}: 2D kernel {kernel2d.shape} does not fit {expected} "
                         "(is the model's width_multiplier 1?).")
    layer.kernel.assign(np.repeat(kernel2d[None], kt, axis=0) / kt)


def _copy_bn(layer, src, conv_bias: np.ndarray) -> None:
    gamma, beta, mean, var = src.get_weights()
    layer.set_weights([
        gamma,
        beta,
        mean - conv_bias,
        var + (KERAS_RESNET50_BN_EPSILON - BN_EPSILON),
    ])


def _fold_input_normalization(model, mean, std) -> None:
    """Make the stem see what the 2D net saw: x_caffe = 255·(x·std + mean) − caffe_mean in BGR."""
    if mean is None or std is None:
        from stabn_tf.data.preprocess import IMAGENET_MEAN, IMAGENET_STD

        mean = IMAGENET_MEAN if mean is None else mean
        std = IMAGENET_STD if std is None else std
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    conv, bn = model.get_layer("stem_conv_a"), model.get_layer("stem_bn_a")
    kernel = conv.kernel.numpy()  # [1, 7, 7, 3 (BGR), F] after inflation
    rgb_kernel = kernel[..., ::-1, :] * (255.0 * std)[:, None]
    offset = 255.0 * mean - CAFFE_BGR_MEAN[::-1]  # RGB order, what x=0 becomes
    bias = np.einsum("tijcf,c->f", kernel[..., ::-1, :], offset)
    conv.kernel.assign(rgb_kernel)
    gamma, beta, moving_mean, var = bn.get_weights()
    bn.set_weights([gamma, beta, moving_mean - bias, var])
