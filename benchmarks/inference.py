"""CPU inference latency of one clip, every deployment format side by side in one run.

    python benchmarks/inference.py                                  # full R50 and the demo
    python benchmarks/inference.py --models=demo --demo_runs=200
    python benchmarks/inference.py --models=r50 --formats=tflite_float32,tflite_int8

Formats: Keras eager, `tf.function`, `tf.function(jit_compile=True)` (XLA), the TF Serving
SavedModel's `serving_default` (uint8 frames at the stored size 256/224·S, so its time
includes the in-graph crop/resize/normalise), and TFLite float32 / float16 / dynamic / int8
run by LiteRT with XNNPACK (`--threads`). Latency = median of `--runs` batch-1 calls after
`--warmup` calls; the runs are interleaved round-robin over the formats, so background load
on a shared machine hits every format alike and the ratios to TFLite float32 stay fair.

Models: `r50` = the full ST-ABN (ResNet-50, K=174, 32×224×224) with random weights whose
BN statistics are set from real clips (so activations, and int8 scales, are realistic;
latency does not depend on the weights' values); `demo` = the trained demo checkpoint.
Calibration and BN clips come from the demo run's training TFRecords (`--data` overrides).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from absl import app, flags

from stabn_tf import quiet

# TensorFlow first through stabn_tf's quiet import, so --help and the tables start without
# TensorFlow's C++ start-up lines.
quiet.import_tensorflow()

import ai_edge_litert  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import stabn_tf  # noqa: E402
from stabn_tf.data import preprocess  # noqa: E402
from stabn_tf.deploy import tflite  # noqa: E402
from stabn_tf.deploy.saved_model import (  # noqa: E402
    SERVING_DEFAULT,
    export_saved_model,
    frames_tensor,
)
from stabn_tf.inference import LiteRTRunner, load_checkpoint  # noqa: E402
from stabn_tf.runs import RunDirectory, RunError  # noqa: E402

FLAGS = flags.FLAGS
TF_FORMATS = ("keras_eager", "tf_function", "tf_xla", "saved_model")
TFLITE_FORMATS = ("tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8")
flags.DEFINE_list("models", ["demo", "r50"], "demo and/or r50.")
flags.DEFINE_list("formats", list(TF_FORMATS + TFLITE_FORMATS), "Formats to time.")
flags.DEFINE_integer("runs", 5, "Timed calls per format for r50 (median reported).")
flags.DEFINE_integer("demo_runs", 50, "Timed calls per format for the demo model.")
flags.DEFINE_integer("warmup", 1, "Untimed calls per format first (XLA compiles here).")
flags.DEFINE_integer("threads", 2, "CPU threads for TensorFlow and LiteRT.")
flags.DEFINE_string("checkpoint", "runs/demo/checkpoints/final.keras", "The demo model.")
flags.DEFINE_list("data", None, "TFRecords for BN statistics and int8 calibration; default: "
                  "the demo run's training split.")
flags.DEFINE_integer("num_representative", 32, "int8 calibration clips for the demo model.")
flags.DEFINE_integer("num_representative_r50", 4, "int8 calibration (and BN) clips for r50 "
                     "(each calibration pass is a float forward of ~618 GFLOPs).")
flags.DEFINE_string("output", None, "Also write the results as JSON here.")
flags.DEFINE_string("keep_models", None, "Keep the converted models in this directory.")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _training_data() -> list[str] | str:
    if FLAGS.data:
        return FLAGS.data
    run = RunDirectory.of_checkpoint(FLAGS.checkpoint)
    try:
        train = run.data_patterns()[0] if run else ""
    except RunError as e:
        raise app.UsageError(f"{e}: pass --data") from None
    if not train:
        raise app.UsageError("no training TFRecords found for the demo run: pass --data")
    return train


def _r50(data) -> tuple:
    """The full-size ST-ABN, BN statistics from real clips, and calibration clips."""
    keras.utils.set_random_seed(0)
    model = stabn_tf.build_stabn(num_classes=174, num_frames=32, image_size=224)
    clips = tflite.representative_clips(data, FLAGS.num_representative_r50, model.preprocessor)
    tflite.calibrate_batch_norm(model, clips, chunk=2)  # real clips' BN statistics
    return model, clips


def _demo(data) -> tuple:
    model = load_checkpoint(FLAGS.checkpoint)
    return model, tflite.representative_clips(data, FLAGS.num_representative, model.preprocessor)


def _prepare(name: str, model, clips, workdir: str) -> dict[str, dict]:
    """{format: {"call": () -> None, "bytes": size, "prepare_s": seconds}}."""
    clip = clips[:1]
    deploy = tflite.deployment_model(model)
    weight_bytes = 4 * model.count_params()
    formats: dict[str, dict] = {}

    def add(fmt: str, build: Callable[[], tuple[Callable[[], object], int]]) -> None:
        if fmt not in FLAGS.formats:
            return
        _log(f"{name}: preparing {fmt}")
        start = time.perf_counter()
        call, size = build()
        formats[fmt] = {"call": call, "bytes": size, "prepare_s": time.perf_counter() - start}

    def numpy_outputs(out) -> None:
        tf.nest.map_structure(lambda t: t.numpy(), out)

    add("keras_eager", lambda: (lambda: numpy_outputs(deploy(clip, training=False)),
                                weight_bytes))
    graph = tf.function(lambda x: deploy(x, training=False))
    add("tf_function", lambda: (lambda: numpy_outputs(graph(clip)), weight_bytes))
    xla = tf.function(lambda x: deploy(x, training=False), jit_compile=True)
    add("tf_xla", lambda: (lambda: numpy_outputs(xla(clip)), weight_bytes))

    def saved():
        path = export_saved_model(model, os.path.join(workdir, "serving"), name)
        serving = tf.saved_model.load(path).signatures[SERVING_DEFAULT]
        side = preprocess.eval_short_side(model.preprocessor.image_size)
        frames = frames_tensor(np.random.default_rng(0).integers(
            0, 256, (1, model.num_frames, side, side, 3), dtype=np.uint8))
        return (lambda: numpy_outputs(serving(frames=frames))), _dir_bytes(path)

    add("saved_model", saved)
    wanted = [fmt for fmt in TFLITE_FORMATS if fmt in FLAGS.formats]
    edge = tflite.deployment_model(model, edge=True, batch_size=1) if wanted else None
    for fmt in wanted:

        def lite(fmt=fmt):
            mode = {"float32": "none"}.get(fmt.split("_")[1], fmt.split("_")[1])
            flatbuffer = tflite.convert_to_tflite(
                edge, quantize=mode, representative_data=clips if mode == "int8" else None)
            if FLAGS.keep_models:
                os.makedirs(FLAGS.keep_models, exist_ok=True)
                with open(os.path.join(FLAGS.keep_models, f"{name}_{mode}.tflite"), "wb") as f:
                    f.write(flatbuffer)
            if mode == "int8":
                assert not tflite.quantization_violations(flatbuffer), "int8 left float convs"
            runner = LiteRTRunner(model_content=flatbuffer, num_threads=FLAGS.threads)
            formats[fmt + "_ops"] = {f"{op} [{kind}]": n for (op, kind), n in
                                     tflite.op_report(flatbuffer).most_common()}
            return (lambda: runner.run(clip)), len(flatbuffer)

        add(fmt, lite)
    return formats


def _time_interleaved(formats: dict[str, dict], runs: int) -> dict[str, list[float]]:
    timed = {k: v for k, v in formats.items() if "call" in v}
    for fmt, entry in timed.items():
        start = time.perf_counter()
        for _ in range(FLAGS.warmup):
            entry["call"]()
        entry["warmup_s"] = time.perf_counter() - start
        _log(f"warm-up {fmt}: {entry['warmup_s']:.1f} s")
    times: dict[str, list[float]] = {fmt: [] for fmt in timed}
    for run in range(runs):
        for fmt, entry in timed.items():
            start = time.perf_counter()
            entry["call"]()
            times[fmt].append(time.perf_counter() - start)
        _log(f"run {run + 1}/{runs}: " + ", ".join(
            f"{fmt} {times[fmt][-1]:.2f}s" for fmt in timed))
    return times


def _table(name: str, formats: dict, times: dict[str, list[float]]) -> tuple[str, list[dict]]:
    runs = len(next(iter(times.values())))
    base = statistics.median(times["tflite_float32"]) if "tflite_float32" in times else None
    rows = []
    for fmt, samples in times.items():
        median = statistics.median(samples)
        rows.append({"model": name, "format": fmt, "median_ms": 1000 * median,
                     "min_ms": 1000 * min(samples), "max_ms": 1000 * max(samples),
                     "ratio_to_tflite_float32": median / base if base else None,
                     "bytes": formats[fmt]["bytes"], "runs": len(samples),
                     "prepare_s": formats[fmt]["prepare_s"],
                     "warmup_s": formats[fmt]["warmup_s"]})
    lines = [f"\n{name}: median of {runs} batch-1 calls, {FLAGS.threads} threads",
             "| format | median ms | min–max ms | × TFLite float32 | size MB |",
             "|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['ratio_to_tflite_float32']:.2f}" if r["ratio_to_tflite_float32"] else "–"
        lines.append(f"| {r['format']} | {r['median_ms']:.0f} | {r['min_ms']:.0f}–"
                     f"{r['max_ms']:.0f} | {ratio} | {r['bytes'] / 1e6:.1f} |")
    return "\n".join(lines), rows


def main(argv) -> None:
    del argv
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    unknown = set(FLAGS.formats) - set(TF_FORMATS + TFLITE_FORMATS)
    if unknown:
        raise app.UsageError(f"unknown formats {sorted(unknown)}")
    data = _training_data()
    header = (f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"load average at start {os.getloadavg()[0]:.1f}; TensorFlow {tf.__version__}, "
              f"Keras {keras.__version__}, ai-edge-litert "
              f"{getattr(ai_edge_litert, '__version__', '?')}; XNNPACK on, "
              f"{FLAGS.threads} threads")
    print(header, flush=True)
    results: dict = {"header": header, "models": {}}
    workdir = tempfile.mkdtemp(prefix="stabn_bench_")
    try:
        for name in FLAGS.models:
            build = {"demo": _demo, "r50": _r50}[name]
            _log(f"{name}: building")
            model, clips = build(data)
            formats = _prepare(name, model, clips, workdir)
            times = _time_interleaved(formats, FLAGS.demo_runs if name == "demo" else FLAGS.runs)
            table, rows = _table(name, formats, times)
            print(table, flush=True)
            if "tflite_int8_ops" in formats:
                print(f"{name} int8 op histogram: {json.dumps(formats['tflite_int8_ops'])}",
                      flush=True)
            results["models"][name] = {
                "rows": rows, "params": model.count_params(),
                "input": list(model.input.shape[1:]),
                "ops": {k: v for k, v in formats.items() if k.endswith("_ops")}}
            del model, formats
            keras.backend.clear_session()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_end"] = os.getloadavg()[0]
    print(f"load average at end {results['load_average_end']:.1f}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
