"""Evaluation: multi-clip averaging, inversion, the tables, the CLI end to end, and the
one-line errors."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import stabn_tf
from stabn_tf import data as data_lib
from stabn_tf import evaluate as ev
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.errors import StabnError
from stabn_tf.layers.attention import AttentionFusion
from stabn_tf.precision import resolve_precision

CLASS_NAMES = [f"action {i}" for i in range(12)]
TINY = dict(class_names=CLASS_NAMES)  # overrides of the stabn_tiny preset


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny ST-ABN and baseline with fixed (seeded) weights, saved as .keras files.
    BN statistics are moved off their defaults so the inference path is non-trivial."""
    keras.utils.set_random_seed(3)
    out = tmp_path_factory.mktemp("models")
    paths = {}
    for name, model_class in (("stabn", stabn_tf.STABN), ("baseline", stabn_tf.ResNet3D)):
        model = model_class.from_preset("stabn_tiny", **TINY)
        rng = np.random.default_rng(0)
        for w in model.weights:
            if w.path.endswith("moving_variance"):
                w.assign(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
            elif w.path.endswith("moving_mean"):
                w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
        paths[name] = str(out / f"{name}.keras")
        model.save(paths[name])
    return paths


def _val(tiny_tfrecords):
    return os.path.join(tiny_tfrecords, "validation-*.tfrecord")


def _softmax(x):
    return tf.nn.softmax(x, axis=-1).numpy()


def test_two_clips_average_exactly_the_two_clips_scores(models, tiny_tfrecords):
    model = ev.load_checkpoint(models["stabn"])
    scores = ev.score_videos(model, _val(tiny_tfrecords), num_clips=2, batch_size=5)
    ds = data_lib.make_dataset(_val(tiny_tfrecords), training=False, batch_size=64,
                               preprocessor=ClipPreprocessor(4, 32), num_clips=2)
    clips, targets = next(iter(ds))
    assert clips.shape[1] == 2 and len(scores.labels) == len(clips) == 12
    first = model.predict(clips[:, 0], verbose=0)
    second = model.predict(clips[:, 1], verbose=0)
    for head in ("perception", "attention"):
        expected = (_softmax(first[head]) + _softmax(second[head])) / 2
        np.testing.assert_allclose(scores.probabilities[head], expected, atol=1e-5)
        np.testing.assert_allclose(scores.per_clip[head][:, 1], _softmax(second[head]),
                                   atol=1e-5)
    assert not np.allclose(scores.per_clip["perception"][:, 0],
                           scores.per_clip["perception"][:, 1])  # two different clips
    np.testing.assert_array_equal(scores.labels, targets["perception"].numpy())
    # A video limit keeps the first videos, in order.
    few = ev.score_videos(model, _val(tiny_tfrecords), num_clips=2, batch_size=5, max_videos=7)
    np.testing.assert_allclose(few.probabilities["perception"],
                               scores.probabilities["perception"][:7], atol=1e-6)


def test_topk_accuracy_known_answers():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    labels = np.array([1, 2, 0, 1])
    assert ev.topk_accuracy(probs, labels, 1) == 0.25  # row 3 ties: lowest index wins
    assert ev.topk_accuracy(probs, labels, 2) == 0.75
    assert ev.topk_accuracy(probs, labels, 5) == 1.0  # k capped at K


@pytest.mark.slow
def test_inversion_changes_the_fusion_inputs_as_specified(models):
    model = ev.load_checkpoint(models["stabn"])
    fusion = model.get_layer("attention_fusion")
    probe = keras.Model(model.input, list(fusion.input))  # [f, Ms, Mt]
    clips = np.random.default_rng(0).normal(size=(2, 4, 32, 32, 3)).astype("float32")
    f, ms, mt = (np.asarray(t) for t in probe(clips, training=False))
    assert (ms > 0).all() and (ms < 1).all() and (mt > 0).all() and (mt < 1).all()
    logits = {}
    for mode, (s, t) in {"none": (ms, mt), "spatial": (1 - ms, mt),
                         "temporal": (ms, 1 - mt), "both": (1 - ms, 1 - mt)}.items():
        with stabn_tf.attention_inversion(mode, model):
            assert fusion.inversion == mode
            fs, ft = (np.asarray(x) for x in fusion.fusion_inputs(f, ms, mt))
            logits[mode] = model.predict(clips, verbose=0)["perception"]
        np.testing.assert_allclose(fs, (1 + s) * f, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ft, t[:, :, None, None, None] * f, rtol=1e-5, atol=1e-6)
    assert fusion.inversion == "none"
    for mode in ("spatial", "temporal", "both"):
        assert not np.allclose(logits[mode], logits["none"]), mode


@pytest.mark.slow
def test_evaluate_inversions_matches_manual_inversion(models, tiny_tfrecords):
    model = ev.load_checkpoint(models["stabn"])
    results = ev.evaluate_inversions(model, _val(tiny_tfrecords), batch_size=12)
    ds = data_lib.make_dataset(_val(tiny_tfrecords), training=False, batch_size=64,
                               preprocessor=ClipPreprocessor(4, 32))
    clips, targets = next(iter(ds))
    labels = targets["perception"].numpy()
    for mode in ("none", "spatial", "temporal", "both"):
        stabn_tf.set_attention_inversion(mode, model)
        probs = _softmax(model.predict(clips, verbose=0)["perception"])
        assert results[mode]["top1"] == ev.topk_accuracy(probs, labels, 1)
        assert results[mode]["top5"] == ev.topk_accuracy(probs, labels, 5)
        np.testing.assert_allclose(results[mode]["true_class_probability"],
                                   probs[np.arange(len(labels)), labels].mean(), rtol=1e-5)
    stabn_tf.set_attention_inversion("none", model)
    assert set(results["ordering"]) == {"both < temporal", "temporal < none",
                                        "spatial < none", "reproduced"}
    fusion = [layer for layer in model.layers if isinstance(layer, AttentionFusion)][0]
    assert fusion.inversion == "none"
    baseline = ev.load_checkpoint(models["baseline"])
    with pytest.raises(ev.EvaluationError, match="ST-ABN"):
        ev.evaluate_inversions(baseline, _val(tiny_tfrecords))


def test_inversion_ordering_and_tables():
    results = {"none": {"top1": 0.5, "top5": 0.8}, "spatial": {"top1": 0.4, "top5": 0.7},
               "temporal": {"top1": 0.3, "top5": 0.6}, "both": {"top1": 0.2, "top5": 0.5}}
    assert ev.inversion_ordering(results)["reproduced"]
    results["ordering"] = ev.inversion_ordering(results)
    table = ev.table2_markdown(results)
    assert "| spatial inverted (1−Ms) | 40.0 | 70.0 | — |" in table
    assert "reproduced: yes" in table
    broken = dict(results, temporal={"top1": 0.6, "top5": 0.9})
    order = ev.inversion_ordering(broken)
    assert not order["reproduced"] and order["temporal < none"] is False
    rows = [("3D ResNet-50", 32, {"1": {"perception": {"top1": 0.452, "top5": 0.745}},
                                  "2": {"perception": {"top1": 0.529, "top5": 0.815}}}),
            ("3D ResNet-50 + ST-ABN", 32,
             {"1": {"perception": {"top1": 0.459, "top5": 0.754},
                    "attention": {"top1": 0.44, "top5": 0.7}}})]
    lines = ev.table1_markdown(rows).splitlines()
    assert lines[2] == "| 3D ResNet-50 | 32 | 45.2 | 74.5 | — |"
    assert lines[3] == "| 3D ResNet-50 + ST-ABN | 32 | 45.9 | 75.4 | 44.0 / 70.0 |"
    assert lines[4] == "| 3D ResNet-50 | 32+32 | 52.9 | 81.5 | — |"
    assert ev.frames_label(16, 3) == "16×3"


def test_loaded_models_describe_themselves(models):
    """What the tables and the data pipeline need comes from the model, not its layers."""
    model = ev.load_checkpoint(models["stabn"])
    assert (model.num_frames, model.preprocessor.image_size, model.num_classes) == (4, 32, 12)
    assert model.has_attention and model.class_names == CLASS_NAMES
    assert model.backbone_name == "3D ResNet-18 ×0.125"
    baseline = ev.load_checkpoint(models["baseline"])
    assert not baseline.has_attention and baseline.class_names == CLASS_NAMES
    assert stabn_tf.build_baseline(num_classes=5, num_frames=2, image_size=32, depth=50,
                                   width_multiplier=0.0625).backbone_name \
        == "3D ResNet-50 ×0.0625"


def _one_line(error) -> str:
    text = str(error.value)
    assert text and "\n" not in text, text
    return text


def test_load_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(StabnError, match="no such checkpoint file") as missing:
        ev.load_checkpoint(tmp_path / "nope.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(StabnError, match="not a .keras model file") as broken:
        ev.load_checkpoint(bad)
    plain = tmp_path / "plain.keras"
    inputs = keras.Input((2,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(plain)
    with pytest.raises(StabnError,
                       match="a Keras model .Functional.* not an ST-ABN or baseline model"
                       ) as foreign:
        ev.load_checkpoint(plain)
    for err in (missing, broken, foreign):
        assert str(tmp_path) in _one_line(err)


@pytest.mark.slow
def test_evaluate_cli_writes_both_tables_and_explanation_table(models, tiny_tfrecords, tmp_path,
                                                               own_lines_only, python,
                                                               run_command):
    out = tmp_path / "eval"
    args = ["stabn_tf.evaluate", f"--checkpoint={models['stabn']}",
            f"--baseline_checkpoint={models['baseline']}", f"--files={_val(tiny_tfrecords)}",
            "--tables=all", "--num_clips=1,2", f"--output_dir={out}", "--batch_size=6",
            "--deletion_grid=2", "--explain_max_videos=4", "--figures=1"]
    result = python("-m", *args)  # a fresh process: its start-up lines are checked too
    assert result.returncode == 0, result.stderr[-3000:]
    own_lines_only(result)
    results = json.loads((out / "results.json").read_text())
    table1 = results["table1"]
    assert set(table1) == {"3D ResNet-18 ×0.125", "3D ResNet-18 ×0.125 + ST-ABN"}
    assert set(table1["3D ResNet-18 ×0.125 + ST-ABN"]["2"]) == {"perception", "attention"}
    assert set(table1["3D ResNet-18 ×0.125"]["1"]) == {"perception"}
    assert set(results["table2"]) >= {"none", "spatial", "temporal", "both", "ordering"}
    quality = results["explanation"]
    assert quality["ground_truth"] and quality["videos"] == 4
    assert quality["map_size"] == [2, 2]  # Ms at H/16
    rows = {(r["method"], r["model"]): r for r in quality["methods"]}
    both = ("ST-ABN", "baseline")
    assert set(rows) == {("ST-ABN attention (Ms, Mt)", "ST-ABN")} | {
        (method, model) for model in both for method in
        ("Grad-CAM res5_block2_out", "Grad-CAM res4_block2_out", "random", "centre prior")}
    for (method, _), row in rows.items():
        assert row["frames_scored"] > 0
        keys = ["pointing_game", "mass_in_box", "region_deletion_auc"]
        if method == "centre prior":  # no temporal part
            assert np.isnan(row["temporal_auroc"]) and np.isnan(row["frame_deletion_auc"])
        else:
            keys += ["temporal_auroc", "frame_deletion_auc"]
        for key in keys:
            assert 0.0 <= row[key] <= 1.0, (method, key)
    text = (out / "table1.md").read_text()
    assert "| 3D ResNet-18 ×0.125 + ST-ABN | 4+4 |" in text
    assert "| both inverted |" in (out / "table2.md").read_text()
    table = (out / "explanation_quality.md").read_text()
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 10  # + header
    assert "| centre prior | ST-ABN |" in table and "— / —" in table
    assert "4 videos" in table
    assert (out / "tables.md").read_text().count("### ") == 3
    assert "| Model | Frames |" in result.stdout  # the tables are printed too
    assert results["precision"]["requested"] == "auto"
    assert results["precision"]["precision"] == resolve_precision("auto")
    said = [line for line in result.stderr.splitlines() if line.startswith("precision: ")]
    assert said == [f"precision: {resolve_precision('auto')} "
                    f"({results['precision']['reason']})"]  # once
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert len(figures) == 2 and figures[1] == figures[0][:-4] + "_gradcam_baseline.png"
    shown = json.loads((out / "figures" / figures[0].replace(".png", ".json")).read_text())
    assert shown["true_label"]["label"] in CLASS_NAMES  # the model's own class names
    assert shown["method"] == "attention"
    assert json.loads((out / "figures" / figures[1].replace(".png", ".json")).read_text()
                      )["method"] == "gradcam"

    bad = run_command("stabn_tf.evaluate", f"--checkpoint={tmp_path}/missing.keras",
                      f"--files={_val(tiny_tfrecords)}")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == \
        f"stabn_tf.evaluate: error: {tmp_path}/missing.keras: no such checkpoint file"


def test_split_defaults_to_the_runs_validation_files(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = run / "checkpoints" / "final.keras"
    with pytest.raises(ev.EvaluationError, match="no --files given and no run config") as err:
        ev.validation_files(checkpoint)
    _one_line(err)
    (run / "config.json").write_text(json.dumps({"dataset": "tfrecord", "train_files": "x"}))
    with pytest.raises(ev.EvaluationError, match="names no validation files") as err:
        ev.validation_files(checkpoint)
    _one_line(err)
    (run / "config.json").write_text(json.dumps({"dataset": "tfrecord",
                                                 "val_files": "/data/val-*.tfrecord"}))
    assert ev.validation_files(checkpoint) == "/data/val-*.tfrecord"


@pytest.mark.slow
def test_cli_works_from_the_keras_file_alone(models, tiny_tfrecords, tmp_path, own_lines_only,
                                            run_command):
    """No run directory next to the checkpoint: the model carries everything evaluation
    needs (frames, size, classes, kind). In this process: a fresh one's start-up lines are
    checked by the CLI test above."""
    alone = tmp_path / "somewhere" / "model.keras"
    alone.parent.mkdir()
    shutil.copy(models["stabn"], alone)
    result = run_command("stabn_tf.evaluate", f"--checkpoint={alone}",
                         f"--files={_val(tiny_tfrecords)}", "--tables=table1,table2",
                         "--num_clips=1", "--invert=none,both", "--max_videos=4",
                         "--batch_size=4")
    assert result.returncode == 0, result.stderr[-3000:]
    own_lines_only(result)
    assert "| 3D ResNet-18 ×0.125 + ST-ABN | 4 |" in result.stdout
    assert "| both inverted |" in result.stdout


def _run(**kwargs):
    kwargs.setdefault("log", lambda text: None)
    return ev.run(**kwargs)


def test_usage_errors_are_one_line_and_come_before_any_model(models, tiny_tfrecords,
                                                              tmp_path):
    val = _val(tiny_tfrecords)
    missing = str(tmp_path / "missing.keras")  # never loaded: the flags fail first
    with pytest.raises(ev.EvaluationError, match="unknown table") as err:
        _run(checkpoint=missing, files=val, tables=["table3"])
    _one_line(err)
    for counts in ([0], [1, -2], []):
        with pytest.raises(ev.EvaluationError, match="--num_clips must be >= 1") as err:
            _run(checkpoint=missing, files=val, num_clips=counts)
        _one_line(err)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    # --output_dir is checked (and created) once the checkpoint is accepted, before any
    # model runs: a refused checkpoint leaves no folder behind.
    with pytest.raises(ev.EvaluationError, match="--output_dir: .* is a file") as err:
        _run(checkpoint=models["stabn"], files=val, output_dir=str(a_file))
    _one_line(err)
    with pytest.raises(ev.EvaluationError, match="--output_dir: .* not writable") as err:
        _run(checkpoint=models["stabn"], files=val, output_dir=str(a_file / "evaluation"))
    _one_line(err)
    with pytest.raises(StabnError, match="no such checkpoint file") as err:
        _run(checkpoint=missing, files=val, output_dir=str(tmp_path / "never"))
    _one_line(err)
    assert not (tmp_path / "never").exists()
    with pytest.raises(StabnError, match="--precision=fp16: choose from auto") as err:
        _run(checkpoint=missing, files=val, precision="fp16")
    _one_line(err)
    with pytest.raises(ev.EvaluationError, match="no --files given and no run config") as err:
        _run(checkpoint=models["stabn"])
    _one_line(err)
    with pytest.raises(ev.EvaluationError, match="no TFRecord files match") as err:
        _run(checkpoint=models["stabn"], files=str(tmp_path / "nothing-*.tfrecord"))
    _one_line(err)


@pytest.mark.slow
def test_checkpoint_and_data_mismatch_is_one_line(tiny_tfrecords, tmp_path):
    """Records whose labels the model does not have, and shards without videos."""
    small = tmp_path / "five_classes.keras"
    stabn_tf.STABN.from_preset("stabn_tiny", num_classes=5).save(small)
    for tables in (["table1"], ["explanation"]):
        with pytest.raises(ev.EvaluationError, match="has 5 classes: the records and the "
                           "checkpoint do not match") as err:
            _run(checkpoint=str(small), files=_val(tiny_tfrecords), tables=tables,
                 num_clips=[1], max_videos=12)
        _one_line(err)
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(ev.EvaluationError, match="no videos in") as err:
        _run(checkpoint=str(small), files=str(empty), tables=["table1"], num_clips=[1])
    _one_line(err)



@pytest.mark.slow
def test_run_reads_the_split_from_the_checkpoints_run(models, tiny_tfrecords, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(models["stabn"], run / "checkpoints" / "final.keras")
    (run / "config.json").write_text(json.dumps({"dataset": "tfrecord",
                                                 "val_files": _val(tiny_tfrecords)}))
    said = []
    results = ev.run(checkpoint=str(run / "checkpoints" / "final.keras"), tables=["table1"],
                     num_clips=[1], max_videos=3, log=said.append)
    assert results["files"] == _val(tiny_tfrecords)
    assert said[0] == f"evaluating the run's validation split: {_val(tiny_tfrecords)}"
    assert results["table1"]["3D ResNet-18 ×0.125 + ST-ABN"]["videos"] == 3
    # The tables run the model in the precision asked for: bf16 moves the scores a little.
    scores = {}
    for precision in ("float32", "bfloat16"):
        run_results = _run(checkpoint=models["stabn"], files=_val(tiny_tfrecords),
                           tables=["table1"], num_clips=[1], max_videos=3, precision=precision)
        assert run_results["precision"]["precision"] == precision
        scores[precision] = run_results["table1"]["3D ResNet-18 ×0.125 + ST-ABN"]["1"][
            "perception"]["true_class_probability"]
    assert scores["float32"] != scores["bfloat16"]
    assert abs(scores["float32"] - scores["bfloat16"]) < 0.05
