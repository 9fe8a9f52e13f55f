"""`python -m export.openvino`: a checkpoint → an OpenVINO IR (.xml/.bin) and its config
`<stem>.json`; the float IR agrees with Keras, and int8 is real: int8 weights in the IR
and every convolution / fully-connected layer run in int8 by the CPU plugin."""

import json

import numpy as np
import openvino as ov
import pytest
import tensorflow as tf

from stabn_tf.deploy import ExportError
from stabn_tf.deploy import openvino as ovx
from stabn_tf.layers import Conv3DAs2D, FrameMaxPool2D

#: Every test here converts to OpenVINO (the shared float IR, NNCF): not in the fast tier.
pytestmark = pytest.mark.slow

T, S = 4, 32
OUTPUTS = ("logits", "probabilities", "spatial_attention", "temporal_attention")


@pytest.fixture(scope="module")
def model(calibrated_stabn):
    """The tiny set's ST-ABN (its 12 class names), BN statistics of real clips."""
    return calibrated_stabn(T, S, width_multiplier=0.25)


@pytest.fixture(scope="module")
def float_export(model, tiny_tfrecords, tmp_path_factory):
    """The float IR of `model` and its export report (parity on the validation split)."""
    output = tmp_path_factory.mktemp("float") / "ir" / "stabn.xml"
    report = ovx.export_openvino(model, str(output),
                                 eval_data=f"{tiny_tfrecords}/validation-*.tfrecord")
    return output, report


def test_float_ir_matches_keras_on_the_validation_clips(model, float_export):
    output, report = float_export
    tmp_path = output.parent.parent
    assert output.exists() and (tmp_path / "ir" / "stabn.bin").exists()
    assert sorted(p.name for p in output.parent.iterdir()) == ["stabn.bin", "stabn.json",
                                                               "stabn.xml"]
    parity = report["parity"]
    assert parity["clips"] == 12
    for key in OUTPUTS:
        assert parity[f"max_abs_diff/{key}"] <= 1e-4, parity
    assert parity["top1_agreement"] == 1.0
    # float32 weights as Keras has them (OpenVINO's default would store fp16)
    assert report["bytes"] >= report["float32_weight_bytes"]
    assert report["ops"] and all("[f32]" in op for op in report["ops"]), report["ops"]
    config = json.loads((tmp_path / "ir" / "stabn.json").read_text())
    assert config["format"] == "openvino" and config["quantize"] == "none"
    assert config["class_names"] == model.class_names
    assert config["preprocessor"]["config"]["num_frames"] == T  # the clip: stored once
    ir = ov.Core().read_model(output)
    assert [i.get_any_name() for i in ir.inputs] == ["clips"]
    assert ir.input("clips").get_shape() == [1, T, S, S, 3]  # static: 2× faster than dynamic
    assert {n for o in ir.outputs for n in o.get_names()} >= set(OUTPUTS)
    text = ovx.format_report(report)
    assert "Convolution [f32]" in text and "max |Δ| temporal_attention" in text
    assert "top-1 accuracy Keras / OpenVINO" in text


@pytest.mark.slow
def test_int8_cli_of_a_run_with_few_clips_quantizes_every_conv(model, tiny_tfrecords,
                                                               tmp_path, own_lines_only, python):
    """The TFLite export's calibration rules: the run's training split (5 clips here, 128
    requested), the same notice; every weighted layer in int8."""
    train = tmp_path / "train-small.tfrecord"
    with tf.io.TFRecordWriter(str(train)) as writer:
        records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(
            f"{tiny_tfrecords}/train-*.tfrecord")))
        for record in records.take(5):
            writer.write(record.numpy())
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    checkpoint = tmp_path / "run" / "checkpoints" / "final.keras"
    model.save(checkpoint)
    (tmp_path / "run" / "config.json").write_text(json.dumps({
        "dataset": "tfrecord", "train_files": str(train),
        "val_files": f"{tiny_tfrecords}/validation-*.tfrecord"}))
    output = tmp_path / "out" / "stabn_int8.xml"
    report_json = tmp_path / "report.json"
    # a tiny model calibrated on 5 clips need not keep the explanation: accepted here,
    # the refusal is tested below
    result = python("-m", "export.openvino", f"--checkpoint={checkpoint}", "--quantize=int8",
                    f"--output={output}", "--num_eval=6", f"--report_json={report_json}",
                    "--accept_unfaithful")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    own_lines_only(result)  # NNCF's too
    notes = [line for line in result.stderr.splitlines() if "calibrating" in line]
    assert notes == [f"calibrating on the 5 clips that {train} holds (128 requested); "
                     "warning: very few, the int8 ranges may not cover real inputs "
                     "(--representative_data can add clips)"], result.stderr
    out = result.stdout
    for needle in ("calibrated on 5 training clips",
                   "every Convolution / MatMul in int8 but the 5 of the attention heads "
                   "(float32, they compute Mt and Ms): yes",
                   "Convolution [int8]", "FullyConnected [int8]", "top-1 agreement with Keras",
                   "Pearson r temporal_attention", "keeps the explanation (",
                   "peak RSS of this export: "):
        assert needle in out, (needle, out)
    report = json.loads(report_json.read_text())
    assert report["quantization_violations"] == []
    # the temporal head's conv, frame mixing and two dense layers, the spatial head's conv
    assert len(report["kept_float"]) == 5
    assert sum("temporal_attention" in name for name in report["kept_float"]) == 2
    floats = sum(n for op, n in report["ops"].items() if "[int8]" not in op)
    assert 1 <= floats <= 5 and sum(report["ops"].values()) - floats >= 20, report["ops"]
    assert report["peak_rss_bytes"] > 0
    assert report["bytes"] <= 0.35 * report["float32_weight_bytes"]
    parity = report["parity"]
    assert parity["clips"] == 6
    assert 0.0 <= parity["top1_agreement"] <= 1.0
    assert parity["pearson/temporal_attention"] >= 0.9, parity
    ir = ov.Core().read_model(output)
    kinds = [n.get_type_name() for n in ir.get_ordered_ops()]
    assert kinds.count("Convolution") >= 20 and "FakeQuantize" in kinds
    # converted from the 5D form: the video convs are Conv3Ds (only the temporal
    # attention's own small convs are 2D), and no reshape follows any conv
    convs = [n for n in ir.get_ordered_ops() if n.get_type_name() == "Convolution"]
    assert sum(len(n.get_output_partial_shape(0)) == 5 for n in convs) >= 20
    assert not [c for n in convs for c in n.output(0).get_target_inputs()
                if c.get_node().get_type_name() == "Reshape"]
    heads = ovx.attention_heads(ir)
    assert sorted(heads) == sorted(report["kept_float"])
    assert ovx.weight_violations(ir, heads) == []  # int8 weights in the .bin
    assert len(ovx.weight_violations(ir)) == 5  # the heads' float32 weights
    assert json.loads(output.with_suffix(".json").read_text())["quantize"] == "int8"


