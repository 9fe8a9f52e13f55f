"""Named settings: the paper's ST-ABN and baseline, the demo's small ST-ABN and a tiny one.

The one place these numbers live. `PRESETS` maps a name to its model class, the model's
build arguments (`config`) and the training recipe that goes with it (`recipe`:
`TrainConfig` settings beyond the model's). Everything else reads them from here:
`STABN.from_preset(name, **overrides)` builds the model, `TrainConfig.from_preset` and
`python -m stabn_tf.train --preset=<name>` train it (explicit flags override the preset),
and the flag files in configs/ add only what is theirs (data, output, hardware).

A built-in preset is an architecture and a recipe without trained weights. A preset
*directory* (`model.save_to_preset(directory)`) holds a model with its weights, in the
keras-hub layout: config.json, model.weights.h5, preprocessor.json, metadata.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from types import MappingProxyType

from stabn_tf.errors import StabnError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
PREPROCESSOR_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"

#: Model build arguments that are also `TrainConfig` settings of the same name (K is not:
#: training takes it from the labels file).
TRAIN_MODEL_SETTINGS = ("depth", "width_multiplier", "num_frames", "image_size", "dropout",
                        "attention_head", "fusion_relu")


class PresetError(ValueError, StabnError):
    """An unknown preset name, or a directory that is not a readable preset."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named setting.

    Attributes:
      description: what it is, in a sentence (listed by `describe`).
      class_name: the model class it builds, "STABN" or "ResNet3D".
      config: the model's build arguments.
      recipe: `TrainConfig` settings of the training recipe (optimisation, schedule,
        initialisation), beyond those the model's arguments give.
    """

    description: str
    class_name: str
    config: Mapping
    recipe: Mapping = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    @property
    def model(self) -> str:
        """`TrainConfig.model` / `--model` of this preset: "stabn" or "baseline"."""
        return "stabn" if self.class_name == "STABN" else "baseline"

    def train_settings(self) -> dict:
        """The `TrainConfig` settings this preset fixes (model, architecture, recipe)."""
        model = {k: self.config[k] for k in TRAIN_MODEL_SETTINGS if k in self.config}
        return {"model": self.model, **model, **self.recipe}


def _frozen(**values) -> Mapping:
    return MappingProxyType(values)


# The paper: a SlowOnly 3D ResNet-50 on 32 frames of 224², K = 174 (both Something-Something
# versions), dropout 0.5; SGD with Nesterov momentum 0.9, lr 0.01 per 64 clips, weight decay
# 5e-4, 150 epochs with lr ×0.1 at 75 and 125, gradients clipped at norm 20, ImageNet init.
_PAPER_MODEL = _frozen(num_classes=174, num_frames=32, image_size=224, depth=50,
                       width_multiplier=1.0, dropout=0.5)
_PAPER_ATTENTION = _frozen(attention_head="per_frame", fusion_relu=True)
_PAPER_RECIPE = _frozen(init="imagenet", batch_size=64, epochs=150, schedule="step",
                        decay_epochs=(75, 125), warmup_epochs=0.0, base_lr=0.01,
                        momentum=0.9, nesterov=True, weight_decay=5e-4, clip_norm=20.0)

PRESETS: Mapping[str, Preset] = MappingProxyType({
    "stabn_r50_ssv2": Preset(
        "ST-ABN on a 3D ResNet-50, 32 frames of 224², the 174 classes of "
        "Something-Something V2, with the paper's training recipe.",
        "STABN", _frozen(**_PAPER_MODEL, **_PAPER_ATTENTION), _PAPER_RECIPE),
    "stabn_r50_ssv1": Preset(
        "ST-ABN on a 3D ResNet-50, 32 frames of 224², the 174 classes of "
        "Something-Something V1, with the paper's training recipe.",
        "STABN", _frozen(**_PAPER_MODEL, **_PAPER_ATTENTION), _PAPER_RECIPE),
    "baseline_r50_ssv2": Preset(
        "The paper's baseline: the same 3D ResNet-50 without the attention branch, on "
        "Something-Something V2, with the same recipe.",
        "ResNet3D", _PAPER_MODEL, _PAPER_RECIPE),
    # Sized for a 2-core CPU: the full architecture scaled down; from scratch on a small
    # dataset, so a higher lr than the paper's, cosine with a one-epoch warm-up.
    "stabn_demo": Preset(
        "The demo's ST-ABN: a 3D ResNet-18 at quarter width on 8 frames of 64², 12 classes "
        "(the synthetic dataset), trained from scratch in minutes on a CPU.",
        "STABN",
        _frozen(num_classes=12, num_frames=8, image_size=64, depth=18, width_multiplier=0.25,
                dropout=0.2, **_PAPER_ATTENTION),
        _frozen(init="none", batch_size=16, epochs=15, schedule="cosine", warmup_epochs=1.0,
                base_lr=0.2)),
    "stabn_tiny": Preset(
        "A tiny ST-ABN (3D ResNet-18 at 1/8 width, 4 frames of 32², 12 classes) that "
        "builds and runs in a second: for smoke tests and examples, not for accuracy.",
        "STABN",
        _frozen(num_classes=12, num_frames=4, image_size=32, depth=18, width_multiplier=0.125,
                dropout=0.5, **_PAPER_ATTENTION),
        _frozen(init="none", batch_size=4)),
})


def known() -> str:
    """The built-in names, for error messages."""
    return ", ".join(PRESETS)


def get(name: str) -> Preset:
    """The built-in preset `name`; `PresetError` listing the known ones otherwise."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; known presets: {known()}")
    return PRESETS[name]


def describe() -> str:
    """One line per built-in preset: its name and description."""
    return "\n".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())


def read_json(directory: str | os.PathLike, file_name: str) -> dict:
    """A JSON object of a preset directory, or `PresetError` in one line naming the file."""
    path = os.path.join(os.fspath(directory), file_name)
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        raise PresetError(f"{directory}: not a preset directory (no {file_name}); a preset is "
                          f"a directory written by `model.save_to_preset` or one of: "
                          f"{known()}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PresetError(f"{path}: unreadable ({str(e).splitlines()[0]}); known presets: "
                          f"{known()}") from None
    if not isinstance(value, dict):
        raise PresetError(f"{path}: not a JSON object; known presets: {known()}")
    return value
