"""The correction loop, measured: draw where and when for a few clips, fine-tune, compare.

    python benchmarks/correction_loop.py [--work_dir=/tmp/correction_loop --num_clips=20 \\
        --epochs=3,6 --checkpoint=runs/demo/checkpoints/final.keras \\
        --raw_dir=data/cache/synthetic-<key>/raw]

Starts from the unsupervised demo model (`python -m stabn_tf.train
--flagfile=configs/demo.flags`), whose spatial attention Ms points almost never at the
acting object (pointing about 0.3). Then, as a person would with the explanation
browser's editor:

1. pick `--num_clips` training clips (spread over the classes, seeded);
2. build the browser over those clips and draw their corrections in its editor, in
   headless Chromium (`benchmarks/editor_driver.py`): boxes ("where") on the frames a
   clip page shows, the frames the action happens in ticked ("when"), exported from the
   Corrections page as a box file in the simple format of `docs/boxes.md`. The synthetic
   ground truth tells the driver where to drag, as a person's eye would;
3. convert the dataset with `--boxes=<that file> --noground_truth_supervision`: only the
   corrected clips carry supervision, the synthetic ground truth stays for the metrics;
4. fine-tune from the checkpoint with the supervision losses, for each of `--epochs`;
5. evaluate the model before and after on the held-out validation clips with
   `python -m stabn_tf.evaluate --tables=table1,explanation` (pointing game, mass in
   box and Mt AUROC against the synthetic ground truth; top-1).

Prints a table and writes `benchmarks/results/correction_loop.json` (`--results`). The
goal: held-out pointing to at least 0.8 with 20 corrected clips, top-1 lower by at most
one clip.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from stabn_tf.disk import write_atomic
from stabn_tf.precision import cpu_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", os.path.join(REPO, "runs/demo/checkpoints/final.keras"),
                    "The unsupervised model to correct (trained by configs/demo.flags).")
flags.DEFINE_string("raw_dir", "", "The synthetic set in SSv2 layout (default: the one "
                    "data/cache/synthetic-*/raw beside the checkpoint's repository).")
flags.DEFINE_string("work_dir", "/tmp/correction_loop", "Box file, records, runs.")
flags.DEFINE_integer("num_clips", 20, "Training clips corrected.")
flags.DEFINE_integer("seed", 0, "Which clips are picked.")
flags.DEFINE_list("epochs", ["3"], "Fine-tuning lengths tried (epochs, each from the "
                  "checkpoint).")
flags.DEFINE_float("base_lr", 0.05, "Fine-tuning learning rate per 64 clips (cosine, no "
                   "warm-up; the demo trained from scratch at 0.2).")
flags.DEFINE_float("supervision_weight", 1.0, "λ of both supervision losses.")
flags.DEFINE_string("precision", "float32", "Precision of the evaluations.")
flags.DEFINE_string("results", os.path.join(REPO, "benchmarks/results/correction_loop.json"),
                    "Where the results JSON goes.")

#: The demo's model (configs/demo.flags): the fine-tune uses its sizes.
DEMO_FLAGS = os.path.join(REPO, "configs/demo.flags")


def _run(args: list[str], log: str) -> float:
    """Runs one of the project's CLIs (with this checkout's code), output to `log`;
    returns its wall time. A failure stops the benchmark with the log's tail."""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print("$ " + " ".join(args), flush=True)
    t0 = time.time()
    with open(log, "w") as out:
        code = subprocess.call(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if code:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"failed (exit {code}), log {log}:\n{tail}")
    return time.time() - t0


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


def draw_corrections(clip_ids: list[str], raw_dir: str,
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
                         "install chromium chromium-driver)")
    with open(os.path.join(raw_dir, "something-something-v2-groundtruth.json")) as f:
        ground_truth = json.load(f)
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
            truth = ground_truth[clip]
            boxes[clip] = {i: [truth["box"][i]] for i in sorted(set(shown))
                           if truth["box"][i][2] > truth["box"][i][0]
                           and truth["box"][i][3] > truth["box"][i][1]}
            active[clip] = sorted({i for i in shown if truth["active"][i]})
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


# --- 3.-5. convert, fine-tune, evaluate ------------------------------------------------


def convert(raw_dir: str, boxes_file: str, out: str, log: str) -> float:
    return _run([sys.executable, "-m", "stabn_tf.data.convert", "--dataset=ssv2",
                 f"--input_dir={raw_dir}", f"--output_dir={out}", f"--boxes={boxes_file}",
                 "--noground_truth_supervision", "--splits=train,validation",
                 "--noprogress"], log)


