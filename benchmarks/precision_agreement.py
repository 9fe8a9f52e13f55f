"""How much bf16 inference changes a trained model's outputs: bfloat16 against float32 on
every clip of a validation split, and the explanation-quality numbers of both.

    python benchmarks/precision_agreement.py --checkpoint=runs/demo/checkpoints/final.keras

The same checkpoint runs twice through `KerasRunner` (`precision="float32"`, and
`"bfloat16"`: the float32 weights rebuilt under `mixed_bfloat16`, what `--precision=bfloat16`
and `auto` on a bf16 CPU or GPU run), one centre clip per video. Printed: top-1 of each,
top-1 agreement, the largest |Δ probability|, the Pearson correlation of Mt and of Ms over
all clips and frames, and pointing / mass in box / Mt AUROC of the ST-ABN attention
(`stabn_tf.evaluate`'s explanation table) in each precision.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from absl import app, flags

from stabn_tf import quiet

quiet.import_tensorflow()

from stabn_tf.disk import write_atomic  # noqa: E402
from stabn_tf.evaluate import run as evaluate  # noqa: E402
from stabn_tf.explain.metrics import pearson  # noqa: E402
from stabn_tf.inference import KerasRunner, iter_inputs, load_checkpoint  # noqa: E402
from stabn_tf.outputs import (  # noqa: E402
    PROBABILITIES,
    SPATIAL_ATTENTION,
    TEMPORAL_ATTENTION,
)
from stabn_tf.precision import cpu_info  # noqa: E402
from stabn_tf.runs import RunDirectory  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "runs/demo/checkpoints/final.keras", "ST-ABN checkpoint.")
flags.DEFINE_list("files", None, "Validation TFRecords; default: the run's validation split.")
flags.DEFINE_string("output", None, "Also write the numbers as JSON here.")

# Explanation-quality numbers compared between precisions.
QUALITY = ("pointing_game", "mass_in_box", "temporal_auroc")


def _outputs(model, files) -> dict[str, dict[str, np.ndarray]]:
    """{precision: {output: stacked array}} plus the labels, one centre clip per video."""
    runners = {p: KerasRunner(model, precision=p) for p in ("float32", "bfloat16")}
    collected: dict[str, dict[str, list]] = {p: {} for p in runners}
    labels = []

    def fail(path: str, message: str) -> None:
        raise app.UsageError(message)

    for clip in iter_inputs(runners["float32"], files, max_clips=None, on_error=fail):
        labels.append(clip.true_label)
        for precision, runner in runners.items():
            for key, value in runner.outputs(clip.clips).items():
                collected[precision].setdefault(key, []).append(np.asarray(value))
    stacked = {p: {k: np.concatenate(v) for k, v in out.items()} for p, out in
               collected.items()}
    stacked["labels"] = {"labels": np.asarray(labels)}
    return stacked


def _quality(files, precision: str) -> dict[str, dict[str, float]]:
    """{method: {QUALITY key: value}} of the explanation table in `precision`."""
    results = evaluate(checkpoint=FLAGS.checkpoint, files=files, tables=["explanation"],
                       precision=precision, log=lambda text: None)
    return {row["method"]: {k: row[k] for k in QUALITY}
            for row in results["explanation"]["methods"]}


def main(argv) -> None:
    del argv
    model = load_checkpoint(FLAGS.checkpoint)
    files = FLAGS.files or [RunDirectory.of_checkpoint(FLAGS.checkpoint).data_patterns()[1]]
    print(f"CPU: {cpu_info().describe()}; checkpoint {FLAGS.checkpoint}; files {files}",
          flush=True)
    out = _outputs(model, files)
    f32, bf16, labels = out["float32"], out["bfloat16"], out["labels"]["labels"]
    top1 = {p: float(np.mean(out[p][PROBABILITIES].argmax(-1) == labels))
            for p in ("float32", "bfloat16")}
    numbers = {
        "clips": int(len(labels)),
        "top1_float32": top1["float32"], "top1_bfloat16": top1["bfloat16"],
        "top1_agreement": float(np.mean(f32[PROBABILITIES].argmax(-1)
                                        == bf16[PROBABILITIES].argmax(-1))),
        "max_abs_dp": float(np.abs(f32[PROBABILITIES] - bf16[PROBABILITIES]).max()),
        "mt_pearson": pearson(f32[TEMPORAL_ATTENTION], bf16[TEMPORAL_ATTENTION]),
        "ms_pearson": pearson(f32[SPATIAL_ATTENTION], bf16[SPATIAL_ATTENTION]),
        "max_abs_dmt": float(np.abs(f32[TEMPORAL_ATTENTION] - bf16[TEMPORAL_ATTENTION]).max()),
        "max_abs_dms": float(np.abs(f32[SPATIAL_ATTENTION] - bf16[SPATIAL_ATTENTION]).max()),
    }
    quality = {p: _quality(files, p) for p in ("float32", "bfloat16")}
    numbers["quality"] = quality
    numbers["quality_max_abs_difference"] = max(
        abs(quality["float32"][m][k] - quality["bfloat16"][m][k])
        for m in quality["float32"] for k in QUALITY
        if np.isfinite(quality["float32"][m][k]))
    print(json.dumps(numbers, indent=1, default=float))
    if FLAGS.output:
        write_atomic(FLAGS.output, json.dumps(numbers, indent=1, default=float))


if __name__ == "__main__":
    sys.exit(app.run(main))
