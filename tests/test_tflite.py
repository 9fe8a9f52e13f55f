"""The network converts to TFLite with builtin 2D ops only, and agrees with Keras."""

import keras
import numpy as np
from ai_edge_litert.interpreter import Interpreter

import stabn_tf
from stabn_tf.tflite import FORBIDDEN_OPS, convert_to_tflite, op_histogram


def test_tiny_stabn_converts_to_float_tflite_without_3d_ops_and_matches_keras():
    model = stabn_tf.build_stabn(num_classes=5, num_frames=4, image_size=64, depth=50,
                                 width_multiplier=0.125)
    # Realistic activations: BN moving statistics set to the statistics of a batch, as
    # after training (He-initialised convs with identity BN give logits in the hundreds).
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(rng.normal(size=(4, 4, 64, 64, 3)).astype("float32"), training=True)
    explained = stabn_tf.explanation_model(model)
    flatbuffer = convert_to_tflite(explained)

    ops = op_histogram(flatbuffer)
    assert "CONV_2D" in ops and "CONV_3D" not in ops, ops
    assert not [op for op in ops if op.startswith(FORBIDDEN_OPS)], ops

    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    clip = rng.normal(size=(1, 4, 64, 64, 3)).astype("float32")
    got = runner(clips=clip)
    expected = explained(clip, training=False)
    assert set(got) == set(expected)
    for key, want in expected.items():
        err = np.abs(got[key] - np.asarray(want)).max()
        assert err <= 1e-4, (key, err)
    assert np.abs(got["perception"]).max() > 0.1  # not trivially zero
