"""stabn_tf: ST-ABN (Spatio-Temporal Attention Branch Network) in TensorFlow / Keras 3.

`import stabn_tf` imports no TensorFlow by itself, so the TensorFlow-free parts (the REST
client `stabn_tf.serving_client`, `stabn_tf.errors`, `stabn_tf.cli`) start fast and run
where TensorFlow is not installed. The names below load the models on first use, which
also registers every Keras object that this project's `.keras` files name. So that
`keras.saving.load_model(path)` finds them after `import stabn_tf` as it always did, they
are registered at once where Keras is already imported, and otherwise as soon as anything
imports Keras. Whichever import first loads TensorFlow does so
without its C++ start-up lines (`stabn_tf.quiet`).
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

from stabn_tf import quiet
from stabn_tf.import_hooks import around_import

quiet.catch_tensorflow_startup()

if TYPE_CHECKING:
    from stabn_tf.data.preprocessor import ClipPreprocessor
    from stabn_tf.models.stabn import (
        STABN,
        ResNet3D,
        VideoClassifier,
        attention_inversion,
        build_baseline,
        build_stabn,
        explanation_model,
        load_model,
        set_attention_inversion,
    )
    from stabn_tf.training import recipe

__version__ = "0.1.0"

#: The public names, by the module that defines them.
_API = {
    "STABN": "stabn_tf.models.stabn",
    "ClipPreprocessor": "stabn_tf.data.preprocessor",
    "ResNet3D": "stabn_tf.models.stabn",
    "VideoClassifier": "stabn_tf.models.stabn",
    "attention_inversion": "stabn_tf.models.stabn",
    "build_baseline": "stabn_tf.models.stabn",
    "build_stabn": "stabn_tf.models.stabn",
    "explanation_model": "stabn_tf.models.stabn",
    "load_model": "stabn_tf.models.stabn",
    # Its registered Keras objects: `.keras` checkpoints of training runs name the recipe's
    # loss and learning-rate schedule.
    "recipe": "stabn_tf.training",
    "set_attention_inversion": "stabn_tf.models.stabn",
}

__all__ = [
    "STABN",
    "ClipPreprocessor",
    "ResNet3D",
    "VideoClassifier",
    "attention_inversion",
    "build_baseline",
    "build_stabn",
    "explanation_model",
    "load_model",
    "recipe",
    "set_attention_inversion",
]


def _load_models() -> None:
    """Imports the model and recipe modules (registering their Keras objects)."""
    for module in ("stabn_tf.data.preprocessor", "stabn_tf.models.stabn",
                   "stabn_tf.training.recipe"):
        importlib.import_module(module)


def _importing_stabn_tf() -> bool:
    """Whether one of this package's modules is being executed (it imported Keras): its
    own imports then register what it needs, and loading the models now could meet it
    half-initialised."""
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items())
               if name.startswith("stabn_tf.") and module is not None)


def _then_load_models(load) -> None:
    """Keras loads, then the models register in it (unless one of ours imports Keras)."""
    load()
    if not _importing_stabn_tf():
        _load_models()


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'stabn_tf' has no attribute {name!r}")
    _load_models()
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


if sys.modules.get("keras") is not None or sys.modules.get("tensorflow") is not None:
    _load_models()
else:
    around_import("keras", _then_load_models)
