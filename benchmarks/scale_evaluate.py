"""`evaluate` at two sizes: time per video of Tables 1+2 and of the explanation-quality
table, and the evaluation's peak memory, on N and more videos of a tiny model.

    python benchmarks/scale_evaluate.py --sizes=100,1000

The scale benchmark's contract (`benchmarks/scale.py` runs each stage module so):
`prepare(workdir, n)` makes the inputs, untimed: `n` validation records (the tiny
synthetic set's 24 validation videos written over and over into 4 shards: records cost
nothing to make, and evaluation reads and scores each as it would a new one) and a tiny
ST-ABN `.keras`; `run(workdir, n)` is what is timed, in its own process, and returns
further figures (seconds per video of each table group). Run alone, each size's `run`
goes in a child process whose wall time and peak RSS (`os.wait4`'s rusage of that child)
are printed with the growth from the smallest size. The header names the CPU, its
features and the load average: the machine is shared.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

#: Tables 1+2: one clip and two per video, the four inversion settings; the quality
#: table of ST-ABN alone: its attention, Grad-CAM at res5, random and centre prior.
SETTINGS = dict(num_clips=[1, 2], batch_size=8, deletion_grid=2, gradcam_layers=["res5"],
                precision="float32")
SHARDS = 4
GROUPS = {"tables_1_2": "Tables 1+2", "quality": "quality table"}


def prepare(workdir: pathlib.Path, n: int) -> None:
    """`workdir/records/validation-*.tfrecord` (n videos in `SHARDS` shards, with
    labels.txt) and `workdir/stabn.keras`."""
    import keras  # noqa: PLC0415 (TensorFlow is loaded by the stage that needs it)
    import tensorflow as tf  # noqa: PLC0415 (as above)

    import stabn_tf  # noqa: PLC0415 (as above)
    from stabn_tf.data import read_labels  # noqa: PLC0415 (as above)
    from stabn_tf.data.synthetic import ensure_synthetic_tfrecords  # noqa: PLC0415

    workdir = pathlib.Path(workdir)
    source = ensure_synthetic_tfrecords(workdir / "cache", num_train_per_class=1,
                                        num_val_per_class=2, resolution=48, num_frames=8,
                                        progress=False)
    records = [r.numpy() for r in tf.data.TFRecordDataset(
        sorted(tf.io.gfile.glob(f"{source}/validation-*.tfrecord")))]
    out = workdir / "records"
    out.mkdir(parents=True, exist_ok=True)
    per_shard = math.ceil(n / SHARDS)
    for s in range(SHARDS):
        with tf.io.TFRecordWriter(str(out / f"validation-{s:05d}-of-{SHARDS:05d}.tfrecord")) \
                as writer:
            for i in range(s * per_shard, min(n, (s + 1) * per_shard)):
                writer.write(records[i % len(records)])
    labels = read_labels(os.path.join(source, "labels.txt"))
    (out / "labels.txt").write_text("\n".join(labels) + "\n")
    keras.utils.set_random_seed(0)
    stabn_tf.STABN.from_preset("stabn_tiny", class_names=labels).save(workdir / "stabn.keras")


def run(workdir: pathlib.Path, n: int) -> dict:
    """`evaluate` of Tables 1+2, then of the quality table, on the n videos; seconds per
    video of each."""
    from stabn_tf import evaluate  # noqa: PLC0415 (TensorFlow: only in the timed process)

    workdir = pathlib.Path(workdir)
    common = dict(checkpoint=str(workdir / "stabn.keras"),
                  files=str(workdir / "records" / "validation-*.tfrecord"),
                  log=lambda line: None, progress=False, restart=True, **SETTINGS)
    figures = {}
    for name, tables in (("tables_1_2", ["table1", "table2"]), ("quality", ["explanation"])):
        start = time.perf_counter()
        results = evaluate.run(tables=tables, output_dir=str(workdir / name), **common)
        seconds = time.perf_counter() - start
        videos = (results["table1"]["3D ResNet-18 ×0.125 + ST-ABN"]["videos"]
                  if "table1" in results else results["explanation"]["videos"])
        assert videos == n, (name, videos, n)
        figures[f"{name}_seconds"] = round(seconds, 2)
        figures[f"{name}_ms_per_video"] = round(1000 * seconds / n, 2)
    return figures


# --- run alone ----------------------------------------------------------------------------

FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Only when run alone: `scale.py` imports this module and has flags of these names."""
    flags.DEFINE_list("sizes", ["100", "1000"], "Numbers of videos (the first is the base "
                      "of the growth).")
    flags.DEFINE_string("workdir", "", "Where the inputs go (default: a temporary folder).")


def _child(workdir: pathlib.Path, n: int) -> tuple[dict, float, int]:
    """`run(workdir, n)` in a child process: (its figures, wall seconds, peak RSS bytes)."""
    code = ("import json, pathlib, sys; sys.path.insert(0, sys.argv[1]); "
            "import scale_evaluate as s; "
            "print(json.dumps(s.run(pathlib.Path(sys.argv[2]), int(sys.argv[3]))))")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, os.path.dirname(__file__),
                             str(workdir), str(n)], stdout=subprocess.PIPE,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status:
        raise SystemExit(f"run({n}) failed (status {status})")
    return json.loads(out.decode().strip().splitlines()[-1]), seconds, usage.ru_maxrss * 1024


def main(argv) -> None:
    del argv
    from stabn_tf.precision import cpu_info  # noqa: PLC0415 (flags parsed first)

    sizes = [int(s) for s in FLAGS.sizes]
    print(f"CPU: {cpu_info().describe()}, {os.cpu_count()} cores ({platform.machine()}); "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; Python "
          f"{platform.python_version()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        root = pathlib.Path(FLAGS.workdir or temporary)
        for n in sizes:
            workdir = root / f"n{n}"
            prepare(workdir, n)
            figures, seconds, rss = _child(workdir, n)
            rows.append((n, figures, seconds, rss))
            print(f"{n} videos: {json.dumps(figures)}; whole run {seconds:.1f} s, peak RSS "
                  f"{rss / 2**20:.0f} MiB (load average {os.getloadavg()[0]:.1f})",
                  flush=True)
    base_n, base, _, base_rss = rows[0]
    print("\n| videos | Tables 1+2 ms/video | quality ms/video | run s | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for n, figures, seconds, rss in rows:
        print(f"| {n} | {figures['tables_1_2_ms_per_video']} | "
              f"{figures['quality_ms_per_video']} | {seconds:.1f} | {rss / 2**20:.0f} |")
    for n, figures, _, rss in rows[1:]:
        growth = {k: figures[f"{k}_seconds"] / base[f"{k}_seconds"] for k in GROUPS}
        print(f"\n{base_n} → {n} videos ({n / base_n:.0f}×): Tables 1+2 time "
              f"{growth['tables_1_2']:.2f}×, quality time {growth['quality']:.2f}× "
              f"(linear: {n / base_n:.0f}×); peak RSS {rss / base_rss:.2f}× "
              f"({(rss - base_rss) / 2**20:+.0f} MiB)")
        for k, name in GROUPS.items():
            # time = fixed + n · marginal: the fixed part (loading, tracing each pass,
            # opening each shard) is what the smaller size's time per video mostly is.
            marginal = (figures[f"{k}_seconds"] - base[f"{k}_seconds"]) / (n - base_n)
            fixed = base[f"{k}_seconds"] - base_n * marginal
            print(f"  {name}: {1000 * marginal:.1f} ms per further video, {fixed:.0f} s "
                  "fixed")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
