"""Initialise a model before training: inflated ImageNet ResNet weights, or a checkpoint.

`parse_init(text)` reads what `--init` says, `initialize(model, spec)` does it:

- `imagenet`: torchvision's original ImageNet ResNet-50, the checkpoint the paper's code
  starts from, as timm publishes it on the Hugging Face Hub (`timm/resnet50.tv_in1k`,
  `model.safetensors`). It is ResNet v1.5 (a block's spatial stride sits in its 3×3
  conv), our default layout, so the inflated network computes what the 2D one did.
- `imagenet:<owner>/<repo>`: another Hub repo holding a `model.safetensors` in
  torchvision naming, e.g. `imagenet:timm/resnet50.a1_in1k` (same layout).
- `<path>.safetensors`: such a file on disk (what to use on a machine without network).
- `imagenet:keras`: `keras.applications.ResNet50`'s weights. They are ResNet v1 (stride
  in the block's first 1×1 conv) and reproduce their 2D network only in a model built
  with `stride_in_1x1=True`, which `InitSpec.stride_in_1x1` asks for.
- `<path>.keras` / `<path>.weights.h5`: a checkpoint of the same model.

Inflation repeats each 2D kernel over the temporal kernel size kt and divides it by kt,
so a clip of identical frames gives the 2D features away from the clip's ends (there the
zero temporal padding differs); BN parameters and statistics are copied. The attention
branch's copy of res5 (`att_...`) and all heads have no 2D source and stay random, as
in the reference. Every error is an `InitError` whose message is one line naming the
key, layer or file at fault.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

import keras
import numpy as np

from stabn_tf.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from stabn_tf.errors import StabnError
from stabn_tf.models.stabn import archive_damage

DEFAULT_IMAGENET_REPO = "timm/resnet50.tv_in1k"
HUB_FILENAME = "model.safetensors"
INIT_KINDS = ("none", "imagenet", "safetensors", "keras_applications", "checkpoint")
CHECKPOINT_SUFFIXES = (".keras", ".weights.h5")

TORCHVISION_BN_EPSILON = 1e-5
KERAS_RESNET50_BN_EPSILON = 1.001e-5
# keras.applications.resnet50.preprocess_input ("caffe"): BGR means in 0..255.
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)

_BLOCK_LAYER = re.compile(r"res([2-5])_block(\d+)_(conv|bn)_(a|b|c|shortcut)")
_KERAS_BRANCH = {"a": "1", "b": "2", "c": "3", "shortcut": "0"}
_TORCHVISION_BN = (".weight", ".bias", ".running_mean", ".running_var")


class InitError(ValueError, StabnError):
    """An initialisation that cannot be done; `str()` is one line naming the culprit."""


@dataclasses.dataclass(frozen=True)
class InitSpec:
    """Where initial weights come from.

    kind: one of `INIT_KINDS`.
    source: the Hub repo (`imagenet`), the file (`safetensors`, `checkpoint`), or "".
    """

    kind: str = "none"
    source: str = ""

    def __post_init__(self):
        if self.kind not in INIT_KINDS:
            raise InitError(f"init kind must be one of {INIT_KINDS}, got {self.kind!r}")

    @property
    def stride_in_1x1(self) -> bool:
        """Build the model in ResNet v1 layout: only Keras-applications weights need it."""
        return self.kind == "keras_applications"

    @property
    def from_resnet50(self) -> bool:
        """ImageNet ResNet-50 weights: the model needs depth 50 and width multiplier 1."""
        return self.kind in ("imagenet", "keras_applications")


def parse_init(init: str) -> InitSpec:
    """`--init` text → `InitSpec`; an `InitError` for a malformed value or a missing file.

    Accepts `none`, `imagenet`, `imagenet:<owner>/<repo>`, `imagenet:keras`, or a path to
    a `.safetensors`, `.keras` or `.weights.h5` file.
    """
    text = (init or "none").strip()
    if text == "none":
        return InitSpec()
    if text == "imagenet":
        return InitSpec("imagenet", DEFAULT_IMAGENET_REPO)
    if text.startswith("imagenet:"):
        source = text[len("imagenet:"):]
        if source == "keras":
            return InitSpec("keras_applications")
        owner, _, name = source.partition("/")
        if not owner or not name or "/" in name or any(c.isspace() for c in source):
            raise InitError(f"--init={init!r}: expected imagenet:<owner>/<repo> (a Hugging Face "
                            f"Hub repo such as {DEFAULT_IMAGENET_REPO}) or imagenet:keras")
        return InitSpec("imagenet", source)
    path = os.path.expanduser(text)
    if path.endswith(".safetensors"):
        kind = "safetensors"
    elif path.endswith(CHECKPOINT_SUFFIXES):
        kind = "checkpoint"
    else:
        raise InitError(f"--init={init!r}: must be none, imagenet, imagenet:<owner>/<repo>, "
                        "imagenet:keras, or a .safetensors, .keras or .weights.h5 file")
    if not os.path.isfile(path):
        raise InitError(f"--init={init!r}: no such file")
    return InitSpec(kind, path)


def initialize(model: keras.Model, spec: InitSpec, *, cache_dir: str | None = None,
               local_files_only: bool = False) -> str:
    """Puts `spec`'s weights into `model`; returns a one-line account for the log.

    `cache_dir` and `local_files_only` go to the Hub download (`imagenet` only).
    Raises `InitError` (one line) when the weights cannot be had or do not fit.
    """
    if spec.kind == "none":
        return "no initial weights: training starts from random weights"
    if spec.kind in ("imagenet", "safetensors"):
        if spec.kind == "imagenet":
            path = download_imagenet_weights(spec.source, cache_dir=cache_dir,
                                             local_files_only=local_files_only)
            origin = f"{spec.source} ({path})"
        else:
            path = origin = spec.source
        copied = inflate_state_dict(model, load_state_dict(path), source=path)
        return (f"inflated the 2D ImageNet ResNet from {origin} into {len(copied)} conv/BN "
                "layers; the attention branch's res5 copy and the heads start random")
    if spec.kind == "keras_applications":
        copied = inflate_resnet50(model)
        return ("inflated keras.applications' ImageNet ResNet50 (ResNet v1, so the model is "
                f"built with stride_in_1x1=True) into {len(copied)} conv/BN layers")
    copy_checkpoint_weights(model, spec.source)
    return f"initialised every layer from the checkpoint {spec.source}"


# ---- Hugging Face Hub / safetensors ---------------------------------------------------

def download_imagenet_weights(repo_id: str = DEFAULT_IMAGENET_REPO, *,
                              cache_dir: str | None = None, local_files_only: bool = False,
                              revision: str | None = None) -> str:
    """The local path of `repo_id`'s `model.safetensors`, downloaded at most once.

    Like Keras's own weights (kept in `~/.keras/models`), the file is cached, here in the
    Hugging Face cache (`~/.cache/huggingface/hub`, or `$HF_HUB_CACHE` / `cache_dir`),
    and later calls read it from there. `HF_HUB_OFFLINE=1` (or `local_files_only`)
    skips asking the Hub. No network and no cached copy: an `InitError` saying how to
    bring the file over.
    """
    try:
        from huggingface_hub import hf_hub_download  # only when downloading: a network client
    except ImportError:
        raise InitError("downloading ImageNet weights needs huggingface_hub (pip install "
                        "huggingface_hub), or pass a local .safetensors file") from None
    try:
        return hf_hub_download(repo_id, HUB_FILENAME, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only)
    except (OSError, ValueError) as e:  # no network / not cached, unknown repo or file
        raise InitError(
            f"cannot get {HUB_FILENAME} of {repo_id} from the Hugging Face Hub or its cache "
            f"({type(e).__name__}: {_first_line(e)}); without network, run `hf download "
            f"{repo_id} {HUB_FILENAME}` on a machine with it and copy the cache over, or "
            "pass the file itself as --init=<path>.safetensors") from None


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """A safetensors file as `{key: numpy array}` (PyTorch layout, torch not needed)."""
    from safetensors.numpy import load_file  # only for --init=<file>.safetensors / imagenet

    try:
        return load_file(path)
    except Exception as e:  # a safetensors error, an I/O error or a dtype numpy lacks
        raise InitError(f"{path}: not a readable safetensors file "
                        f"({type(e).__name__}: {_first_line(e)})") from None


def torchvision_resnet_name(name: str) -> str | None:
    """Our conv/BN layer name → its key prefix in a torchvision/timm ResNet state dict.

    `stem_conv_a` → `conv1`, `stem_bn_a` → `bn1`, `res3_block2_bn_b` → `layer2.1.bn2`,
    `res4_block1_conv_shortcut` → `layer3.0.downsample.0` (its BN: `downsample.1`).
    None for layers without a 2D source (the attention branch's `att_res5_...`, heads).
    """
    if name in ("stem_conv_a", "stem_bn_a"):
        return "conv1" if name == "stem_conv_a" else "bn1"
    match = _BLOCK_LAYER.fullmatch(name)
    if match is None:
        return None
    stage, block, kind, branch = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}."
    if branch == "shortcut":
        return prefix + ("downsample.0" if kind == "conv" else "downsample.1")
    return prefix + f"{kind}{'abc'.index(branch) + 1}"


def _ignored_key(key: str) -> bool:
    """State-dict entries that have no place in the backbone by design."""
    return key.startswith("fc.") or key.endswith(".num_batches_tracked")


def inflate_state_dict(model: keras.Model, state: Mapping[str, np.ndarray],
                       source: str = "state dict") -> list[str]:
    """Inflate a torchvision/timm ResNet state dict (ResNet v1.5, OIHW kernels) into `model`.

    Every backbone conv and BN receives exactly one entry, and every entry but the
    classifier (`fc.*`) and `num_batches_tracked` finds a layer: a missing, misshapen or
    leftover key is an `InitError` naming it, raised before any weight changes.

    Returns:
      The names of our layers that received weights.
    """
    if _stride_in_1x1(model):
        raise InitError(f"{source}: torchvision/timm ResNets are v1.5 (stride in the 3×3 "
                        f"conv) but {model.name!r} was built with stride_in_1x1=True")
    used: set[str] = set()

    def take(key: str, shape: tuple[int, ...], layer_name: str) -> np.ndarray:
        if key not in state:
            raise InitError(f"{source}: no {key!r} (needed by {layer_name}); a torchvision/"
                            "timm ResNet of the model's depth?")
        value = np.asarray(state[key])
        if value.shape != shape:
            raise InitError(f"{source}: {key!r} has shape {value.shape}, {layer_name} needs "
                            f"{shape} (a ResNet of the model's depth, width_multiplier=1?)")
        used.add(key)
        return value.astype(np.float32)

    plan = []
    for layer in model.layers:
        prefix = torchvision_resnet_name(layer.name)
        if prefix is None:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = tuple(layer.gamma.shape)
            bn = [take(prefix + suffix, shape, layer.name) for suffix in _TORCHVISION_BN]
            plan.append((layer, bn, TORCHVISION_BN_EPSILON))
        else:
            _, kh, kw, c_in, c_out = layer.kernel.shape
            kernel = take(prefix + ".weight", (c_out, c_in, kh, kw), layer.name)
            plan.append((layer, kernel.transpose(2, 3, 1, 0), None))  # → [kh, kw, C, F]
    leftover = sorted(k for k in state if k not in used and not _ignored_key(k))
    if leftover:
        more = f" (and {len(leftover) - 1} more)" if len(leftover) > 1 else ""
        raise InitError(f"{source}: {leftover[0]!r}{more} has no layer in {model.name!r}; "
                        "a ResNet deeper than the model?")
    return _assign(model, plan)


# ---- keras.applications ResNet50 (ResNet v1) ------------------------------------------

def keras_resnet50_name(name: str) -> str | None:
    """Our conv/BN layer name → the `keras.applications.ResNet50` layer it inflates from.

    `stem_conv_a` → `conv1_conv`; `res3_block2_bn_b` → `conv3_block2_2_bn`. None for
    layers without a 2D source (the attention branch's `att_res5_...`, heads).
    """
    if name in ("stem_conv_a", "stem_bn_a"):
        return "conv1_" + name.split("_")[1]
    match = _BLOCK_LAYER.fullmatch(name)
    if match is None:
        return None
    stage, block, kind, branch = match.groups()
    return f"conv{stage}_block{block}_{_KERAS_BRANCH[branch]}_{kind}"


def inflate_resnet50(
    model: keras.Model,
    resnet2d: keras.Model | None = None,
    *,
    fold_input_normalization: bool = True,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
) -> list[str]:
    """Inflate a 2D `keras.applications.ResNet50` into a `stride_in_1x1=True` model.

    Its differences from torchvision's network are handled, not hidden:
    - its convs have biases and ours don't (a BN follows each): a bias b before a BN
      is the same as moving_mean − b, so it is folded into the BN;
    - its BN epsilon is 1.001e-5, ours 1e-5: the difference goes into moving_variance;
    - it is ResNet v1 (stride in the block's first 1×1 conv): a model in the default
      (v1.5) layout would not compute what the 2D network did, so it is refused;
    - its ImageNet weights expect "caffe" input (BGR, 0–255, mean subtracted, no std),
      ours RGB normalised with mean/std: `fold_input_normalization` rewrites the stem
      conv so the same image gives the same activations (exact but at the stem's
      zero-padded border). Leave it off when the 2D net gets the very same tensor.

    Args:
      model: an ST-ABN or baseline of depth 50, width 1, built with `stride_in_1x1=True`.
      resnet2d: a 2D `keras.applications.ResNet50`; default downloads its ImageNet
        weights (needs network, so only on a user's machine).
      fold_input_normalization: adapt the stem to our RGB mean/std input (see above).
      mean, std: the RGB normalisation our data uses, 0..1 scale (default: ImageNet's).

    Returns:
      The names of our layers that received weights.
    """
    if _stride_in_1x1(model) is False:
        raise InitError(f"keras.applications ResNet50 weights are ResNet v1 (stride in the "
                        f"first 1×1 conv): build {model.name!r} with stride_in_1x1=True")
    if resnet2d is None:
        try:
            resnet2d = keras.applications.ResNet50(weights="imagenet", include_top=False)
        except Exception as e:  # Keras's download raises a bare Exception when offline
            raise InitError(f"cannot get keras.applications' ResNet50 ImageNet weights "
                            f"({_first_line(e)})") from None
    source = {layer.name: layer for layer in resnet2d.layers}
    plan = []
    for layer in model.layers:
        source_name = keras_resnet50_name(layer.name)
        if source_name is None:
            continue
        if source_name not in source:
            raise InitError(f"{layer.name}: no layer {source_name!r} in the 2D ResNet50")
        if isinstance(layer, keras.layers.BatchNormalization):
            conv_bias = source[source_name.replace("_bn", "_conv")].get_weights()[1]
            gamma, beta, moving_mean, var = source[source_name].get_weights()
            plan.append((layer, [gamma, beta, moving_mean - conv_bias, var],
                         KERAS_RESNET50_BN_EPSILON))
        else:
            plan.append((layer, source[source_name].get_weights()[0], None))  # its bias: above
    copied = _assign(model, plan)
    if fold_input_normalization:
        _fold_input_normalization(model, mean, std)
    return copied


# ---- checkpoints ----------------------------------------------------------------------

def copy_checkpoint_weights(model: keras.Model, path: str) -> None:
    """Every weight of `model` from a `.keras` or `.weights.h5` file of the same model."""
    if path.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as e:  # Keras's messages here span many lines
            hint = ("; saved before the temporal attention's frame-mixing conv lost its bias?"
                    if "frame_mix" in str(e) else "")
            raise InitError(f"{path}: cannot be loaded into {model.name!r} "
                            f"({type(e).__name__}: {_first_line(e)}){hint}") from None
        return
    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as e:  # not a zip, not a model, unknown classes, ...
        damage = archive_damage(path)
        if damage:
            raise InitError(f"{path}: {damage}") from None
        raise InitError(f"{path}: not a loadable .keras model "
                        f"({type(e).__name__}: {_first_line(e)})") from None
    theirs = {layer.name: layer for layer in source.layers if layer.weights}
    pairs = []
    for layer in model.layers:
        if not layer.weights:
            continue
        src = theirs.pop(layer.name, None)
        if src is None:
            raise InitError(f"{path}: has no layer {layer.name!r} (a different model?)")
        if getattr(src, "frame_mix_bias", False) and not getattr(layer, "frame_mix_bias", True):
            raise InitError(f"{path}: its {layer.name!r} has the frame-mixing conv bias that "
                            "current models do not (removed to match the reference); "
                            "keras.saving.load_model still loads it as it was")
        for ours, saved in zip(layer.weights, src.weights):
            if tuple(ours.shape) != tuple(saved.shape):
                raise InitError(f"{path}: {saved.path!r} has shape {tuple(saved.shape)}, "
                                f"{model.name!r} needs {tuple(ours.shape)} (a different model?)")
        if len(layer.weights) != len(src.weights):
            raise InitError(f"{path}: layer {layer.name!r} holds {len(src.weights)} weights, "
                            f"{model.name!r} needs {len(layer.weights)} (a different model?)")
        pairs.append((layer, src.get_weights()))
    if theirs:
        raise InitError(f"{path}: layer {sorted(theirs)[0]!r} has no place in "
                        f"{model.name!r} (a different model?)")
    for layer, weights in pairs:
        layer.set_weights(weights)


# ---- shared ---------------------------------------------------------------------------

def _stride_in_1x1(model: keras.Model) -> bool | None:
    """Whether the model's bottlenecks take the stride in the first 1×1 conv (None: no
    bottleneck to tell, e.g. depth 18/34, where the layouts do not differ)."""
    try:
        conv_a = model.get_layer("res3_block1_conv_a")
    except ValueError:
        return None
    if tuple(conv_a.kernel_size[1:]) != (1, 1):
        return None
    return tuple(conv_a.strides) != (1, 1)


def _assign(model: keras.Model, plan: list) -> list[str]:
    """Checks every shape of `plan`, then writes it: kernels inflated, BNs copied."""
    names = [layer.name for layer, _, _ in plan]
    if not names:
        raise InitError(f"no layer of {model.name!r} takes 2D ResNet weights")
    for layer, value, epsilon in plan:
        got = value.shape if epsilon is None else value[0].shape
        expected = tuple(layer.kernel.shape[1:] if epsilon is None else layer.gamma.shape)
        if got != expected:
            raise InitError(f"{layer.name}: 2D weights of shape {got} do not fit {expected} "
                            "(is the model's width_multiplier 1?)")
    for layer, value, epsilon in plan:
        if epsilon is None:
            kt = layer.kernel.shape[0]
            layer.kernel.assign(np.repeat(value[None], kt, axis=0) / kt)
        else:
            gamma, beta, moving_mean, var = value
            # Keep var + eps (what the normalisation divides by) across the epsilons.
            layer.set_weights([gamma, beta, moving_mean, var + (epsilon - layer.epsilon)])
    return names


def _first_line(error: BaseException, limit: int = 240) -> str:
    """An error's message on one line, cut to `limit` characters."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text or type(error).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fold_input_normalization(model, mean, std) -> None:
    """Make the stem see what the 2D net saw: x_caffe = 255·(x·std + mean) − caffe_mean in BGR."""
    if mean is None or std is None:
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
