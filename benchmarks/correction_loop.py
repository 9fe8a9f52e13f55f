"""The correction loop, measured: draw where and when for a few clips, fine-tune, compare.

    python -m stabn_tf.train --flagfile=configs/demo.flags --seed=1 \
        --output_dir=runs/demo_seed1
    python benchmarks/correction_loop.py --seed=1 \
        --checkpoint=runs/demo_seed1/checkpoints/final.keras [--draw=direct]

Starts from an unsupervised demo model trained with `--seed` (its synthetic data and
initialisation; checked against the run's config.json, whose synthetic set is used),
whose spatial attention Ms rarely points at the acting object. Then, as a person would
with the explanation browser's editor:

1. pick `--num_clips` training clips (round-robin over the classes, shuffled by
   `--seed`);
2. build the browser over those clips and draw their corrections in its editor, in
   headless Chromium (`benchmarks/editor_driver.py`): boxes ("where") on the frames a
   clip page shows, the frames the action happens in ticked ("when"), exported from the
   Corrections page as a box file in the simple format of `docs/boxes.md`. The synthetic
   ground truth tells the driver where to drag, as a person's eye would. `--draw=direct`
   writes the same boxes and action frames without the browser;
3. convert the dataset with `--boxes=<that file> --noground_truth_supervision`: only the
   corrected clips carry supervision, the synthetic ground truth stays for the metrics;
4. fine-tune from the checkpoint with the recipe `--recipe`
   (configs/correction_finetune.flags, docs/explanations.md's) and `--seed` (`--epochs` overrides
   its length, each length from the checkpoint);
5. evaluate the model before (cached in the work folder) and after on the held-out
   validation clips with `python -m stabn_tf.evaluate --tables=table1,explanation`
   (pointing game, mass in box and Mt AUROC against the synthetic ground truth; top-1).

Prints a table and writes `benchmarks/results/correction_loop_seed<seed>.json`
(`--results`), with the fine-tune's wall and CPU seconds and the load average. The goal:
held-out pointing and Mt AUROC at least 0.8 with 20 corrected clips, in a fine-tune of at
most 2 minutes on 2 quiet cores, top-1 lower by at most one point.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from stabn_tf.disk import write_atomic
from stabn_tf.precision import cpu_info
from stabn_tf.runs import RunDirectory, data_patterns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", os.path.join(REPO, "runs/demo/checkpoints/final.keras"),
                    "The unsupervised model to correct (trained by configs/demo.flags).")
flags.DEFINE_integer("seed", 0, "The demo model's seed (`stabn_tf.train --seed`: its "
                     "synthetic data and initialisation; checked against the run's "
                     "config.json). Also picks the clips and seeds the fine-tune.")
flags.DEFINE_string("raw_dir", "", "The synthetic set in SSv2 layout (default: the one the "
                    "checkpoint's run trained on, from its config.json).")
flags.DEFINE_string("work_dir", "/tmp/correction_loop", "Box file, records, runs.")
flags.DEFINE_integer("num_clips", 20, "Training clips corrected.")
flags.DEFINE_enum("draw", "editor", ["editor", "direct"], "editor: draw the corrections in "
                  "the explanation browser's editor in headless Chromium (the person's "
                  "path); direct: write the same boxes and action frames straight into a "
                  "box file (no browser, no report: for trying recipes quickly).")
flags.DEFINE_string("recipe", os.path.join(REPO, "configs/correction_finetune.flags"),
                    "Flag file of the fine-tune (docs/explanations.md's recipe).")
flags.DEFINE_list("epochs", [], "Fine-tuning lengths tried (epochs, each from the "
                  "checkpoint); default: the recipe's.")
flags.DEFINE_string("precision", "float32", "Precision of the evaluations.")
flags.DEFINE_string("results", "", "Where the results JSON goes (default: "
                    "benchmarks/results/correction_loop_seed<--seed>.json).")


def _run(args: list[str], log: str) -> tuple[float, float]:
    """Runs one of the project's CLIs (with this checkout's code), output to `log`;
    returns its wall time and CPU time (user + system, all its threads): on a shared
    machine the CPU seconds say what the work costs, the wall time what it took there.
    A failure stops the benchmark with the log's tail."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print("$ " + " ".join(args), flush=True)
    t0, cpu0 = time.time(), _children_cpu()
    with open(log, "w") as out:
        code = subprocess.call(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if code:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"failed (exit {code}), log {log}:\n{tail}")
    return time.time() - t0, _children_cpu() - cpu0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- 1. which clips --------------------------------------------------------------------


