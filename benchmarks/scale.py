"""Time and peak memory per stage at N and 10·N items, and how they grow.

    PYTHONPATH=$PWD python benchmarks/scale.py                       # 1,800 and 18,000
    PYTHONPATH=$PWD python benchmarks/scale.py --stages=boxes,boxes_1p,boxes_main --sizes=18000
    PYTHONPATH=$PWD python benchmarks/scale.py --stages=boxes --sizes=18000,180000

Each stage is a module with two functions: `prepare(workdir, n)` makes its inputs
(untimed: generated cheaply, reused across runs of the same size) and `run(workdir, n)`
does the work and returns extra figures to print (a dict). Both run in a fresh Python
process of their own, so a stage's peak memory is its own: `ru_maxrss` of the process
(`os.wait4`) and the peak of the summed RSS of it and its children (sampled every
0.1 s, for stages with worker processes). Stages (`STAGES`):

- `boxes`: `load_box_files` streaming Something-Else's four part files (N videos,
  generated in the published shape, ~22 KB a video) and a simple-format file of the same
  N videos, keeping every video's boxes (as a converter listing them all would); the
  files are read at once by worker processes, one per core (the converter's default).
- `boxes_1p`: the same in one process (`workers=1`): the reader's cost per core.
- `boxes_main`: the same files read by the json.load reader (`git show a384790:...`), to
  compare per-video rates side by side; it holds the whole files as Python objects, so
  it is skipped above `MAX_N` videos.
- `convert`: `convert_dataset` of an SSv2 layout of tiny videos (16×16 px, 45 frames) with
  the N-video box files; `scale_convert.LISTED` says how many videos the layout lists.
- `resume`: the same conversion again, with nothing left to do.
- `convert_all`: the converter's command over a layout listing all N videos, stopped after
  a few shards and run again (it resumes): set-up time and peak memory of both runs
  (`scale_convert_all.py`).
- `evaluate`: Tables 1+2 and the explanation-quality table of a tiny model on N
  synthetic validation videos (`scale_evaluate.py`; sizes of 100 and 1,000 suit it).
- `report`: the explanation browser of a tiny model over N generated clips
  (`scale_report.py`, which also times the 25,000-card gallery when run alone).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

#: Stage name → module (in benchmarks/) with `prepare(workdir, n)` and `run(workdir, n)`.
STAGES = {
    "boxes": "scale_boxes",
    "boxes_1p": "scale_boxes_one",
    "boxes_main": "scale_boxes_main",
    "convert": "scale_convert",
    "resume": "scale_resume",
    "convert_all": "scale_convert_all",
    "evaluate": "scale_evaluate",
    "report": "scale_report",
}

flags.DEFINE_list("stages", ["boxes", "boxes_1p", "boxes_main", "convert", "resume"],
                  f"Stages to run, in order: {', '.join(STAGES)}.")
flags.DEFINE_list("sizes", ["1800", "18000"], "Item counts N (videos); growth is stated "
                  "between consecutive sizes.")
flags.DEFINE_string("workdir", os.path.join(tempfile.gettempdir(), "stabn_scale"),
                    "Generated inputs and outputs (a folder per size).")
flags.DEFINE_bool("keep", True, "Keep the workdir (generated inputs are reused).")
flags.DEFINE_string("markdown", None, "Also append the results table to this file.")
flags.DEFINE_string("child", None, "Internal: `stage:step:n:workdir:result_file` runs one "
                    "step in this process.")
FLAGS = flags.FLAGS


def _child(spec: str) -> None:
    stage, step, n, workdir, result_file = spec.split(":", 4)
    module = importlib.import_module(STAGES[stage])
    folder = pathlib.Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    out = getattr(module, step)(folder, int(n))
    pathlib.Path(result_file).write_text(json.dumps(out or {}))


def _tree_rss(pid: int) -> int:
    """RSS bytes of `pid` and its descendants (0 once gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_step(stage: str, step: str, n: int, workdir: str) -> dict:
    """One step in a fresh process: seconds, peak RSS (own, and with its children)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result_file = f.name
    load = os.getloadavg()[0]
    cmd = [sys.executable, os.path.abspath(__file__),
           f"--child={stage}:{step}:{n}:{workdir}:{result_file}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak, done = [0], threading.Event()

    def sample():
        while not done.wait(0.1):
            peak[0] = max(peak[0], _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(output.decode(errors="replace")[-4000:])
        raise SystemExit(f"stage {stage} {step} at N={n} failed (exit {proc.returncode})")
    extra = json.loads(pathlib.Path(result_file).read_text())
    os.remove(result_file)
    return {"stage": stage, "step": step, "n": n, "seconds": seconds,
            "peak_rss_mb": usage.ru_maxrss / 1024, "tree_peak_rss_mb": peak[0] / 2**20,
            "cpu_s": usage.ru_utime + usage.ru_stime, "load": load, **extra}


def _header() -> str:
    from stabn_tf.precision import cpu_info

    return (f"CPU: {cpu_info().describe()}, {os.cpu_count()} cores; load average "
            f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}; Python "
            f"{sys.version.split()[0]}")


_SHOWN = ("seconds", "cpu_s", "peak_rss_mb", "tree_peak_rss_mb", "load")


def _row(r: dict) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in r.items()
                      if k not in ("stage", "step", "n", *_SHOWN))
    return (f"| {r['stage']} | {r['n']:,} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['peak_rss_mb']:,.0f} | {r['tree_peak_rss_mb']:,.0f} | {r['load']:.1f} | "
            f"{extra} |")


def _growth(results: list[dict]) -> list[str]:
    lines = []
    by_stage: dict[str, list[dict]] = {}
    for r in results:
        by_stage.setdefault(r["stage"], []).append(r)
    for stage, rs in by_stage.items():
        for a, b in zip(rs, rs[1:]):
            lines.append(f"- {stage}: N {a['n']:,} → {b['n']:,} (×{b['n'] / a['n']:g}): time "
                         f"×{b['seconds'] / a['seconds']:.2f}, CPU ×{b['cpu_s'] / a['cpu_s']:.2f}"
                         f", peak RSS ×{b['peak_rss_mb'] / a['peak_rss_mb']:.2f} "
                         f"({a['peak_rss_mb']:,.0f} → {b['peak_rss_mb']:,.0f} MB)")
    for old in (r for r in results if r["stage"] == "boxes_main" and "videos" in r):
        for new in (r for r in results if r["stage"] in ("boxes", "boxes_1p")
                    and r["n"] == old["n"]):
            lines.append(f"- box reading at N={old['n']:,}, per video: main's reader "
                         f"{old['ms_per_video']} ms ({old['cpu_ms_per_video']} ms CPU), "
                         f"{new['stage']} {new['ms_per_video']} ms ({new['cpu_ms_per_video']}"
                         f" ms CPU): {old['ms_per_video'] / new['ms_per_video']:.2f}× faster "
                         f"({old['cpu_ms_per_video'] / new['cpu_ms_per_video']:.2f}× in CPU "
                         "time)")
    return lines


def main(argv):
    del argv
    if FLAGS.child:
        _child(FLAGS.child)
        return
    unknown = set(FLAGS.stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
    sizes = [int(s) for s in FLAGS.sizes]
    header = _header()
    print(header, flush=True)
    table = ["| stage | N | s | CPU s | peak RSS MB | with children MB | load | figures |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    print("\n".join(table), flush=True)
    results = []
    for n in sizes:
        workdir = os.path.join(FLAGS.workdir, f"n{n}")
        for stage in FLAGS.stages:
            module = importlib.import_module(STAGES[stage])
            limit = getattr(module, "MAX_N", None)
            if limit is not None and n > limit:
                print(f"| {stage} | {n:,} | skipped: above its MAX_N {limit:,} |", flush=True)
                continue
            prepared = run_step(stage, "prepare", n, workdir)
            result = run_step(stage, "run", n, workdir)
            result["prepare_s"] = round(prepared["seconds"], 1)
            results.append(result)
            table.append(_row(result))
            print(table[-1], flush=True)
    growth = _growth(results)
    print("\n".join(["", *growth]), flush=True)
    if FLAGS.markdown:
        with open(FLAGS.markdown, "a", encoding="utf-8") as f:
            f.write("\n".join([f"`{' '.join(sys.argv)}`", "", header, "", *table, "", *growth,
                               "", ""]))
    if not FLAGS.keep:
        shutil.rmtree(FLAGS.workdir, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
