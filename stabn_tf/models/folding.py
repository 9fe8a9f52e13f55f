"""Inference clones of a model graph with each BatchNormalization folded into its conv.

In inference mode `bn(conv(x))` is one conv with a scaled kernel and a bias. Folding
pays twice: the TFLite converter cannot fold across the reshape `Conv3DAs2D` ends with
(an int8 model would keep a quantized MUL and ADD per conv), and under `mixed_bfloat16`
Keras's BatchNormalization casts every activation to float32 and back, which cost the
full R50 about a third of its bf16 time (2-core AMX Xeon, `tf.function`: 1.29 s → 0.79 s).

`inference_clone(graph)` clones a functional graph (`explanation_model(model)`, or a
baseline model) with the pairs folded, sharing no variables with it; `dtype="float32"`
also rebuilds every layer in float32 (the export graphs), `implementation` rebuilds the
video convs and pools in their 2D or 5D form (`stabn_tf.layers.conv`).
"""

from __future__ import annotations

import collections

import keras
import numpy as np

from stabn_tf.layers.conv import Conv3DAs2D, FrameMaxPool2D


@keras.saving.register_keras_serializable(package="stabn_tf")
class FoldedBatchNorm(keras.layers.Layer):
    """Stands where a BatchNormalization was folded into the conv before it: the
    identity, in the BN's dtype policy. Shapes: `[..., C] -> [..., C]`."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def conv_bn_pairs(model: keras.Model) -> dict[str, str]:
    """{BN layer name: conv layer name} for every channels-last BatchNormalization whose
    input is a `Conv3DAs2D` output that nothing else reads, each layer used once in the
    model's graph: exactly the pairs that fold without changing any other tensor."""
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    readers: collections.Counter[int] = collections.Counter(id(t) for t in model.outputs)
    calls: collections.Counter[int] = collections.Counter()
    for node in nodes:
        calls[id(node.operation)] += 1
        readers.update(id(t) for t in node.input_tensors)
    pairs = {}
    for node in nodes:
        bn = node.operation
        if not isinstance(bn, keras.layers.BatchNormalization) or len(node.input_tensors) != 1:
            continue
        tensor = node.input_tensors[0]
        conv = tensor._keras_history.operation
        if (isinstance(conv, Conv3DAs2D) and readers[id(tensor)] == 1 and calls[id(conv)] == 1
                and calls[id(bn)] == 1 and bn.axis in (-1, 4, [-1], [4])):
            pairs[bn.name] = conv.name
    return pairs


def folded_weights(conv: Conv3DAs2D, bn: keras.layers.BatchNormalization) -> list[np.ndarray]:
    """Kernel and bias of `bn(conv(x))` in inference mode, computed in float64."""
    kernel = np.asarray(conv.kernel, np.float64)
    channels = kernel.shape[-1]
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros(channels)
    mean = np.asarray(bn.moving_mean, np.float64)
    var = np.asarray(bn.moving_variance, np.float64)
    scale = gamma / np.sqrt(var + bn.epsilon)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else np.zeros(channels)
    return [(kernel * scale).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)]


def inference_clone(model: keras.Model, *, fold_batch_norm: bool = True,
                    dtype: str | None = None, implementation: str | None = None) -> keras.Model:
    """A clone of the functional `model` for inference, sharing no variables with it.

    `fold_batch_norm`: each conv → BN pair (`conv_bn_pairs`) becomes one biased conv and a
    `FoldedBatchNorm`. `dtype`: None keeps each layer's dtype policy, "float32" rebuilds
    every layer in float32 (a mixed-precision model then exports in float32).
    `implementation`: "2d" / "3d" rebuilds `Conv3DAs2D` and `FrameMaxPool2D` in that form;
    None keeps theirs.
    """
    pairs = conv_bn_pairs(model) if fold_batch_norm else {}
    folded = set(pairs.values())

    def clone_layer(layer):
        config = layer.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name, dtype=config.get("dtype"))
        if layer.name in folded:
            config["use_bias"] = True
        if implementation is not None and isinstance(layer, (Conv3DAs2D, FrameMaxPool2D)):
            config["implementation"] = implementation
        return type(layer).from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    for new in clone.layers:
        if isinstance(new, keras.layers.InputLayer) or new.name in pairs:
            continue
        old = model.get_layer(new.name)
        if new.name in folded:
            bn = next(model.get_layer(b) for b, c in pairs.items() if c == new.name)
            new.set_weights(folded_weights(old, bn))
            continue
        values = {v.path: v for v in old.weights}
        for variable in new.weights:
            variable.assign(keras.ops.cast(values[variable.path], variable.dtype))
    return clone
