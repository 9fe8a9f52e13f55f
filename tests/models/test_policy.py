"""`with_precision`: a float32 model runs in bfloat16 without retraining, agrees with
float32 at a stated tolerance, returns float32 outputs and leaves the global policy alone;
`inference_graph` folds BN into the convs in bf16 only."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from stabn_tf.data import make_dataset
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.deploy.tflite import deployment_model
from stabn_tf.explain.metrics import pearson
from stabn_tf.models.folding import FoldedBatchNorm
from stabn_tf.models.policy import (
    dtype_policy,
    inference_graph,
    model_precision,
    with_precision,
)
from stabn_tf.outputs import PROBABILITIES, SPATIAL_ATTENTION, TEMPORAL_ATTENTION

T, S = 4, 32
#: bf16 (BN folded) against float32 on the tiny calibrated model and the tiny set's 12
#: validation clips (measured: probabilities 0.025, Ms 0.030, Mt 0.0027; Pearson 0.999 for
#: Ms, 0.998 for Mt). bf16 keeps 8 significant bits, so differences of a few 1e-2 are its
#: own; a wrong weight or layer would move them by far more.
TOLERANCE = {PROBABILITIES: 0.05, SPATIAL_ATTENTION: 0.06, TEMPORAL_ATTENTION: 0.01}
MIN_PEARSON = 0.995


@pytest.fixture(scope="module")
def models(calibrated_stabn):
    model = calibrated_stabn(T, S)
    return model, with_precision(model, "bfloat16")


@pytest.fixture(scope="module")
def clips(tiny_tfrecords):
    data = make_dataset(f"{tiny_tfrecords}/validation-*.tfrecord", training=False,
                        batch_size=12, preprocessor=ClipPreprocessor(T, S))
    return next(iter(data))[0]


def test_bfloat16_agrees_with_float32(models, clips):
    model, bf16 = models
    assert model_precision(model) == "float32" and model_precision(bf16) == "bfloat16"
    want = deployment_model(model)(clips)
    got = deployment_model(bf16)(clips)
    for key, tolerance in TOLERANCE.items():
        assert got[key].dtype == "float32", key  # the outputs people read stay float32
        np.testing.assert_allclose(got[key], want[key], atol=tolerance, err_msg=key)
    for key in (SPATIAL_ATTENTION, TEMPORAL_ATTENTION):
        assert pearson(want[key], got[key]) >= MIN_PEARSON, key
    # The top-1 holds wherever float32's two best classes lie further apart than the
    # probability tolerance; a closer call may flip in bf16 (one of these 12, 0.039 apart,
    # does since BN is folded in bf16; the demo's 120 clips all agree).
    best_two = np.sort(np.asarray(want[PROBABILITIES]), axis=-1)[:, -2:]
    clear = best_two[:, 1] - best_two[:, 0] > TOLERANCE[PROBABILITIES]
    assert clear.sum() >= 6
    np.testing.assert_array_equal(np.argmax(got[PROBABILITIES], -1)[clear],
                                  np.argmax(want[PROBABILITIES], -1)[clear])


def test_the_bfloat16_inference_graph_folds_batch_norm(models, clips):
    model, bf16 = models
    plain = inference_graph(model)  # float32: the model's own layers, nothing folded
    assert {id(v) for v in plain.weights} <= {id(v) for v in model.weights}
    assert not any(isinstance(layer, FoldedBatchNorm) for layer in plain.layers)
    graph = inference_graph(bf16)
    bns = [layer.name for layer in graph.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns == ["att_bn_in"]  # the one BN that follows a ReLU, not a conv
    folded = [layer for layer in graph.layers if isinstance(layer, FoldedBatchNorm)]
    assert len(folded) >= 20 and {layer.compute_dtype for layer in folded} == {"bfloat16"}
    assert not {id(v) for v in graph.weights} & {id(v) for v in bf16.weights}
    live = inference_graph(bf16, fold=False)  # a model in training: its own layers
    assert {id(v) for v in live.weights} <= {id(v) for v in bf16.weights}
    got = graph(clips, training=False)
    want = inference_graph(model)(clips, training=False)
    assert got[TEMPORAL_ATTENTION].dtype == "float32"
    np.testing.assert_allclose(got[TEMPORAL_ATTENTION], want[TEMPORAL_ATTENTION],
                               atol=TOLERANCE[TEMPORAL_ATTENTION])


def test_the_copy_has_the_weights_not_the_variables(models):
    model, bf16 = models
    assert type(bf16) is type(model) and bf16.get_config() == model.get_config()
    assert bf16.class_names == model.class_names
    for a, b in zip(model.weights, bf16.weights):
        assert a.path == b.path and b.dtype == "float32"  # stored in float32, not rounded
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not {id(v) for v in model.weights} & {id(v) for v in bf16.weights}
    assert with_precision(model, "float32") is model and with_precision(bf16, "bfloat16") is bf16
    assert model_precision(with_precision(bf16, "float32")) == "float32"
    with pytest.raises(ValueError, match="`precision` must be one of"):
        with_precision(model, "float16")


def test_the_global_policy_is_untouched(models):
    model, _ = models
    assert keras.config.dtype_policy().name == "float32"
    with_precision(model, "bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    keras.config.set_dtype_policy("mixed_float16")  # conftest restores float32
    copy = with_precision(model, "bfloat16")
    assert keras.config.dtype_policy().name == "mixed_float16"
    assert model_precision(copy) == "bfloat16"
    with pytest.raises(RuntimeError), dtype_policy("mixed_bfloat16"):
        raise RuntimeError("the block fails")
    assert keras.config.dtype_policy().name == "mixed_float16"


def test_xla_runs_the_bfloat16_model(models, clips):
    _, bf16 = models
    deploy = deployment_model(bf16)
    compiled = tf.function(lambda x: deploy(x, training=False), jit_compile=True)
    got = compiled(clips[:2])
    want = deploy(clips[:2], training=False)
    assert got[PROBABILITIES].dtype == tf.float32
    np.testing.assert_allclose(got[PROBABILITIES], want[PROBABILITIES],
                               atol=TOLERANCE[PROBABILITIES])
