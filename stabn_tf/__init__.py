"""stabn_tf: ST-ABN (Spatio-Temporal Attention Branch Network) in TensorFlow / Keras 3."""

# First, before anything imports TensorFlow: without its C++ start-up lines (see `quiet`).
from stabn_tf import quiet

quiet.import_tensorflow()

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

# Imported for its registered Keras objects: `.keras` checkpoints of training runs name
# the recipe's loss and learning-rate schedule.
from stabn_tf.training import recipe

__version__ = "0.1.0"

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
