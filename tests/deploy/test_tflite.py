"""TFLite conversion: builtin 2D ops only, float parity with Keras, and quantization that
is real (every conv / fully-connected op in int8, checked from the interpreter)."""

import keras
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

import stabn_tf
from stabn_tf.data import ClipPreprocessor
from stabn_tf.deploy import tflite
from stabn_tf.deploy.tflite import FORBIDDEN_OPS, convert_to_tflite, op_histogram
from stabn_tf.inference import LiteRTRunner
from stabn_tf.models import folding

T, S, K = 4, 32, 5


# Every test converts a model with the TFLite converter (10-30 s on 2 cores).
pytestmark = pytest.mark.slow


def run(flatbuffer: bytes, clips: np.ndarray) -> dict[str, np.ndarray]:
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    outs = [runner(clips=clip[None]) for clip in clips]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


@pytest.fixture(scope="module")
def real_clips(tiny_tfrecords):
    """Real normalised clips from the synthetic TFRecords: 8 training (calibration), 4
    validation (evaluation)."""
    preprocessor = ClipPreprocessor(T, S)
    train = tflite.representative_clips(f"{tiny_tfrecords}/train-*.tfrecord", 8, preprocessor)
    val = tflite.representative_clips(f"{tiny_tfrecords}/validation-*.tfrecord", 4,
                                      preprocessor)
    return train, val


def test_representative_clips_gives_what_there_is(tiny_tfrecords, tmp_path):
    preprocessor = ClipPreprocessor(T, S)
    clips = tflite.representative_clips(f"{tiny_tfrecords}/validation-*.tfrecord", 100,
                                        preprocessor)
    assert clips.shape == (12, T, S, S, 3)  # the whole split: one clip per class
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    none = tflite.representative_clips(str(tmp_path / "empty.tfrecord"), 8, preprocessor)
    assert none.shape == (0, T, S, S, 3)


@pytest.fixture(scope="module")
def tiny(real_clips):
    """A small ST-ABN (ResNet-18, quarter width) with BN statistics of real clips, its
    Keras reference outputs on the validation clips, and its float32 TFLite model."""
    keras.utils.set_random_seed(0)
    model = stabn_tf.STABN.from_preset("stabn_tiny", num_classes=K, num_frames=T, image_size=S,
                                       width_multiplier=0.25)
    tflite.calibrate_batch_norm(model, real_clips[0])
    reference = tflite.deployment_model(model)
    expected = {k: np.asarray(v) for k, v in reference(real_clips[1]).items()}
    edge = tflite.deployment_model(model, edge=True, batch_size=1)
    return model, edge, expected, convert_to_tflite(edge)


def test_tiny_stabn_converts_to_float_tflite_without_3d_ops_and_matches_keras():
    model = stabn_tf.STABN.from_preset("stabn_tiny", num_classes=5, image_size=64, depth=50)
    rng = np.random.default_rng(0)
    tflite.calibrate_batch_norm(model, rng.normal(size=(4, 4, 64, 64, 3)).astype("float32"))
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