def test_int8_graph_is_the_float_graph_as_5d_ops(model):
    """The int8 IR's source graph (Conv3D / MaxPool3D) computes what the float one does."""
    forms = {q: ovx.ir_graph(model, q) for q in ovx.QUANTIZATIONS}
    video_ops = [layer for layer in forms["int8"].get_layer(index=1).layers
                 if isinstance(layer, (Conv3DAs2D, FrameMaxPool2D))]
    assert len(video_ops) >= 20
    assert {layer.implementation for layer in video_ops} == {"3d"}
    clips = np.random.default_rng(0).normal(size=(1, T, S, S, 3)).astype("float32")
    flat, volume = (forms[q](clips) for q in ("none", "int8"))
    for key in OUTPUTS:
        np.testing.assert_allclose(volume[key], flat[key], atol=1e-4, err_msg=key)


def test_int8_checks_name_a_float_irs_weights_and_layers(float_export):
    """The inspection can fail: every weighted op of the float IR is a violation."""
    output, report = float_export
    ir = ov.Core().read_model(output)
    assert len(ovx.weight_violations(ir)) == sum(
        n.get_type_name() in ovx.WEIGHTED_OPS for n in ir.get_ordered_ops())
    assert len(ovx.quantization_violations(ovx.compile_ir(ir))) == sum(report["ops"].values())


def test_attention_heads_are_what_only_one_map_depends_on(float_export):
    """Found from the graph: Mt's 3×3 conv, frame mixing and two dense layers, Ms's conv;
    nothing that the class or the other map also depends on."""
    output, _ = float_export
    ir = ov.Core().read_model(output)
    heads = ovx.attention_heads(ir)
    kinds = {n.get_friendly_name(): n.get_type_name() for n in ir.get_ordered_ops()}
    assert sorted(kinds[name] for name in heads) == ["Convolution"] * 3 + ["MatMul"] * 2
    outputs = {name: out for out in ir.outputs for name in out.get_names()}
    temporal = ovx._ancestors(outputs["temporal_attention"])
    spatial = ovx._ancestors(outputs["spatial_attention"])
    assert sum(name in temporal for name in heads) == 4
    assert sum(name in spatial for name in heads) == 1


def test_an_ir_that_bends_the_explanation_is_refused_unless_accepted(model, tiny_tfrecords,
                                                                    tmp_path):
    """One calibration clip: the int8 IR misses the limits; nothing is written without
    accept_unfaithful, the IR and its numbers with it."""
    output = tmp_path / "one" / "stabn.xml"
    data = dict(representative_data=f"{tiny_tfrecords}/train-*.tfrecord",
                num_representative=1, eval_data=f"{tiny_tfrecords}/validation-*.tfrecord")
    notes = []
    with pytest.raises(ExportError, match=r"^the int8 IR in float32 does not keep the "
                       r"explanation on 12 validation clips against Keras float32: .*; "
                       r"nothing written \(--accept_unfaithful writes it anyway\)$"):
        ovx.export_openvino(model, str(output), "int8", notify=notes.append, **data)
    assert not output.parent.exists() or not list(output.parent.iterdir())
    assert any("keeps the explanation" in note and ": NO: " in note for note in notes), notes
    report = ovx.export_openvino(model, str(output), "int8", accept_unfaithful=True, **data)
    assert output.exists() and report["parity"]["clips"] == 12


def test_cli_errors_are_one_line(model, tmp_path, run_command):
    lone = tmp_path / "stabn.keras"
    model.save(lone)
    result = run_command("export.openvino", f"--checkpoint={lone}", "--quantize=int8")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "stabn_tf.export.openvino: error: --quantize=int8 calibrates on real clips and there "
        "are none (no run "
        f"directory (config.json) around {lone}): pass "
        "--representative_data=<training TFRecord pattern>"]
    with pytest.raises(ExportError, match=r"--output=.*stabn\.ir: an OpenVINO IR is a \.xml"):
        ovx.export_openvino(model, str(tmp_path / "stabn.ir"))
    with pytest.raises(ExportError, match="pass --representative_data"):
        ovx.export_openvino(model, str(tmp_path / "x.xml"), "int8")
    assert not list(tmp_path.glob("x.*"))
