"""Batch normalisation with the reference's settings, in one place."""

from __future__ import annotations

import keras

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here; eps 1e-5), which the
# reference trained with.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(name: str | None = None, *, synchronized: bool = False,
               dtype=None) -> keras.layers.BatchNormalization:
    """A channels-last BatchNormalization; `synchronized` averages statistics across replicas."""
    return keras.layers.BatchNormalization(
        axis=-1,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        synchronized=synchronized,
        name=name,
        dtype=dtype,
    )