def fine_tune(data: str, out: str, epochs: int, log: str) -> float:
    lam = FLAGS.supervision_weight
    return _run([sys.executable, "-m", "stabn_tf.train", f"--flagfile={DEMO_FLAGS}",
                 "--dataset=tfrecord", f"--train_files={data}/train-*.tfrecord",
                 f"--val_files={data}/validation-*.tfrecord", f"--init={FLAGS.checkpoint}",
                 f"--output_dir={out}", f"--epochs={epochs}", f"--base_lr={FLAGS.base_lr}",
                 "--warmup_epochs=0", "--explain_every_epochs=0", "--overwrite",
                 f"--attention_supervision_weight={lam}",
                 f"--temporal_supervision_weight={lam}"], log)


def evaluate(checkpoint: str, data: str, out: str, log: str) -> dict:
    seconds = _run([sys.executable, "-m", "stabn_tf.evaluate", f"--checkpoint={checkpoint}",
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


def main(argv) -> None:
    del argv
    raw_dir = FLAGS.raw_dir or next(iter(sorted(glob.glob(
        os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(FLAGS.checkpoint))),
                     "..", "data/cache/synthetic-*/raw")))), "")
    if not os.path.isfile(os.path.join(raw_dir, "something-something-v2-groundtruth.json")):
        raise SystemExit(f"no synthetic set with ground truth in {raw_dir!r}: pass --raw_dir")
    if not os.path.isfile(FLAGS.checkpoint):
        raise SystemExit(f"no checkpoint {FLAGS.checkpoint}: train configs/demo.flags first")
    # The fine-tune and evaluation times depend on the machine and its load: say both.
    machine = (f"CPU: {cpu_info().describe()}, {os.cpu_count()} cores, load average at "
               f"start {os.getloadavg()[0]:.1f}")
    print(machine, flush=True)
    work = FLAGS.work_dir
    os.makedirs(work, exist_ok=True)
    clips = select_clips(raw_dir, FLAGS.num_clips, FLAGS.seed)
    boxes_file, corrections, how = draw_corrections(clips, raw_dir, work)
    print(f"corrections for {len(corrections)} clips: {how}", flush=True)
    data = os.path.join(work, "records")
    convert_s = convert(raw_dir, boxes_file, data, os.path.join(work, "convert.log"))
    with open(os.path.join(data, "manifest.json")) as f:
        boxes_manifest = json.load(f)["boxes"]
    before = evaluate(FLAGS.checkpoint, data, os.path.join(work, "eval_before"),
                      os.path.join(work, "eval_before.log"))
    runs = []
    for epochs in (int(e) for e in FLAGS.epochs):
        out = os.path.join(work, f"finetune_{epochs}ep")
        seconds = fine_tune(data, out, epochs, os.path.join(work, f"finetune_{epochs}ep.log"))
        after = evaluate(os.path.join(out, "checkpoints/final.keras"), data,
                         os.path.join(work, f"eval_{epochs}ep"),
                         os.path.join(work, f"eval_{epochs}ep.log"))
        runs.append({"epochs": epochs, "fine_tune_seconds": round(seconds, 1), **after})
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "corrections": how, "clips": clips,
        "boxes_drawn": sum(len(c["frames"]) for c in corrections.values()),
        "converted": {"seconds": round(convert_s, 1),
                      "videos_with_boxes": boxes_manifest["videos_with_boxes"],
                      "problems": boxes_manifest["problems"]},
        "checkpoint": os.path.relpath(FLAGS.checkpoint, REPO)
        if FLAGS.checkpoint.startswith(REPO) else FLAGS.checkpoint,
        "fine_tune": {"base_lr": FLAGS.base_lr, "supervision_weight": FLAGS.supervision_weight,
                      "flags": "configs/demo.flags + --init, cosine, no warm-up"},
        "precision": FLAGS.precision, "machine": machine,
        "load_average_end": os.getloadavg()[0], "before": before, "after": runs,
        "command": " ".join(["python", "benchmarks/correction_loop.py", *sys.argv[1:]]),
    }
    os.makedirs(os.path.dirname(FLAGS.results), exist_ok=True)
    write_atomic(FLAGS.results, json.dumps(result, indent=1))
    print(format_table(result))
    print(f"wrote {FLAGS.results}")


def format_table(result: dict) -> str:
    def top1(r):
        return " / ".join(f"{r['top1'][b] * 100:.1f} ({r['correct'][b]})"
                          for b in ("perception", "attention"))
    lines = [result.get("machine", ""),
             f"{result['before']['videos']} held-out validation clips; corrections: "
             f"{result['corrections']}",
             "| model | fine-tune | Ms pointing | mass in box | Mt AUROC | top-1 % (clips): "
             "perception / attention |", "|---|---|---|---|---|---|"]
    rows = [("demo (unsupervised)", "—", result["before"])]
    rows += [(f"+ {len(result['clips'])} corrected clips", f"{r['epochs']} ep, "
              f"{r['fine_tune_seconds']:.0f} s", r) for r in result["after"]]
    for name, tune, r in rows:
        lines.append(f"| {name} | {tune} | {r['pointing']:.2f} | {r['mass_in_box']:.2f} | "
                     f"{r['mt_auroc']:.2f} | {top1(r)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    app.run(main)
