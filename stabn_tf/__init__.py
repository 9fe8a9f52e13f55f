"""stabn_tf: ST-ABN (Spatio-Temporal Attention Branch Network) in TensorFlow / Keras 3."""

# Imported for their registered Keras objects too: `.keras` checkpoints of training runs
# name the recipe's loss and schedule.
from stabn_tf.models.stabn import (
    attention_inversion,
    build_baseline,
    build_stabn,
    explanation_model,
    set_attention_inversion,
)
from stabn_tf.training import recipe

__version__ = "0.1.0"

__all__ = [
    "attention_inversion",
    "build_baseline",
    "build_stabn",
    "explanation_model",
    "recipe",
    "set_attention_inversion",
]