def select_clips(raw_dir: str, num_clips: int, seed: int) -> list[str]:
    """`num_clips` training ids, taken round-robin over the classes (each class's order
    shuffled by `seed`), so the corrections cover every class before any gets two."""
    with open(os.path.join(raw_dir, "something-something-v2-train.json")) as f:
        entries = json.load(f)
    by_class: dict[str, list[str]] = {}
    for entry in entries:
        by_class.setdefault(entry["template"], []).append(str(entry["id"]))
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(sorted(ids))) for _, ids in sorted(by_class.items())]
    picked: list[str] = []
    while len(picked) < num_clips and any(queues):
        for queue in queues:
            if queue and len(picked) < num_clips:
                picked.append(str(queue.pop(0)))
    return picked


# --- 2. the corrections ----------------------------------------------------------------


def picked_records(raw_dir: str, clip_ids: list[str], path: str) -> str:
    """The picked clips' training records (from the demo's converted set beside
    `raw_dir`) in one TFRecord file: the clips the explanation browser is built over."""
    import tensorflow as tf

    from stabn_tf.data.tfrecord import CLIP_ID
    shards = sorted(glob.glob(os.path.join(os.path.dirname(raw_dir), "tfrecords",
                                           "train-*.tfrecord")))
    if not shards:
        raise SystemExit(f"no converted training shards beside {raw_dir}: run the demo first")
    wanted, found = set(clip_ids), set()
    with tf.io.TFRecordWriter(path) as writer:
        for raw in tf.data.TFRecordDataset(shards).as_numpy_iterator():
            example = tf.train.SequenceExample.FromString(raw)
            clip = example.context.feature[CLIP_ID].bytes_list.value[0].decode()
            if clip in wanted:
                writer.write(raw)
                found.add(clip)
    if found != wanted:
        raise SystemExit(f"clips not in the training shards: {sorted(wanted - found)}")
    return path


def truth_corrections(truth: dict, shown) -> tuple[dict, list[int]]:
    """What a person corrects on one clip, read from the synthetic ground truth: a box on
    each shown frame the object is visible in ({frame: [box]}) and the shown frames the
    action happens in."""
    boxes = {int(i): [truth["box"][i]] for i in sorted(set(shown))
             if truth["box"][i][2] > truth["box"][i][0]
             and truth["box"][i][3] > truth["box"][i][1]}
    return boxes, sorted({int(i) for i in shown if truth["active"][i]})


