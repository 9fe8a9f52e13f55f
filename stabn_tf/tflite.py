"""TFLite conversion of ST-ABN with builtin ops only (no CONV_3D, no custom or flex ops)."""

from __future__ import annotations

import collections
import tempfile

import keras
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

FORBIDDEN_OPS = ("CONV_3D", "MAX_POOL_3D", "AVERAGE_POOL_3D", "CUSTOM", "FLEX")


def convert_to_tflite(model: keras.Model, batch_size: int = 1) -> bytes:
    """Float32 TFLite flatbuffer of `model` at its fixed input shape, builtin ops only.

    The input is named `clips`; outputs keep the model's output names. Pass
    `explanation_model(model)` to ship the attention maps as outputs too.
    """
    spec = tf.TensorSpec((batch_size, *model.input.shape[1:]), tf.float32, name="clips")
    # Through a SavedModel: converting a concrete function directly keeps Keras 3's
    # variables as uninitialised VAR_HANDLEs instead of freezing them.
    with tempfile.TemporaryDirectory() as export_dir:
        model.export(export_dir, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    bad = [op for op in op_histogram(flatbuffer) if op.startswith(FORBIDDEN_OPS)]
    if bad:
        raise RuntimeError(f"TFLite graph contains ops that do not ship: {bad}")
    return flatbuffer


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """How many times each op type occurs in a TFLite model."""
    interpreter = Interpreter(model_content=flatbuffer)
    ops = interpreter._get_ops_details()  # the only op listing LiteRT's Python API has
    return dict(collections.Counter(op["op_name"] for op in ops))
