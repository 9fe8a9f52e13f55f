"""The explanation browser at scale: a real report build of N clips, and the gallery of a
whole validation split (25,000 cards) filtered and sorted in headless Chromium.

    python benchmarks/scale_report.py --sizes=100,1000           # builds, then the gallery
    python benchmarks/scale_report.py --sizes=0 --gallery_cards=25000   # the gallery alone

Build: `prepare` writes N validation records (SSv2-like 4:5 frames of 64×80, 12 frames a
video, a moving object with its ground-truth box, JPEG) and a small ST-ABN
(`--preset`, untrained: the pictures cost the same), untimed; `run` is
`python -m stabn_tf.report` on them with its defaults (no evaluation tables), timed.
Printed per size: time, clips/s, peak RSS of the command and of its drawing processes,
the site's size and bytes per clip, and the growth from the smaller size.

Gallery: `stabn_tf.report.pages.gallery_page` (the real template, script and data
layout) for `--gallery_cards` generated cards, opened from disk in Debian's headless
Chromium (tests/report's fixture installs it); page load time (navigation start to the
first cards drawn), then each filter and sort applied `--repaint_runs` times through the
page's own controls, timed with performance.now() around the call (filter + sort + the
cards in view rebuilt + a forced layout), and to the next painted frame: min, median and
max (the min says what the page costs; the rest what a busy machine adds).

`scale.py` (the scale benchmark of every stage) calls `prepare(workdir, n)` and times
`run(workdir, n)`, which returns the extra figures (bytes per clip, clips/s).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
import types

import numpy as np
from absl import app, flags
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLAGS = flags.FLAGS
NUM_CLASSES = 12
FRAMES = 12
HEIGHT, WIDTH = 64, 80


def _video(rng: np.random.Generator) -> tuple[list[bytes], list[list[float]]]:
    """A smooth background with a square moving across it; JPEG frames and its boxes."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([yy * 2 + rng.integers(0, 60), xx * 2 + rng.integers(0, 60),
                     np.full_like(yy, rng.integers(40, 200))], -1).astype(np.float32)
    y0, x0 = rng.uniform(0.1, 0.5, 2)
    dy, dx = rng.uniform(-0.03, 0.03, 2)
    frames, boxes = [], []
    for t in range(FRAMES):
        frame = base.copy()
        top, left = y0 + dy * t, x0 + dx * t
        box = [top, left, top + 0.3, left + 0.3]
        y, x = int(box[0] * HEIGHT), int(box[1] * WIDTH)
        frame[y:y + int(0.3 * HEIGHT), x:x + int(0.3 * WIDTH)] = (230, 60, 40)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(buffer, "JPEG",
                                                                       quality=90)
        frames.append(buffer.getvalue())
        boxes.append([float(np.clip(v, 0, 1)) for v in box])
    return frames, boxes


