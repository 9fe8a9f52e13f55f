"""Model size and compute: trainable parameters and FLOPs per clip.

FLOPs are read off the traced TF graph, not re-derived from the architecture, so
they count exactly what runs: every Conv2D and MatMul (2 FLOPs per multiply-add).
Normalisation, activations, pooling and additions are left out, as is customary.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def count_trainable_params(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def count_flops(model: keras.Model, batch_size: int = 1) -> int:
    """Multiply-add FLOPs (×2) of one forward pass at the model's fixed input shape."""
    spec = tf.TensorSpec((batch_size, *model.input.shape[1:]), model.input.dtype)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():  # Keras layers inline: no nested functions
        if op.type == "Conv2D":
            kh, kw, cin, _ = op.inputs[1].shape
            total += 2 * int(np.prod(op.outputs[0].shape)) * kh * kw * cin
        elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a = op.inputs[0].shape
            transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            inner = a[-2] if transposed else a[-1]
            total += 2 * int(np.prod(op.outputs[0].shape)) * inner
        elif op.type in ("Conv3D", "DepthwiseConv2dNative"):
            raise NotImplementedError(f"FLOP count for {op.type} is not implemented.")
    return total