def draw_corrections(clip_ids: list[str], ground_truth: dict, raw_dir: str,
                     work_dir: str) -> tuple[str, dict, str]:
    """The person's step, done in the explanation browser's editor in headless Chromium:
    a report over the picked clips, then on each clip page a box dragged around the
    acting object on every shown frame it is visible in (the synthetic ground truth
    stands in for the person's eye), the frames it acts in ticked, and the Corrections
    page's Export. Returns the exported box file, its content and how it was made."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import editor_driver

    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    chromedriver = shutil.which("chromedriver")
    if not (browser and chromedriver):
        raise SystemExit("needs headless Chromium and its driver on PATH (Debian: apt-get "
                         "install chromium chromium-driver), or --draw=direct")
    records = picked_records(raw_dir, clip_ids, os.path.join(work_dir, "picked.tfrecord"))
    site = os.path.join(work_dir, "site")
    _run([sys.executable, "-m", "stabn_tf.report", f"--checkpoint={FLAGS.checkpoint}",
          f"--files={records}", f"--output_dir={site}", "--tables=none",
          f"--precision={FLAGS.precision}"], os.path.join(work_dir, "report.log"))
    downloads = os.path.join(work_dir, "downloads")
    os.makedirs(downloads, exist_ok=True)
    # Both named, so Selenium looks for nothing on the network.
    driver = editor_driver.chrome(downloads, browser, chromedriver)
    try:
        boxes, active = {}, {}
        for clip in clip_ids:
            shown = editor_driver.open_clip(driver, site, clip)["frame_indices"]
            boxes[clip], active[clip] = truth_corrections(ground_truth[clip], shown)
        t0 = time.time()
        path = editor_driver.draw_corrections(
            driver, site, boxes, active, output=os.path.join(work_dir, "exported.json"),
            download_dir=downloads)
        seconds = time.time() - t0
    finally:
        driver.quit()
    with open(path, encoding="utf-8") as f:
        corrections = json.load(f)
    how = (f"drawn in the explanation browser's editor (headless Chromium, {seconds:.0f} s "
           f"for {len(clip_ids)} clips): boxes on the shown frames, action frames ticked, "
           "exported from the Corrections page")
    return path, corrections, how


def write_corrections(clip_ids: list[str], ground_truth: dict, num_frames: int,
                      work_dir: str) -> tuple[str, dict, str]:
    """`--draw=direct`: the boxes and action frames the editor path would draw (the
    frames the model samples, as its clip pages show them), written straight into a box
    file. The editor's export differs only in rounding boxes to its canvas pixels and
    cutting them at the shown crop, which the converter's masks do anyway."""
    from stabn_tf.data import sampling

    corrections = {}
    for clip in clip_ids:
        truth = ground_truth[clip]
        shown = sampling.segment_indices(len(truth["box"]), num_frames,
                                         training=False).numpy()[0].tolist()
        boxes, active = truth_corrections(truth, shown)
        corrections[clip] = {"frames": {str(i): b for i, b in boxes.items()},
                             "active_frames": active}
    path = os.path.join(work_dir, "direct.json")
    write_atomic(path, json.dumps(corrections, indent=1))
    how = ("written directly (--draw=direct): the boxes and action frames the editor path "
           "draws, without the browser")
    return path, corrections, how


# --- 3.-5. convert, fine-tune, evaluate ------------------------------------------------


def convert(raw_dir: str, boxes_file: str, out: str, log: str) -> float:
    return _run([sys.executable, "-m", "stabn_tf.data.convert", "--dataset=ssv2",
                 f"--input_dir={raw_dir}", f"--output_dir={out}", f"--boxes={boxes_file}",
                 "--noground_truth_supervision", "--splits=train,validation",
                 "--noprogress"], log)[0]


def fine_tune(data: str, out: str, epochs: int | None, log: str) -> tuple[float, float]:
    """The recipe's fine-tune from the checkpoint on the converted records; its wall and
    CPU seconds."""
    return _run([sys.executable, "-m", "stabn_tf.train", f"--flagfile={FLAGS.recipe}",
                 f"--train_files={data}/train-*.tfrecord",
                 f"--val_files={data}/validation-*.tfrecord", f"--init={FLAGS.checkpoint}",
                 f"--output_dir={out}", f"--seed={FLAGS.seed}", "--overwrite",
                 *([f"--epochs={epochs}"] if epochs else [])], log)


