"""A model's compute precision for inference: the same weights, rebuilt under another
Keras dtype policy.

A `.keras` checkpoint loads in float32 (its config holds build arguments, not dtypes).
`with_precision(model, "bfloat16")` rebuilds it from its own config under
`mixed_bfloat16` and copies the weights (float32 variables either way, so nothing is
retrained or rounded at rest): convolutions and matmuls compute in bf16, BatchNorm and
the layers the builders mark float32 (both classifiers, Ms, Mt) keep float32, so logits
and attention maps come out float32. The global dtype policy is set only while the model
is built (Keras keeps it per thread) and restored afterwards.

`inference_graph(model)` is the graph inference runs; in bf16 each conv → BN pair is
folded into one conv (`stabn_tf.models.folding`), since Keras's BatchNormalization would
cast every bf16 activation to float32 and back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras

from stabn_tf.models.folding import inference_clone
from stabn_tf.models.stabn import VideoClassifier, explanation_model
from stabn_tf.precision import POLICIES, PRECISIONS

#: What inference computes in: the precisions of `--precision` (float16 is training's only).
INFERENCE_PRECISIONS = tuple(p for p in PRECISIONS if p in POLICIES)


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Layers made inside the block get policy `name`; the previous one comes back after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def model_precision(model: keras.Model) -> str:
    """The precision a model computes in: "bfloat16", "float16" or "float32" (the
    narrowest compute dtype among its layers)."""
    dtypes = {layer.dtype_policy.compute_dtype for layer in model.layers}
    return next((d for d in ("bfloat16", "float16") if d in dtypes), "float32")


def with_precision(model: VideoClassifier, precision: str) -> VideoClassifier:
    """`model` computing in `precision` ("float32" or "bfloat16"): the model itself when it
    already does, else a copy built from its config under that policy, with its weights.
    The copy shares no variables with `model`."""
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"`precision` must be one of {INFERENCE_PRECISIONS}, got "
                         f"{precision!r}.")
    if model_precision(model) == precision:
        return model
    with dtype_policy(POLICIES[precision]):
        copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def inference_graph(model: VideoClassifier, fold: bool = True) -> keras.Model:
    """What predict, explain, evaluate and the exports run: `explanation_model(model)`
    for ST-ABN (Ms and Mt as outputs), the model itself for the baseline. With `fold`, a
    bf16 model's graph is a clone with each conv → BN pair folded (same outputs to bf16
    rounding, about 1.6× faster on an AMX CPU); the clone holds the weights as they are
    now, so a live model in training takes `fold=False` (its own layers)."""
    graph = explanation_model(model) if model.has_attention else model
    if fold and model_precision(model) == "bfloat16":
        return inference_clone(graph)
    return graph