def prepare(workdir: pathlib.Path, n: int, preset: str = "stabn_tiny") -> None:
    """`n` validation records in `workdir/records/` and a small ST-ABN in
    `workdir/model.keras` (the work the timed `run` does not include)."""
    import keras
    import tensorflow as tf

    import stabn_tf
    from stabn_tf.data import tfrecord

    workdir = pathlib.Path(workdir)
    (workdir / "records").mkdir(parents=True, exist_ok=True)
    names = [f"class {k}" for k in range(NUM_CLASSES)]
    rng = np.random.default_rng(0)
    shards = max(1, n // 500)
    writers = [tf.io.TFRecordWriter(str(workdir / "records" /
                                        f"validation-{s:05d}-of-{shards:05d}.tfrecord"))
               for s in range(shards)]
    for i in range(n):
        frames, boxes = _video(rng)
        label = int(rng.integers(NUM_CLASSES))
        active = [int(2 <= t < FRAMES - 2) for t in range(FRAMES)]
        writers[i % shards].write(tfrecord.make_sequence_example(
            f"{100000 + i}", label, names[label], frames, gt_active=active, gt_box=boxes))
    for w in writers:
        w.close()
    keras.utils.set_random_seed(0)
    model = stabn_tf.STABN.from_preset(preset, num_classes=NUM_CLASSES, class_names=names)
    model.save(workdir / "model.keras")


def _folder_bytes(folder: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(workdir: pathlib.Path, n: int, workers: int = 0) -> dict:
    """`python -m stabn_tf.report` on `prepare`'s records (its defaults, no tables):
    seconds, clips/s, the site's bytes and bytes per clip, peak RSS of the command and of
    its drawing processes."""
    workdir = pathlib.Path(workdir)
    site = workdir / "site"
    if site.exists():
        import shutil
        shutil.rmtree(site)
    command = [sys.executable, "-c",
               "import resource, runpy, sys\n"
               "sys.argv = ['stabn_tf.report'] + sys.argv[1:]\n"
               "try:\n"
               "    runpy.run_module('stabn_tf.report', run_name='__main__', alter_sys=True)\n"
               "finally:\n"
               "    print('rss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
               " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n",
               f"--checkpoint={workdir / 'model.keras'}",
               f"--files={workdir / 'records' / 'validation-*.tfrecord'}",
               f"--output_dir={site}", "--tables=none", f"--workers={workers}"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"report failed:\n{done.stderr[-3000:]}")
    rss = [[int(v) for v in line.split()[1:]] for line in done.stderr.splitlines()
           if line.startswith("rss_kb")][-1]
    size = _folder_bytes(site)
    clips = len(json.loads((site / "clips.json").read_text()))
    return {"clips": clips, "seconds": round(seconds, 1), "clips_per_s": round(clips / seconds, 2),
            "site_bytes": size, "bytes_per_clip": round(size / clips),
            "peak_rss_mb": round(rss[0] / 1024),
            "drawing_processes_peak_rss_mb": round(rss[1] / 1024)}


def generated_entries(n: int, *, thumbs: bool = True, frames: int = 16,
                      seed: int = 0) -> list[dict]:
    """`n` gallery entries shaped like `build_report`'s, 174 classes, 60% right."""
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(n):
        true = int(rng.integers(174))
        predicted = true if rng.random() < 0.6 else int(rng.integers(174))
        temporal = rng.random(frames)
        stem = f"{200000 + i}"
        entries.append({"stem": stem, "clip": stem, "true_label": true,
                        "records": [{"predicted": predicted,
                                     "confidence": round(float(rng.random()), 6),
                                     "mt_spread": round(float(np.ptp(temporal)), 4),
                                     "temporal": [round(float(v), 4) for v in temporal],
                                     "files": {"thumb": stem + ".thumb.jpg"} if thumbs
                                     else {}}]})
    return entries


def write_gallery(folder: pathlib.Path, entries: list[dict]) -> pathlib.Path:
    """The real gallery page (template, script, style sheet) of `entries` in `folder`."""
    from stabn_tf.report import pages

    (folder / "assets").mkdir(parents=True, exist_ok=True)
    model = types.SimpleNamespace(label="generated", key="generated",
                                  runner=types.SimpleNamespace(
                                      class_names=[f"class {k}" for k in range(174)]))
    (folder / "gallery.html").write_text(pages.gallery_page([model], entries))
    static = ROOT / "stabn_tf" / "report" / "static"
    for name in ("gallery.js", "report.css"):
        (folder / "assets" / name).write_text((static / name).read_text())
    return folder / "gallery.html"


def gallery(cards: int, runs: int, folder: pathlib.Path) -> dict:
    """The gallery page of `cards` generated clips in headless Chromium: load time and
    the filters' and sorts' repaint times (ms, median and max over `runs`)."""
    sys.path.insert(0, str(ROOT / "tests" / "report"))
    from test_report import _browser, ensure_browser

    page = write_gallery(folder, generated_entries(cards))  # thumbnails absent: 404s
    driver = _browser(ensure_browser())
    try:
        driver.get(page.as_uri())
        load_ms = driver.execute_script(
            "var n = performance.getEntriesByType('navigation')[0];"
            "return n.loadEventEnd - n.startTime;")
        rendered = driver.execute_script("return document.querySelectorAll('#grid .card').length")
        actions = {
            "errors only": "c('errors-only').checked = !c('errors-only').checked",
            "class filter": "var s = c('class-filter'); s.selectedIndex = "
                            "(s.selectedIndex + 7) % s.options.length",
            "confidence range": "c('conf-min').value = c('conf-min').value === '0' ? "
                                "'0.25' : '0'",
            "sort": "var s = c('sort'); s.selectedIndex = (s.selectedIndex + 1) % "
                    "s.options.length",
        }
        timings = {}
        for name, change in actions.items():
            sync, frame = [], []
            for _ in range(runs):
                sync.append(driver.execute_script(
                    "var c = function (id) { return document.getElementById(id); };"
                    + change + ";var t = performance.now(); window.STABN_GALLERY.apply();"
                    "document.body.offsetHeight; return performance.now() - t;"))
                frame.append(driver.execute_async_script(
                    "var done = arguments[arguments.length - 1];"
                    "var c = function (id) { return document.getElementById(id); };"
                    + change + ";var t = performance.now(); window.STABN_GALLERY.apply();"
                    "requestAnimationFrame(function () { setTimeout(function () {"
                    " done(performance.now() - t); }, 0); });"))
            timings[name] = {"min_ms": round(min(sync), 1),
                             "median_ms": round(statistics.median(sync), 1),
                             "max_ms": round(max(sync), 1),
                             "to_paint_median_ms": round(statistics.median(frame), 1),
                             "to_paint_max_ms": round(max(frame), 1)}
        # Scrolled to the end: the last cards are drawn, and still only those in view.
        driver.execute_script(
            "var c = function (id) { return document.getElementById(id); };"
            "c('errors-only').checked = false; c('class-filter').value = '';"
            "c('conf-min').value = '0'; c('sort').value = 'name:asc';"
            "window.STABN_GALLERY.apply(); window.scrollTo(0, document.body.scrollHeight);")
        time.sleep(0.3)
        last = driver.execute_script(
            "var cards = document.querySelectorAll('#grid .card');"
            "return [cards.length, cards[cards.length - 1].dataset.name];")
    finally:
        driver.quit()
    return {"cards": cards, "runs": runs, "page_bytes": page.stat().st_size,
            "load_ms": round(load_ms, 1), "cards_in_dom": rendered,
            "scrolled_to_end": {"cards_in_dom": last[0], "last_card": last[1]},
            "repaint": timings}


def machine() -> str:
    """The CPU (model, matrix features) and the load average, as every benchmark prints."""
    from stabn_tf.precision import cpu_info  # noqa: PLC0415 (no TensorFlow here)

    return (f"CPU: {cpu_info().describe()}, {os.cpu_count()} cores; load average "
            f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def _define_flags() -> None:
    """Only when run alone: `scale.py` imports this module and has flags of these names."""
    flags.DEFINE_list("sizes", ["100", "1000"], "Clips per report build (0: none).")
    flags.DEFINE_integer("gallery_cards", 25000, "Cards of the generated gallery (0: skip).")
    flags.DEFINE_integer("repaint_runs", 11, "Times each filter and sort is timed.")
    flags.DEFINE_string("workdir", "/tmp/stabn_tf_scale_report", "Where the data and sites go.")
    flags.DEFINE_string("preset", "stabn_tiny", "The model's preset (untrained).")
    flags.DEFINE_integer("workers", 0, "The report's --workers (0: every core).")
    flags.DEFINE_string("json_out", None, "Also write the figures to this JSON file.")


def main(argv) -> None:
    del argv
    print(machine(), flush=True)
    out: dict = {"machine": machine(), "builds": {}}
    previous = None
    for n in [int(s) for s in FLAGS.sizes if int(s) > 0]:
        workdir = pathlib.Path(FLAGS.workdir) / f"n{n}"
        prepare(workdir, n, FLAGS.preset)
        figures = run(workdir, n, FLAGS.workers)
        if previous:
            figures["growth"] = {"time": round(figures["seconds"] / previous["seconds"], 2),
                                 "clips": round(n / previous["clips"], 2)}
        out["builds"][n] = figures
        previous = figures
        print(f"build {n} clips: {json.dumps(figures)}  [{machine()}]", flush=True)
    if FLAGS.gallery_cards:
        figures = gallery(FLAGS.gallery_cards, FLAGS.repaint_runs,
                          pathlib.Path(FLAGS.workdir) / "gallery")
        out["gallery"] = figures
        print(f"gallery: {json.dumps(figures)}  [{machine()}]", flush=True)
    if FLAGS.json_out:
        pathlib.Path(FLAGS.json_out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
