"""CPU inference latency of one clip, every deployment format side by side in one run.

    python benchmarks/inference.py                                  # full R50 and the demo
    python benchmarks/inference.py --models=demo --demo_runs=200
    python benchmarks/inference.py --models=r50 --formats=tflite_float32,tflite_int8

Formats: Keras eager, `tf.function`, `tf.function(jit_compile=True)` (XLA), each also with
the model rebuilt in bfloat16 (`_bf16`: what `--precision=bfloat16` runs), the TF Serving
SavedModel's `serving_default` in float32 and bfloat16 (uint8 frames at the stored size
256/224·S, so its time includes the in-graph crop/resize/normalise), TFLite float32 /
float16 / dynamic / int8 run by LiteRT with XNNPACK (`--threads`; int8 as the export writes
it, the dense layers and softmax in float32, and with every op int8: `tflite_int8_all`, the
model before they were kept), our OpenVINO IR
(`export.openvino`) compiled for float32 and bfloat16, its NNCF int8 IR as the export
writes it (the attention heads, which compute Mt and Ms, in float32) and with every
weighted op in int8 (`openvino_int8_all`, the IR before the heads were kept), and, as
references, OpenVINO reading our own float and int8 `.tflite` files (`openvino_tflite_*`,
compiled at the CPU's best precision as OpenVINO picks by default; so are int8's float
parts). Latency = median of
`--runs` batch-1 calls after `--warmup` calls; the runs are interleaved round-robin over the
formats, so background load on a shared machine hits every format alike and the ratios
(to TFLite float32 and to TFLite int8, today's fastest) stay fair. The header names the CPU
and its matrix features (AMX, AVX512-BF16/VNNI): the ranking depends on them; it also prints
the deploy advice for the CPU's class (`stabn_tf.precision.recommend`).

`--evaluate_videos=8` also times `evaluate --tables=all` of the model (Tables 1 and 2 and
the explanation-quality table) with `--precision=float32` and with `auto`.

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
from stabn_tf.deploy import openvino, tflite  # noqa: E402
from stabn_tf.deploy.saved_model import (  # noqa: E402
    SERVING_DEFAULT,
    export_saved_model,
    frames_tensor,
)
from stabn_tf.disk import write_atomic  # noqa: E402
from stabn_tf.evaluate import TABLES  # noqa: E402
from stabn_tf.inference import LiteRTRunner, load_checkpoint  # noqa: E402
from stabn_tf.inference.openvino import (  # noqa: E402
    cpu_supports_bfloat16,
    import_openvino,
    weights_path,
)
from stabn_tf.models.policy import with_precision  # noqa: E402
from stabn_tf.precision import (  # noqa: E402
    choose_precision,
    cpu_info,
    recommend,
)
from stabn_tf.runs import RunDirectory, RunError  # noqa: E402

FLAGS = flags.FLAGS
TF_FORMATS = ("keras_eager", "tf_function", "tf_xla", "saved_model",
              "tf_function_bf16", "tf_xla_bf16", "saved_model_bf16")
TFLITE_FORMATS = ("tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8",
                  "tflite_int8_all")
OPENVINO_FORMATS = ("openvino_f32", "openvino_bf16", "openvino_int8", "openvino_int8_all",
                    "openvino_tflite_float32", "openvino_tflite_int8")
ALL_FORMATS = TF_FORMATS + TFLITE_FORMATS + OPENVINO_FORMATS
flags.DEFINE_list("models", ["demo", "r50"], "demo and/or r50.")
flags.DEFINE_list("formats", [f for f in ALL_FORMATS if f != "keras_eager"],
                  f"Formats to time, of {list(ALL_FORMATS)}.")
flags.DEFINE_integer("evaluate_videos", 0, "Also time `evaluate --tables=all` on this many "
                     "validation videos, float32 vs auto (0: not).")
flags.DEFINE_integer("evaluate_rounds", 1, "Alternating float32/auto rounds of that timing.")
flags.DEFINE_list("eval_data", None, "Validation TFRecords for --evaluate_videos; default: "
                  "the demo run's validation split.")
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


def _openvino_bf16() -> bool:
    """Whether OpenVINO's CPU plugin has bf16 units to use on this machine."""
    return cpu_supports_bfloat16(import_openvino().Core())


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
    model = stabn_tf.STABN.from_preset("stabn_r50_ssv2")
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
    bf16 = tflite.deployment_model(with_precision(model, "bfloat16"))
    for suffix, graph_model in (("", deploy), ("_bf16", bf16)):
        graph = tf.function(lambda x, m=graph_model: m(x, training=False))
        add("tf_function" + suffix, lambda g=graph: (lambda: numpy_outputs(g(clip)),
                                                      weight_bytes))
        xla = tf.function(lambda x, m=graph_model: m(x, training=False), jit_compile=True)
        add("tf_xla" + suffix, lambda g=xla: (lambda: numpy_outputs(g(clip)), weight_bytes))

    def saved(precision: str):
        path = export_saved_model(model, os.path.join(workdir, f"serving_{precision}"), name,
                                  precision=precision)
        serving = tf.saved_model.load(path).signatures[SERVING_DEFAULT]
        side = preprocess.eval_short_side(model.preprocessor.image_size)
        frames = frames_tensor(np.random.default_rng(0).integers(
            0, 256, (1, model.num_frames, side, side, 3), dtype=np.uint8))
        return (lambda: numpy_outputs(serving(frames=frames))), _dir_bytes(path)

    add("saved_model", lambda: saved("float32"))
    add("saved_model_bf16", lambda: saved("bfloat16"))
    wanted = [fmt for fmt in TFLITE_FORMATS + OPENVINO_FORMATS if fmt in FLAGS.formats]
    edge = tflite.deployment_model(model, edge=True, batch_size=1) if wanted else None
    flatbuffers: dict[str, bytes] = {}

    def flatbuffer(mode: str) -> bytes:
        """The TFLite model of `mode`: "int8" as the export writes it (`tflite.KEEP_FLOAT`
        in float32), "int8_all" with every op int8."""
        if mode not in flatbuffers:
            keep = tflite.KEEP_FLOAT if mode == "int8" else ()
            flatbuffers[mode] = tflite.convert_to_tflite(
                edge, quantize=mode[:4] if mode.startswith("int8") else mode,
                representative_data=clips if mode.startswith("int8") else None,
                keep_float=keep, notify=_log)
            if mode == "int8_all":
                assert not tflite.quantization_violations(flatbuffers[mode]), \
                    "int8 left float convs"
            if FLAGS.keep_models:
                os.makedirs(FLAGS.keep_models, exist_ok=True)
                with open(os.path.join(FLAGS.keep_models, f"{name}_{mode}.tflite"), "wb") as f:
                    f.write(flatbuffers[mode])
        return flatbuffers[mode]

    for fmt in [f for f in wanted if f in TFLITE_FORMATS]:

        def lite(fmt=fmt):
            mode = {"float32": "none"}.get(fmt[len("tflite_"):], fmt[len("tflite_"):])
            model_bytes = flatbuffer(mode)
            runner = LiteRTRunner(model_content=model_bytes, num_threads=FLAGS.threads)
            formats[fmt + "_ops"] = {f"{op} [{kind}]": n for (op, kind), n in
                                     tflite.op_report(model_bytes).most_common()}
            return (lambda: runner.run(clip)), len(model_bytes)

        add(fmt, lite)

    irs: dict[str, object] = {}

    def openvino_ir(quantize: str):
        """Our IR, float or NNCF int8 as `export.openvino` writes it (the attention heads
        in float32), or "int8_all" (every weighted op int8, as before), and its size."""
        if quantize not in irs:
            ir = openvino.convert_to_openvino(openvino.ir_graph(model, quantize[:4]))
            if quantize.startswith("int8"):
                keep = openvino.attention_heads(ir) if quantize == "int8" else []
                ir = openvino.quantize_int8(ir, clips, keep_float=keep)
            path = os.path.join(workdir, f"{name}_{quantize}.xml")
            openvino.save_ir(ir, path)
            irs[quantize] = (ir, os.path.getsize(path) + os.path.getsize(weights_path(path)))
        return irs[quantize]

    def compiled_call(compiled):
        request = compiled.create_infer_request()
        return lambda: request.infer({0: clip})

    def ov_ir(quantize: str, precision: str):
        ir, size = openvino_ir(quantize)
        return compiled_call(openvino.compile_ir(ir, precision, FLAGS.threads)), size

    def ov_reads_tflite(mode: str, precision: str):
        path = os.path.join(workdir, f"{name}_{mode}.tflite")
        write_atomic(path, flatbuffer(mode))
        ir = import_openvino().Core().read_model(path)
        return compiled_call(openvino.compile_ir(ir, precision, FLAGS.threads)), \
            len(flatbuffer(mode))

    # The CPU's best OpenVINO precision for the IRs read from TFLite and for int8's float
    # parts, as OpenVINO itself picks by default.
    best = "bfloat16" if OPENVINO_FORMATS and _openvino_bf16() else "float32"
    add("openvino_f32", lambda: ov_ir("none", "float32"))
    if best == "bfloat16":
        add("openvino_bf16", lambda: ov_ir("none", "bfloat16"))
    add("openvino_int8", lambda: ov_ir("int8", best))
    add("openvino_int8_all", lambda: ov_ir("int8_all", best))
    add("openvino_tflite_float32", lambda: ov_reads_tflite("none", best))
    add("openvino_tflite_int8", lambda: ov_reads_tflite("int8", best))
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
    medians = {fmt: statistics.median(samples) for fmt, samples in times.items()}
    rows = []
    for fmt, samples in times.items():
        row = {"model": name, "format": fmt, "median_ms": 1000 * medians[fmt],
               "min_ms": 1000 * min(samples), "max_ms": 1000 * max(samples),
               "bytes": formats[fmt]["bytes"], "runs": len(samples),
               "prepare_s": formats[fmt]["prepare_s"], "warmup_s": formats[fmt]["warmup_s"]}
        for base in ("tflite_float32", "tflite_int8"):
            row[f"ratio_to_{base}"] = medians[fmt] / medians[base] if base in medians else None
        rows.append(row)
    lines = [f"\n{name}: median of {runs} batch-1 calls, {FLAGS.threads} threads",
             "| format | median ms | min–max ms | × TFLite float32 | × TFLite int8 | size MB |",
             "|---|---|---|---|---|---|"]

    def ratio(value: float | None) -> str:
        return f"{value:.2f}" if value else "–"

    for r in rows:
        lines.append(f"| {r['format']} | {r['median_ms']:.0f} | {r['min_ms']:.0f}–"
                     f"{r['max_ms']:.0f} | {ratio(r['ratio_to_tflite_float32'])} | "
                     f"{ratio(r['ratio_to_tflite_int8'])} | {r['bytes'] / 1e6:.1f} |")
    lines += _speedups(medians)
    return "\n".join(lines), rows


