"""The human-knowledge loop, as docs/explanations.md documents it: a trained checkpoint, boxes drawn
by hand for a few clips (the simple format), conversion with `--boxes`, fine-tuning with
`--init=<checkpoint>` and the supervision flags, before/after with `evaluate`."""

import json
import os

import numpy as np
import pytest

import stabn_tf
from stabn_tf.data import convert
from stabn_tf.evaluate import run as evaluate
from stabn_tf.training.trainer import TrainConfig, train

TINY = dict(epochs=1, steps_per_epoch=2, num_explain_clips=0, verbose=0, seed=1)


@pytest.mark.slow
def test_correct_a_few_clips_fine_tune_and_compare(tiny_tfrecords, tmp_path):
    data = str(tiny_tfrecords)
    before = tmp_path / "before"
    train(TrainConfig.from_preset("stabn_tiny", output_dir=str(before),
                                  train_files=f"{data}/train-*.tfrecord",
                                  val_files=f"{data}/validation-*.tfrecord", **TINY))
    checkpoint = before / "checkpoints" / "final.keras"

    # A person draws boxes on a few training clips of the raw videos (normalised boxes).
    raw = os.path.join(os.path.dirname(data), "raw")
    with open(os.path.join(raw, "something-something-v2-train.json")) as f:
        ids = [entry["id"] for entry in json.load(f)][:3]
    boxes = {clip_id: {"frames": {str(t): [[0.25, 0.25, 0.75, 0.75]] for t in range(8)}}
             for clip_id in ids}
    (tmp_path / "my_boxes.json").write_text(json.dumps(boxes))
    manifest = convert.convert_dataset("ssv2", raw, tmp_path / "records", splits=("train",),
                                       boxes=[str(tmp_path / "my_boxes.json")], progress=False,
                                       workers=1)
    assert manifest["boxes"]["videos_with_boxes"] == 3 and manifest["boxes"]["problems"] == 0

    after = tmp_path / "after"
    train(TrainConfig.from_preset("stabn_tiny", output_dir=str(after),
                                  train_files=str(tmp_path / "records/train-*"),
                                  val_files=f"{data}/validation-*.tfrecord", init=str(checkpoint),
                                  attention_supervision_weight=1.0, **TINY))
    tuned = stabn_tf.load_model(after / "checkpoints" / "final.keras")
    original = stabn_tf.load_model(checkpoint)
    assert tuned.class_names == original.class_names
    assert not all(np.array_equal(a, b) for a, b in zip(tuned.get_weights(),
                                                        original.get_weights()))

    for model in (checkpoint, after / "checkpoints" / "final.keras"):
        results = evaluate(checkpoint=str(model), files=f"{data}/validation-*.tfrecord",
                           tables=["explanation"], explain_max_videos=4, deletion_grid=2,
                           gradcam_layers=(), log=lambda text: None)
        row = results["explanation"]["methods"][0]
        assert row["method"].startswith("ST-ABN attention") and 0 <= row["pointing_game"] <= 1