def recipe_flags(path: str) -> list[str]:
    """The recipe file's own flags (comments dropped), for the results."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip().startswith("--")]


def evaluate(checkpoint: str, data: str, out: str, log: str) -> dict:
    seconds, _ = _run([sys.executable, "-m", "stabn_tf.evaluate", f"--checkpoint={checkpoint}",
                       f"--files={data}/validation-*.tfrecord", "--tables=table1,explanation",
                       "--num_clips=1", "--gradcam_layers=", f"--precision={FLAGS.precision}",
                       f"--output_dir={out}"], log)
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    return {**summarise(results), "evaluate_seconds": round(seconds, 1)}


def summarise(results: dict) -> dict:
    """The numbers compared: ST-ABN attention's pointing, mass in box and Mt AUROC, and
    top-1 of both branches (one clip per video) with the clips they got right."""
    (table1,) = results["table1"].values()
    videos = table1["videos"]
    quality = next(m for m in results["explanation"]["methods"]
                   if m["method"].startswith("ST-ABN attention"))
    top1 = {branch: table1["1"][branch]["top1"] for branch in ("perception", "attention")}
    return {"pointing": quality["pointing_game"], "mass_in_box": quality["mass_in_box"],
            "mt_auroc": quality["temporal_auroc"], "frames_scored": quality["frames_scored"],
            "top1": top1, "correct": {b: round(v * videos) for b, v in top1.items()},
            "videos": videos}


def run_settings(checkpoint: str) -> dict:
    """The training settings of the checkpoint's run ({} without a run config), its
    relative cache folder taken from this repository (where the demo runs)."""
    run = RunDirectory.of_checkpoint(checkpoint)
    settings = (run.read_config() if run else None) or {}
    cache = settings.get("cache_dir", "data/cache")
    return {**settings, "cache_dir": os.path.join(REPO, cache)}


def find_raw_dir(settings: dict) -> str:
    """The synthetic set a run trained on, in SSv2 layout ("" where not synthetic)."""
    if settings.get("dataset") != "synthetic":
        return ""
    train_pattern, _ = data_patterns(settings)
    return os.path.join(os.path.dirname(os.path.dirname(train_pattern)), "raw")


def cached_before(data: str, work: str, boxes_file: str) -> dict:
    """The checkpoint's evaluation before any fine-tune, reused from an earlier run in
    the same work folder on the same checkpoint and box file (the held-out records
    follow from the synthetic set alone)."""
    out = os.path.join(work, "eval_before")
    stamp = os.path.join(out, "inputs.json")
    with open(boxes_file, "rb") as f:
        boxes = hashlib.sha256(f.read()).hexdigest()
    inputs = {"checkpoint": os.path.abspath(FLAGS.checkpoint),
              "checkpoint_mtime": os.path.getmtime(FLAGS.checkpoint), "boxes": boxes,
              "precision": FLAGS.precision}
    if os.path.isfile(stamp):
        with open(stamp) as f:
            old = json.load(f)
        if old.get("inputs") == inputs:
            return old["before"]
    before = evaluate(FLAGS.checkpoint, data, out, os.path.join(work, "eval_before.log"))
    write_atomic(stamp, json.dumps({"inputs": inputs, "before": before}))
    return before


def main(argv) -> None:
    del argv
    if not os.path.isfile(FLAGS.checkpoint):
        raise SystemExit(f"no checkpoint {FLAGS.checkpoint}: train configs/demo.flags first "
                         "(with --seed=<--seed>)")
    settings = run_settings(FLAGS.checkpoint)
    if settings and settings.get("seed", 0) != FLAGS.seed:
        raise SystemExit(f"--seed={FLAGS.seed} but {FLAGS.checkpoint} was trained with "
                         f"--seed={settings.get('seed', 0)}: pass that seed")
    raw_dir = FLAGS.raw_dir or find_raw_dir(settings)
    if not os.path.isfile(os.path.join(raw_dir, "something-something-v2-groundtruth.json")):
        raise SystemExit(f"no synthetic set with ground truth in {raw_dir!r}: pass --raw_dir")
    if not os.path.isfile(FLAGS.recipe):
        raise SystemExit(f"no recipe flag file {FLAGS.recipe}")
    # The fine-tune and evaluation times depend on the machine and its load: say both.
    machine = (f"CPU: {cpu_info().describe()}, {os.cpu_count()} cores, load average at "
               f"start {os.getloadavg()[0]:.1f}")
    print(machine, flush=True)
    work = FLAGS.work_dir
    os.makedirs(work, exist_ok=True)
    clips = select_clips(raw_dir, FLAGS.num_clips, FLAGS.seed)
    with open(os.path.join(raw_dir, "something-something-v2-groundtruth.json")) as f:
        ground_truth = json.load(f)
    if FLAGS.draw == "editor":
        boxes_file, corrections, how = draw_corrections(clips, ground_truth, raw_dir, work)
    else:
        boxes_file, corrections, how = write_corrections(
            clips, ground_truth, settings.get("num_frames", 8), work)
    print(f"corrections for {len(corrections)} clips: {how}", flush=True)
    data = os.path.join(work, "records")
    convert_s = convert(raw_dir, boxes_file, data, os.path.join(work, "convert.log"))
    with open(os.path.join(data, "manifest.json")) as f:
        boxes_manifest = json.load(f)["boxes"]
    before = cached_before(data, work, boxes_file)
    runs = []
    for epochs in [int(e) for e in FLAGS.epochs] or [None]:
        name = f"finetune_{epochs}ep" if epochs else "finetune"
        out = os.path.join(work, name)
        load = os.getloadavg()[0]
        seconds, cpu = fine_tune(data, out, epochs, os.path.join(work, f"{name}.log"))
        load = max(load, os.getloadavg()[0])
        with open(os.path.join(out, "config.json")) as f:
            ran = json.load(f)["epochs"]
        after = evaluate(os.path.join(out, "checkpoints/final.keras"), data,
                         os.path.join(work, f"eval_{name}"),
                         os.path.join(work, f"eval_{name}.log"))
        runs.append({"epochs": ran, "fine_tune_seconds": round(seconds, 1),
                     "fine_tune_cpu_seconds": round(cpu, 1),
                     "load_average_during": round(load, 2), **after})
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "seed": FLAGS.seed, "draw": FLAGS.draw, "corrections": how, "clips": clips,
        "boxes_drawn": sum(len(c.get("frames", {})) for c in corrections.values()),
        "converted": {"seconds": round(convert_s, 1),
                      "videos_with_boxes": boxes_manifest["videos_with_boxes"],
                      "problems": boxes_manifest["problems"]},
        "checkpoint": os.path.relpath(FLAGS.checkpoint, REPO)
        if FLAGS.checkpoint.startswith(REPO) else FLAGS.checkpoint,
        "recipe": {"file": os.path.relpath(FLAGS.recipe, REPO)
                   if FLAGS.recipe.startswith(REPO) else FLAGS.recipe,
                   "flags": recipe_flags(FLAGS.recipe)},
        "precision": FLAGS.precision, "machine": machine,
        "load_average_end": os.getloadavg()[0], "before": before, "after": runs,
        "command": " ".join(["python", "benchmarks/correction_loop.py", *sys.argv[1:]]),
    }
    path = FLAGS.results or os.path.join(REPO, "benchmarks", "results",
                                         f"correction_loop_seed{FLAGS.seed}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, json.dumps(result, indent=1))
    print(format_table(result))
    print(f"wrote {path}")


def format_table(result: dict) -> str:
    def top1(r):
        return " / ".join(f"{r['top1'][b] * 100:.1f} ({r['correct'][b]})"
                          for b in ("perception", "attention"))
    lines = [f"seed {result.get('seed', 0)}; " + result.get("machine", ""),
             f"{result['before']['videos']} held-out validation clips; corrections: "
             f"{result['corrections']}",
             "| model | fine-tune | Ms pointing | mass in box | Mt AUROC | top-1 % (clips): "
             "perception / attention |", "|---|---|---|---|---|---|"]
    rows = [("demo (unsupervised)", "—", result["before"])]
    rows += [(f"+ {len(result['clips'])} corrected clips", f"{r['epochs']} ep, "
              f"{r['fine_tune_seconds']:.0f} s ({r.get('fine_tune_cpu_seconds', 0):.0f} "
              f"CPU s, load {r.get('load_average_during', 0):.1f})", r)
             for r in result["after"]]
    for name, tune, r in rows:
        lines.append(f"| {name} | {tune} | {r['pointing']:.2f} | {r['mass_in_box']:.2f} | "
                     f"{r['mt_auroc']:.2f} | {top1(r)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
