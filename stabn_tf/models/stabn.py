"""ST-ABN and its baseline (the same 3D ResNet without the branches), as models that know
themselves.

`STABN` and `ResNet3D` are registered Functional subclasses (the keras-hub pattern): the
constructor builds the graph, and `get_config` holds exactly the build arguments —
class names, frames, image size, depth, width, attention options — and the model's
`ClipPreprocessor` (how to prepare its clips, made once at build and saved as a Keras
object, as keras-hub's task models save theirs), so a `.keras` file loads back as the same
class with `model.class_names`, `model.num_frames`, `model.image_size` and
`model.preprocessor` set. Every consumer feeds the model through `model.preprocessor`;
nothing downstream reads shapes or layer names to find out what a model is.

Outputs are the two logits the loss uses, `{"perception", "attention"}` (the baseline:
`{"perception"}`), so `model.fit` needs labels for exactly those. The explanation
(`spatial_attention` Ms `[B, T, h, w, 1]`, `temporal_attention` Mt `[B, T]`) comes from
`explanation_model(model)`, a sibling model sharing every layer and weight.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import zipfile
from collections.abc import Iterator, Sequence

import keras

from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.disk import atomic_path, write_atomic
from stabn_tf.errors import StabnError
from stabn_tf.layers.attention import (
    INVERSIONS,
    AttentionFusion,
    FrameAveragePool,
    SpatialAttention,
    TemporalAttention,
)
from stabn_tf.layers.conv import Conv3DAs2D
from stabn_tf.layers.norm import batch_norm
from stabn_tf.models import presets
from stabn_tf.models.backbone import (
    SPATIAL_REDUCTION,
    BackboneConfig,
    feature_extractor,
    resnet_spec,
    stage,
)
from stabn_tf.models.presets import PresetError
from stabn_tf.outputs import ATTENTION, PERCEPTION, SPATIAL_ATTENTION, TEMPORAL_ATTENTION

FUSION = "attention_fusion"
ATTENTION_HEADS = ("per_frame", "gap")


class LegacyCheckpointError(ValueError, StabnError):
    """A `.keras` file saved before models carried their config (a plain Functional)."""


class ForeignModelError(ValueError, StabnError):
    """A `.keras` file holding some other Keras model, not an ST-ABN or its baseline."""

#: Layers every ST-ABN / baseline graph has had under these names, before and since models
#: carried their config: what tells an old checkpoint of ours from any other Keras model.
_OUR_LAYERS = ("stem_conv_a", "res5_block1_out", PERCEPTION)


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
    if class_names is None:
        return [f"class {i}" for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for `num_classes={num_classes}`.")
    return names


def _image_size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(not isinstance(s, int) or s < SPATIAL_REDUCTION
                             or s % SPATIAL_REDUCTION for s in size):
        raise ValueError(
            f"`image_size` must be an int or (height, width), each a positive multiple of "
            f"{SPATIAL_REDUCTION} (the network's spatial reduction), got {image_size!r}.")
    return size


def _preprocessor(num_frames: int, image_size, preprocessor) -> ClipPreprocessor | None:
    """The model's clip preparation: `preprocessor` checked against the clip shape, or a
    new one. A non-square model (`image_size=(h, w)`, h ≠ w) has none: the centre crop
    is square, so such a model is fed clips its user prepares."""
    height, width = _image_size(image_size)
    if preprocessor is None:
        return ClipPreprocessor(num_frames, height) if height == width else None
    if not isinstance(preprocessor, ClipPreprocessor):
        raise ValueError(f"`preprocessor` must be a ClipPreprocessor, got "
                         f"{type(preprocessor).__name__}.")
    made = (preprocessor.num_frames, preprocessor.image_size, preprocessor.image_size)
    if made != (num_frames, height, width):
        raise ValueError(f"the preprocessor makes {made[0]} frames of {made[1]}×{made[2]}; "
                         f"the model takes {num_frames} frames of {height}×{width}.")
    return preprocessor


def _classifier(x, num_classes: int, dropout: float, name: str):
    """GAP → dropout → dense K, in float32 so logits stay exact under mixed precision."""
    x = keras.layers.GlobalAveragePooling3D(name=f"{name}_pool")(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.layers.Dense(num_classes, name=name, dtype="float32")(x)


class VideoClassifier(keras.Model):
    """What ST-ABN and its baseline share: a 3D ResNet video classifier that knows its
    classes, clip shape and backbone. Not built directly: use `STABN` or `ResNet3D`."""

    has_attention = False

    def __init__(self, *, inputs, outputs, num_classes: int, class_names, num_frames: int,
                 image_size, depth: int, width_multiplier: float, dropout: float,
                 synchronized_bn: bool, stride_in_1x1: bool,
                 preprocessor: ClipPreprocessor | None = None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._preprocessor = _preprocessor(num_frames, image_size, preprocessor)
        self.class_names = _class_names(num_classes, class_names)
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.image_size = image_size
        self.depth = depth
        self.width_multiplier = width_multiplier
        self.dropout = dropout
        self.synchronized_bn = synchronized_bn
        self.stride_in_1x1 = stride_in_1x1

    @staticmethod
    def _inputs(num_classes, num_frames, image_size, dropout, depth, width_multiplier,
                stride_in_1x1, synchronized_bn):
        """Checks the shared arguments; returns (clips input, backbone config)."""
        _class_names(num_classes, None)
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be an int >= 1, got {num_frames!r}.")
        height, width = _image_size(image_size)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        resnet_spec(depth)
        cfg = BackboneConfig(depth, width_multiplier, stride_in_1x1, synchronized_bn)
        return keras.Input((num_frames, height, width, 3), name="clips"), cfg

    @property
    def preprocessor(self) -> ClipPreprocessor:
        """How to turn video frames into this model's input (evaluation-style); its
        `num_frames` and `image_size` are the clip shape every consumer uses."""
        if self._preprocessor is None:
            height, width = _image_size(self.image_size)
            raise ValueError(f"model {self.name!r} takes {height}×{width} frames; clip "
                             "preparation makes square clips")
        return self._preprocessor

    @property
    def backbone_name(self) -> str:
        """"3D ResNet-50", "3D ResNet-18 ×0.25": how tables name the network."""
        name = f"3D ResNet-{self.depth}"
        return name if self.width_multiplier == 1.0 else f"{name} ×{self.width_multiplier:g}"

    def get_config(self) -> dict:
        """The build arguments. The clip is stored once: a square model's `num_frames` and
        `image_size` are its preprocessor's (`from_config` takes them from there); only a
        non-square model, which has no preprocessor, states them itself."""
        size = self.image_size
        config = {"name": self.name, "trainable": self.trainable,
                  "num_classes": self.num_classes, "class_names": list(self.class_names),
                  "num_frames": self.num_frames,
                  "image_size": size if isinstance(size, int) else list(size),
                  "depth": self.depth, "width_multiplier": self.width_multiplier,
                  "dropout": self.dropout, "synchronized_bn": self.synchronized_bn,
                  "stride_in_1x1": self.stride_in_1x1,
                  "preprocessor": keras.saving.serialize_keras_object(self._preprocessor)}
        if self._preprocessor is not None:
            del config["num_frames"], config["image_size"]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Files saved before models stored their preprocessor get the one their clip
        # shape gives, which is what such a model was always fed; files saved before the
        # clip was stored once state it twice, and both must agree (`_preprocessor`).
        config = dict(config)
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.saving.deserialize_keras_object(
                config["preprocessor"], custom_objects=custom_objects)
        return cls(**_with_clip(config, config.get("preprocessor")))

    @classmethod
    def from_preset(cls, preset: str | os.PathLike, load_weights: bool = True,
                    **overrides) -> VideoClassifier:
        """A model from a built-in preset's name (`stabn_tf.models.presets.PRESETS`) or a
        directory written by `save_to_preset`, with `overrides` of its build arguments.

        A built-in preset gives its architecture with fresh weights; `STABN.from_preset`
        and `ResNet3D.from_preset` build their own class on the preset's backbone and clip
        settings (`ResNet3D.from_preset("stabn_r50_ssv2")` is that model's baseline), and
        `VideoClassifier.from_preset` the preset's class. A directory gives the saved model
        and, with `load_weights`, its weights (overrides that change a weight's shape, such
        as `num_classes`, then fail). Anything else is a `PresetError` in one line that
        lists the known presets.
        """
        if isinstance(preset, str) and preset in presets.PRESETS:
            known = presets.PRESETS[preset]
            model_class = _PRESET_CLASSES[known.class_name]
            if cls is not VideoClassifier:
                model_class = cls
            accepted = _arguments(model_class)
            config = {k: v for k, v in known.config.items() if k in accepted}
            return _build(model_class, config, overrides, preset)
        if not os.path.isdir(preset):
            raise PresetError(f"{os.fspath(preset)!r} is neither a known preset nor a preset "
                              f"directory; known presets: {presets.known()}")
        saved = presets.read_json(preset, presets.CONFIG_FILE)
        model_class = _PRESET_CLASSES.get(saved.get("class_name"))
        config = saved.get("config")
        if model_class is None or not isinstance(config, dict):
            raise PresetError(f"{preset}: its {presets.CONFIG_FILE} describes no ST-ABN or "
                              f"baseline model (class {saved.get('class_name')!r}); known "
                              f"presets: {presets.known()}")
        if not issubclass(model_class, cls):
            raise PresetError(f"{preset}: holds a {model_class.__name__} model, not a "
                              f"{cls.__name__}; load it with {model_class.__name__}."
                              "from_preset or VideoClassifier.from_preset")
        if "num_classes" in overrides and "class_names" not in overrides:
            config = {k: v for k, v in config.items() if k != "class_names"}
        saved_preprocessor = _saved_preprocessor(preset)
        config = _with_clip({k: v for k, v in config.items() if k != "preprocessor"},
                            saved_preprocessor)
        if not {"num_frames", "image_size", "preprocessor"} & set(overrides):
            config["preprocessor"] = saved_preprocessor
        model = _build(model_class, config, overrides, preset)
        if load_weights:
            weights = os.path.join(os.fspath(preset), presets.WEIGHTS_FILE)
            if not os.path.isfile(weights):
                raise PresetError(f"{preset}: not a complete preset directory (no "
                                  f"{presets.WEIGHTS_FILE}); known presets: {presets.known()}")
            try:
                model.load_weights(weights)
            except (ValueError, OSError, KeyError) as e:
                changed = f" with the overrides {sorted(overrides)}" if overrides else ""
                raise PresetError(f"{weights}: cannot load its weights into the model"
                                  f"{changed} ({str(e).splitlines()[0]})") from None
        return model

    def save_to_preset(self, preset_dir: str | os.PathLike) -> None:
        """Writes the model as a preset directory that `from_preset(preset_dir)` loads
        back with identical outputs (the keras-hub layout: config.json, model.weights.h5,
        preprocessor.json, metadata.json). Each file is written atomically, config.json
        last, so an interrupted save is never taken for a preset."""
        from stabn_tf import __version__  # the package imports this module

        os.makedirs(preset_dir, exist_ok=True)

        def path(name: str) -> str:
            return os.path.join(os.fspath(preset_dir), name)

        def write_json(name: str, value: dict) -> None:
            write_atomic(path(name), json.dumps(value, indent=2) + "\n")

        parameters = self.count_params()
        with atomic_path(path(presets.WEIGHTS_FILE),
                         expected_bytes=4 * parameters + (256 << 10)) as temporary:
            self.save_weights(temporary)
        write_json(presets.PREPROCESSOR_FILE,
                   keras.saving.serialize_keras_object(self.preprocessor))
        write_json(presets.METADATA_FILE, {"keras_version": keras.__version__,
                                           "stabn_tf_version": __version__,
                                           "parameter_count": parameters})
        write_json(presets.CONFIG_FILE, {
            "module": type(self).__module__, "class_name": type(self).__name__,
            "config": {k: v for k, v in self.get_config().items() if k != "preprocessor"},
            "registered_name": keras.saving.get_registered_name(type(self))})


@keras.saving.register_keras_serializable(package="stabn_tf")
class ResNet3D(VideoClassifier):
    """The baseline: stem + res2..res5 + GAP + dropout + dense, no branches.

    `[B, T, H, W, 3]` (normalised RGB) → `{"perception": [B, K]}` logits, named like
    ST-ABN's prediction so the same training and evaluation code serves both. Arguments
    mean what they mean for `STABN`.
    """

    def __init__(self, num_classes: int = 174, num_frames: int = 32,
                 image_size: int | tuple[int, int] = 224, depth: int = 50,
                 width_multiplier: float = 1.0, dropout: float = 0.5,
                 synchronized_bn: bool = False, stride_in_1x1: bool = False,
                 class_names: Sequence[str] | None = None,
                 preprocessor: ClipPreprocessor | None = None, name: str = "baseline",
                 **kwargs):
        clips, cfg = self._inputs(num_classes, num_frames, image_size, dropout, depth,
                                  width_multiplier, stride_in_1x1, synchronized_bn)
        x = stage(feature_extractor(clips, cfg), 3, cfg)
        logits = _classifier(x, num_classes, dropout, PERCEPTION)
        super().__init__(
            inputs=clips, outputs={PERCEPTION: logits}, num_classes=num_classes,
            class_names=class_names, num_frames=num_frames, image_size=image_size,
            depth=depth, width_multiplier=width_multiplier, dropout=dropout,
            synchronized_bn=synchronized_bn, stride_in_1x1=stride_in_1x1,
            preprocessor=preprocessor, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="stabn_tf")
class STABN(VideoClassifier):
    """ST-ABN on a SlowOnly 3D ResNet (the architecture is described in docs/architecture.md).

    `[B, T, H, W, 3]` (normalised RGB) → `{"perception": [B, K], "attention": [B, K]}`
    float32 logits; `explanation_model(model)` adds the attention maps.

    Args:
      num_classes: K.
      num_frames: T, fixed at build (the temporal attention treats frames as channels).
      image_size: input height and width (int or pair), multiples of 32.
      depth: 18, 34, 50 or 101.
      width_multiplier: scales every channel count (tiny configs for tests and demos).
      dropout: before both classifiers.
      attention_head: "per_frame" keeps per-frame class scores, flattened T·K, before
        the attention branch's dense layer (the reference); "gap" averages them over T.
      fusion_relu: ReLU after the fusion's BN (the paper's code has it).
      inversion: attention inversion at build time; change later with
        `set_attention_inversion` (the current setting is saved with the model).
      synchronized_bn: synchronise BN statistics across replicas.
      stride_in_1x1: put each bottleneck's spatial stride in its first 1×1 conv, the
        layout of `keras.applications.ResNet50` (exact inflation of those weights); the
        default keeps it in the 1×3×3 conv like the reference and torchvision.
      class_names: K names (default "class 0", ...); saved with the model.
      frame_mix_bias: a bias on the temporal attention's frames-as-channels 1×1 conv.
        The reference has none; True only rebuilds checkpoints from before it was removed.
      preprocessor: the `ClipPreprocessor` saved with the model (default: the one for
        `num_frames` × `image_size`²; none for a non-square `image_size`, whose
        `model.preprocessor` then says so in one line).
    """

    has_attention = True

    def __init__(self, num_classes: int = 174, num_frames: int = 32,
                 image_size: int | tuple[int, int] = 224, depth: int = 50,
                 width_multiplier: float = 1.0, dropout: float = 0.5,
                 attention_head: str = "per_frame", fusion_relu: bool = True,
                 inversion: str = "none", synchronized_bn: bool = False,
                 stride_in_1x1: bool = False, class_names: Sequence[str] | None = None,
                 frame_mix_bias: bool = False, preprocessor: ClipPreprocessor | None = None,
                 name: str = "stabn", **kwargs):
        if attention_head not in ATTENTION_HEADS:
            raise ValueError(f"`attention_head` must be one of {ATTENTION_HEADS}, got "
                             f"{attention_head!r}.")
        if inversion not in INVERSIONS:
            raise ValueError(f"`inversion` must be one of {INVERSIONS}, got {inversion!r}.")
        clips, cfg = self._inputs(num_classes, num_frames, image_size, dropout, depth,
                                  width_multiplier, stride_in_1x1, synchronized_bn)
        sync = synchronized_bn
        features = feature_extractor(clips, cfg)  # f: [B, T, H/16, W/16, C4]

        # Attention branch: res5 copy without spatial stride → K class maps per frame.
        a = stage(features, 3, cfg, stride=1, prefix="att_")
        a = batch_norm("att_bn_in", synchronized=sync)(a)
        a = Conv3DAs2D(num_classes, 1, name="att_class_conv")(a)
        a = batch_norm("att_class_bn", synchronized=sync)(a)
        class_maps = keras.layers.ReLU(name="att_class_maps")(a)  # [B, T, h, w, K]

        scores = Conv3DAs2D(num_classes, 1, name="att_score_conv")(class_maps)
        scores = FrameAveragePool(name="att_score_pool")(scores)  # [B, T, K]
        if attention_head == "per_frame":
            scores = keras.layers.Flatten(name="att_score_flatten")(scores)  # [B, T·K]
        else:
            scores = keras.layers.GlobalAveragePooling1D(name="att_score_gap")(scores)
        scores = keras.layers.Dropout(dropout, name="att_dropout")(scores)
        attention_logits = keras.layers.Dense(num_classes, name=ATTENTION,
                                              dtype="float32")(scores)

        spatial = SpatialAttention(synchronized_bn=sync, name=SPATIAL_ATTENTION)(class_maps)
        temporal = TemporalAttention(synchronized_bn=sync, frame_mix_bias=frame_mix_bias,
                                     name=TEMPORAL_ATTENTION)(class_maps)
        fused = AttentionFusion(relu=fusion_relu, inversion=inversion, synchronized_bn=sync,
                                name=FUSION)([features, spatial, temporal])

        # Perception branch: res5 on the attended features → prediction.
        perception_logits = _classifier(stage(fused, 3, cfg), num_classes, dropout, PERCEPTION)
        super().__init__(
            inputs=clips, outputs={PERCEPTION: perception_logits, ATTENTION: attention_logits},
            num_classes=num_classes, class_names=class_names, num_frames=num_frames,
            image_size=image_size, depth=depth, width_multiplier=width_multiplier,
            dropout=dropout, synchronized_bn=synchronized_bn, stride_in_1x1=stride_in_1x1,
            preprocessor=preprocessor, name=name, **kwargs)
        self.attention_head = attention_head
        self.fusion_relu = fusion_relu
        self.frame_mix_bias = frame_mix_bias

    def get_config(self) -> dict:
        return {**super().get_config(), "attention_head": self.attention_head,
                "fusion_relu": self.fusion_relu,
                "inversion": self.get_layer(FUSION).inversion,
                "frame_mix_bias": self.frame_mix_bias}


_PRESET_CLASSES: dict[str, type[VideoClassifier]] = {"STABN": STABN, "ResNet3D": ResNet3D}


def _arguments(model_class: type[VideoClassifier]) -> set[str]:
    """The build arguments `model_class` takes by name."""
    return {p.name for p in inspect.signature(model_class.__init__).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"}


def _saved_preprocessor(preset_dir: str | os.PathLike) -> ClipPreprocessor | None:
    """The clip preparation of a preset directory: its preprocessor.json (keras-hub's
    layout keeps it beside the model's config); None without one (the model then makes
    the one its clip shape gives, as it does when an override changes that shape)."""
    if not os.path.isfile(os.path.join(os.fspath(preset_dir), presets.PREPROCESSOR_FILE)):
        return None
    saved = presets.read_json(preset_dir, presets.PREPROCESSOR_FILE)
    try:
        return keras.saving.deserialize_keras_object(saved)
    except (TypeError, ValueError) as e:
        raise PresetError(f"{preset_dir}: its {presets.PREPROCESSOR_FILE} is no clip "
                          f"preprocessor ({str(e).splitlines()[0]})") from None


def _with_clip(config: dict, preprocessor) -> dict:
    """`config` with `num_frames` and `image_size` from `preprocessor` (a ClipPreprocessor
    or None) where it does not state them itself."""
    if isinstance(preprocessor, ClipPreprocessor):
        return {"num_frames": preprocessor.num_frames, "image_size": preprocessor.image_size,
                **config}
    return config


def _build(model_class: type[VideoClassifier], config: dict, overrides: dict,
           preset) -> VideoClassifier:
    unknown = sorted(set(overrides) - _arguments(model_class))
    if unknown:
        raise PresetError(f"{model_class.__name__} has no argument {', '.join(unknown)} "
                          f"(overrides of preset {os.fspath(preset)!r})")
    return model_class(**{**config, **overrides})


def _builder(cls: type[VideoClassifier], name: str, summary: str):
    """A function taking exactly `cls`'s arguments (one definition of them: `cls.__init__`)."""
    def build(*args, **kwargs) -> VideoClassifier:
        return cls(*args, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = summary
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    build.__signature__ = inspect.Signature(parameters, return_annotation=cls.__name__)
    return build


build_baseline = _builder(ResNet3D, "build_baseline", """The 3D ResNet baseline (`ResNet3D`),
    built with `ResNet3D`'s arguments. Defaults: the paper's (`baseline_r50_ssv2`).""")
build_stabn = _builder(STABN, "build_stabn", """ST-ABN (`STABN`), built with `STABN`'s
    arguments (see its docstring). Defaults: the paper's full model (`stabn_r50_ssv2`),
    R50, K=174, 32×224×224.""")


def is_legacy_checkpoint(model: keras.Model) -> bool:
    """Whether `model` is an ST-ABN / baseline saved before models carried their config
    (a plain Functional with our layer names), which `stabn_tf.models.migrate` converts."""
    names = {layer.name for layer in getattr(model, "layers", [])}
    return isinstance(model, keras.Model) and not isinstance(model, VideoClassifier) \
        and all(name in names for name in _OUR_LAYERS)


def archive_damage(path) -> str | None:
    """What makes `path` unreadable as a `.keras` file judged from its zip archive alone
    (not a zip, truncated, a member failing its checksum), or None: Keras itself says
    "File not found" for a file that is there but damaged."""
    if not zipfile.is_zipfile(path):
        return ("not a .keras model file (a .keras file is a zip archive; this one is not: "
                "corrupt or truncated?)")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        return f"a corrupt .keras file ({e})"
    return f"a corrupt .keras file (its {bad!r} fails its checksum)" if bad else None


def load_model(path, compile: bool = False) -> VideoClassifier:
    """`keras.saving.load_model` for `.keras` files of this project, refusing with one
    line files from before models carried their config (`LegacyCheckpointError`, with
    the migration command) and any other Keras model (`ForeignModelError`)."""
    model = keras.saving.load_model(path, compile=compile)
    if is_legacy_checkpoint(model):
        raise LegacyCheckpointError(
            f"{path}: an ST-ABN/baseline model saved before stabn_tf models carried their "
            "config; convert it once with `python -m stabn_tf.models.migrate "
            f"{path} --labels=<labels.txt>`")
    if not isinstance(model, VideoClassifier):
        raise ForeignModelError(
            f"{path}: a Keras model ({type(model).__name__} {model.name!r}) that is not an "
            "ST-ABN or baseline model; expected a checkpoint written by stabn_tf "
            "(`python -m stabn_tf.train`, or `stabn_tf.build_stabn(...).save(...)`)")
    return model


def explanation_model(model: keras.Model) -> keras.Model:
    """A sibling of an ST-ABN model that also outputs Ms and Mt; shares all weights.

    Outputs `{"perception": [B, K], "attention": [B, K], "spatial_attention":
    [B, T, h, w, 1], "temporal_attention": [B, T]}`.
    """
    if not getattr(model, "has_attention", False):
        raise ValueError(f"model {model.name!r} has no attention branch: explanations of "
                         "this kind need an ST-ABN model (`STABN`)")
    outputs = {key: model.get_layer(key).output for key in
               (PERCEPTION, ATTENTION, SPATIAL_ATTENTION, TEMPORAL_ATTENTION)}
    return keras.Model(model.input, outputs, name=f"{model.name}_explained")


def set_attention_inversion(mode: str, *models: keras.Model) -> None:
    """Switch attention inversion ("none" | "spatial" | "temporal" | "both") in place.

    No weight changes. Cached `fit`/`evaluate`/`predict` graphs of the given models are
    dropped so the next call traces the new mode; graphs traced elsewhere (your own
    `tf.function`) need retracing.
    """
    if mode not in INVERSIONS:
        raise ValueError(f"inversion `mode` must be one of {INVERSIONS}, got {mode!r}.")
    for model in models:
        fusions = [layer for layer in model.layers if isinstance(layer, AttentionFusion)]
        if not fusions:
            raise ValueError(f"model {model.name!r} has no AttentionFusion layer.")
        for layer in fusions:
            layer.inversion = mode
        model.train_function = model.test_function = model.predict_function = None


def inversion_of(model: keras.Model) -> str:
    """The attention inversion `model` runs with now ("none" unless set)."""
    for layer in model.layers:
        if isinstance(layer, AttentionFusion):
            return layer.inversion
    raise ValueError(f"model {model.name!r} has no AttentionFusion layer.")


@contextlib.contextmanager
def attention_inversion(mode: str, *models: keras.Model) -> Iterator[None]:
    """`with attention_inversion("both", model): model.evaluate(...)`; restores the mode."""
    previous = [inversion_of(m) for m in models]
    set_attention_inversion(mode, *models)
    try:
        yield
    finally:
        for m, old in zip(models, previous):
            set_attention_inversion(old, m)