# The comparisons the precision work is judged by: (faster path, reference path).
SPEEDUPS = (("tf_function_bf16", "tf_function"), ("tf_xla_bf16", "tf_xla"),
            ("saved_model_bf16", "saved_model"), ("openvino_bf16", "tf_function"),
            ("openvino_bf16", "tflite_float32"), ("openvino_int8", "tflite_int8"),
            ("openvino_int8", "openvino_tflite_int8"), ("openvino_int8", "openvino_int8_all"),
            ("tflite_int8", "tflite_int8_all"))


def _speedups(medians: dict[str, float]) -> list[str]:
    """Speed-ups of the pairs in SPEEDUPS that were timed, and the fastest path's lead over
    TFLite int8 and over OpenVINO reading our int8 .tflite."""
    lines = [f"- {fast} is {medians[slow] / medians[fast]:.2f}× faster than {slow}"
             for fast, slow in SPEEDUPS if fast in medians and slow in medians]
    fastest = min(medians, key=medians.get)
    for reference in ("tflite_int8", "openvino_tflite_int8"):
        if reference in medians:
            lines.append(f"- fastest: {fastest}, {medians[reference] / medians[fastest]:.2f}× "
                         f"faster than {reference}")
    return [""] + lines if lines else []


def _time_evaluate(model, name: str, workdir: str) -> list[str]:
    """`evaluate --tables=all` of `model` on --evaluate_videos validation videos of the demo
    run (upscaled to the model's size), float32 then auto then float32 then auto."""
    from stabn_tf.evaluate import run as evaluate

    run = RunDirectory.of_checkpoint(FLAGS.checkpoint)
    files = FLAGS.eval_data or (run.data_patterns()[1] if run else None)
    if not files:
        raise app.UsageError("no validation TFRecords for --evaluate_videos: pass --eval_data")
    checkpoint = os.path.join(workdir, f"{name}.keras")
    model.save(checkpoint)
    auto = choose_precision("auto")
    times: dict[str, list[float]] = {"float32": [], "auto": []}
    for precision in ["float32", "auto"] * FLAGS.evaluate_rounds:
        _log(f"{name}: evaluate --tables=all --precision={precision}")
        start = time.perf_counter()
        evaluate(checkpoint=checkpoint, files=files, tables=list(TABLES),
                 max_videos=FLAGS.evaluate_videos, batch_size=2, precision=precision,
                 log=lambda text: None)
        times[precision].append(time.perf_counter() - start)
        _log(f"  {times[precision][-1]:.1f} s")
    f32, fast = statistics.median(times["float32"]), statistics.median(times["auto"])
    return [f"\n{name}: evaluate --tables=all on {FLAGS.evaluate_videos} videos "
            f"({FLAGS.evaluate_rounds} rounds, alternating): float32 {f32:.1f} s, auto "
            f"({auto.describe()}) {fast:.1f} s: {f32 / fast:.2f}× faster"]


def main(argv) -> None:
    del argv
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    unknown = set(FLAGS.formats) - set(ALL_FORMATS)
    if unknown:
        raise app.UsageError(f"unknown formats {sorted(unknown)}")
    data = _training_data()
    header = (f"CPU: {cpu_info().describe()}, {os.cpu_count()} cores "
              f"({platform.machine()}), load average at start {os.getloadavg()[0]:.1f}; "
              f"TensorFlow {tf.__version__}, Keras {keras.__version__}, ai-edge-litert "
              f"{getattr(ai_edge_litert, '__version__', '?')} (XNNPACK on), OpenVINO "
              f"{import_openvino().get_version().split('-')[0]}; {FLAGS.threads} threads; "
              f"{choose_precision('auto').describe()}")
    print(header, flush=True)
    print(recommend(cpu_info()).describe(), flush=True)
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
            if FLAGS.evaluate_videos:
                print("\n".join(_time_evaluate(model, name, workdir)), flush=True)
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
        write_atomic(FLAGS.output, json.dumps(results, indent=1))


if __name__ == "__main__":
    app.run(main)