def test_edge_clone_folds_batch_norm_into_convs_and_keeps_the_outputs(tiny, real_clips):
    model, edge, expected, _ = tiny
    explained = stabn_tf.explanation_model(model)
    pairs = folding.conv_bn_pairs(explained)
    backbone_bns = [layer for layer in explained.layers
                    if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(pairs) == len(backbone_bns) - 1  # all but att_bn_in, which follows a ReLU
    clone = tflite.edge_clone(explained)
    assert [layer.name for layer in clone.layers
            if isinstance(layer, keras.layers.BatchNormalization)] == ["att_bn_in"]
    # A clone, not a view: no variable is shared with the trained model.
    assert not {id(v) for v in clone.weights} & {id(v) for v in model.weights}
    got = edge(real_clips[1][:1])
    for key in ("logits", "spatial_attention", "temporal_attention"):
        np.testing.assert_allclose(np.asarray(got[key]), expected[key][:1], atol=1e-4)
    assert set(got) == {"logits", "probabilities", "spatial_attention", "temporal_attention"}
    assert got["spatial_attention"].shape == (1, T, S // 16, S // 16)


def test_edge_model_of_a_mixed_precision_model_is_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = stabn_tf.STABN.from_preset("stabn_tiny", num_classes=K, num_frames=T, image_size=S)
    keras.mixed_precision.set_global_policy("float32")
    edge = tflite.deployment_model(model, edge=True, batch_size=1)
    assert {layer.dtype_policy.name for layer in edge.layers
            if not isinstance(layer, keras.layers.InputLayer)} == {"float32"}
    assert edge(np.zeros((1, T, S, S, 3), "float32"))["logits"].dtype == "float32"


def test_float32_tflite_matches_keras_on_real_clips(tiny, real_clips):
    _, _, expected, flatbuffer = tiny
    got = run(flatbuffer, real_clips[1])
    numbers = tflite.compare_outputs(expected, got)
    for key in expected:
        assert numbers[f"max_abs_diff/{key}"] <= 1e-4, numbers
    assert numbers["top1_agreement"] == 1.0
    assert "CONV_3D" not in op_histogram(flatbuffer)


def _interpreter_kernel_dtypes(flatbuffer: bytes, op_names) -> list[tuple]:
    """(op, input dtype, weight dtype, bias dtype, output dtype) of every op named in
    `op_names`, straight from the interpreter's op and tensor details."""
    interpreter = Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def dtype(i):
        return None if i < 0 else np.dtype(tensors[i]["dtype"]).name

    found = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in op_names:
            inputs = list(op["inputs"]) + [-1, -1]
            found.append((op["op_name"], dtype(inputs[0]), dtype(inputs[1]), dtype(inputs[2]),
                          dtype(op["outputs"][0])))
    return found


def test_int8_is_genuinely_integer_small_and_agrees_with_float(tiny, real_clips):
    _, edge, expected, float_model = tiny
    int8_model = convert_to_tflite(edge, quantize="int8", representative_data=real_clips[0])

    kernels = _interpreter_kernel_dtypes(int8_model, ("CONV_2D", "FULLY_CONNECTED"))
    assert len([k for k in kernels if k[0] == "CONV_2D"]) >= 20
    assert len([k for k in kernels if k[0] == "FULLY_CONNECTED"]) == 3  # Mt ×2, classifier
    for op, activation, weight, bias, output in kernels:
        assert (activation, weight, output) == ("int8", "int8", "int8"), (op, kernels)
        assert bias in (None, "int32"), (op, bias)
    assert tflite.quantization_violations(int8_model) == []
    ops = op_histogram(int8_model)
    assert not [op for op in ops if op.startswith(FORBIDDEN_OPS)], ops
    assert len(int8_model) <= 0.30 * len(float_model), (len(int8_model), len(float_model))
    report = tflite.op_report(int8_model)
    assert report[("CONV_2D", "int8")] == len([k for k in kernels if k[0] == "CONV_2D"])
    assert "CONV_2D [int8]" in tflite.format_op_report(report)

    # An untrained model calibrated on 8 clips: loose bounds (the demo model's numbers on
    # its whole validation split are in the export report, not asserted here).
    numbers = tflite.compare_outputs(expected, run(int8_model, real_clips[1]))
    assert numbers["top1_agreement"] >= 0.75, numbers
    assert numbers["pearson/temporal_attention"] >= 0.9, numbers
    assert numbers["max_abs_diff/probabilities"] <= 0.2, numbers
    assert numbers["max_abs_diff/temporal_attention"] <= 0.05, numbers


def test_int8_keeps_the_chosen_op_types_float_and_the_rest_integer(tiny, real_clips):
    _, edge, expected, _ = tiny
    model = convert_to_tflite(edge, quantize="int8", representative_data=real_clips[0],
                              keep_float=tflite.KEEP_FLOAT)
    kernels = _interpreter_kernel_dtypes(model, ("CONV_2D", "FULLY_CONNECTED", "SOFTMAX"))
    dense = [k for k in kernels if k[0] == "FULLY_CONNECTED"]
    assert len(dense) == 3 and all(k[1] == k[4] == "float32" for k in dense), dense  # + Mt's
    assert [k[1] for k in kernels if k[0] == "SOFTMAX"] == ["float32"]
    convs = [k for k in kernels if k[0] == "CONV_2D"]
    int8 = [k for k in convs if k[1:3] == ("int8", "int8") and k[4] == "int8"]
    left = tflite.quantization_violations(model, "int8", tflite.KEEP_FLOAT)
    assert len(int8) + len(left) == len(convs) and len(left) <= 1, (convs, left)
    # Without the exemption the check names the float dense layers.
    assert sum("FULLY_CONNECTED" in v for v in tflite.quantization_violations(model)) == 3
    numbers = tflite.compare_outputs(expected, run(model, real_clips[1]))
    assert numbers["top1_agreement"] >= 0.75, numbers
    assert numbers["pearson/temporal_attention"] >= 0.9, numbers
    assert numbers["max_abs_diff/temporal_attention"] <= 0.05, numbers


def test_integer_input_int8_model_takes_quantized_clips(tiny, real_clips):
    _, edge, expected, _ = tiny
    model = convert_to_tflite(edge, quantize="int8", representative_data=real_clips[0],
                              integer_input=True)
    lite = LiteRTRunner(model_content=model)
    assert lite.input_dtype == np.int8
    scale, _ = lite._input["quantization"]
    assert scale > 0
    numbers = tflite.compare_outputs(expected, lite.run(real_clips[1]))
    assert numbers["top1_agreement"] >= 0.75, numbers
    assert numbers["max_abs_diff/temporal_attention"] <= 0.05, numbers


def test_float16_dynamic_and_int16x8_modes(tiny, real_clips):
    _, edge, expected, float_model = tiny
    fp16 = convert_to_tflite(edge, quantize="float16")
    report = tflite.op_report(fp16)
    assert report[("DEQUANTIZE", "float16→float32")] > 0 and report[("CONV_2D", "float32")] > 0
    assert len(fp16) <= 0.55 * len(float_model)
    numbers = tflite.compare_outputs(expected, run(fp16, real_clips[1]))
    assert numbers["max_abs_diff/probabilities"] <= 1e-2, numbers

    dynamic = convert_to_tflite(edge, quantize="dynamic")
    assert tflite.op_report(dynamic)[("CONV_2D", "float32×int8")] > 0
    assert len(dynamic) <= 0.35 * len(float_model)

    int16x8 = convert_to_tflite(edge, quantize="int16x8", representative_data=real_clips[0])
    assert tflite.quantization_violations(int16x8, "int16x8") == []
    kernels = _interpreter_kernel_dtypes(int16x8, ("CONV_2D", "FULLY_CONNECTED"))
    assert {(k[1], k[2], k[4]) for k in kernels} == {("int16", "int8", "int16")}


def test_conversion_argument_errors(tiny):
    _, edge, _, _ = tiny
    with pytest.raises(ValueError, match="quantize must be one of"):
        convert_to_tflite(edge, quantize="int4")
    with pytest.raises(ValueError, match="needs representative_data"):
        convert_to_tflite(edge, quantize="int8")
    with pytest.raises(ValueError, match="integer_input"):
        convert_to_tflite(edge, quantize="dynamic", integer_input=True)
    with pytest.raises(ValueError, match="keep_float is for quantize='int8'"):
        convert_to_tflite(edge, quantize="float16", keep_float=tflite.KEEP_FLOAT)


def test_compare_outputs_and_pearson():
    ref = {"logits": np.array([[2.0, 1.0], [0.0, 1.0]]),
           "temporal_attention": np.array([[0.1, 0.9], [0.5, 0.7]])}
    cand = {"logits": np.array([[1.0, 2.0], [0.0, 1.5]]),
            "temporal_attention": np.array([[0.2, 1.0], [0.6, 0.8]])}
    numbers = tflite.compare_outputs(ref, cand, labels=np.array([0, 1]))
    assert numbers["top1_agreement"] == 0.5
    assert numbers["reference_top1"] == 1.0 and numbers["candidate_top1"] == 0.5
    assert numbers["max_abs_diff/logits"] == 1.0
    assert numbers["pearson/temporal_attention"] == pytest.approx(1.0)
    assert np.isnan(tflite.pearson(np.ones(3), np.arange(3)))


def test_calibrate_batch_norm_averages_chunk_statistics_and_restores_momentum():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(momentum=0.9)])
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32") + 2.0
    tflite.calibrate_batch_norm(model, x, chunk=2)
    norm = model.layers[0]
    expected = np.mean([x[i:i + 2].mean(0) for i in (0, 2, 4)], axis=0)
    np.testing.assert_allclose(norm.moving_mean.numpy(), expected, atol=1e-5)
    assert norm.momentum == 0.9


def test_parity_batches_hold_one_full_size_clip_and_eight_small_ones():
    assert tflite.parity_batch_size(ClipPreprocessor(8, 64)) == 8  # the demo
    assert tflite.parity_batch_size(ClipPreprocessor(32, 224)) == 1  # the full size
    assert tflite.parity_batch_size(ClipPreprocessor(16, 224)) == 2
