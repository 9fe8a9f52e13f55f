"""Training input pipeline throughput vs a naive reference loader, in the same run.

    python benchmarks/data_pipeline.py              # ~1 min on 2 cores
    python benchmarks/data_pipeline.py --seconds=60 --num_frames=32 --image_size=224

Data: SSv2-sized clips (240×427 frames, 48 frames per video at JPEG quality 90, textured
content with sensor-like grain, so the JPEGs cost what real ones do), written once to a
cache directory both as TFRecord shards (ours) and as JPEG frame folders (the layout the
reference PyTorch code reads).

- ours: `stabn_tf.data.make_dataset(training=True)` with its default augmentation (one
  random-resized crop and one colour jitter per clip), batches of `batch_size`.
- naive: what the reference code does per clip, one clip at a time in this process:
  PIL-open and decode every sampled JPEG, crop and resize each with PIL, stack, convert to
  float and normalise in numpy (no colour jitter, so it does *less* work than ours).

Prints clips/s for both, the ratio, and clips/s per core (ours uses every core the
process may run on; the naive loader is single-threaded, so its per-core figure is its
total), plus clips per CPU-second of each (its efficiency, which other load on a shared
machine does not change). The loaders alternate over `--rounds`, so a change in load hits
both alike.
"""

from __future__ import annotations

import gc
import io
import json
import math
import os
import sys
import time

import numpy as np
from absl import app, flags
from PIL import Image

flags.DEFINE_string("data_dir", "/tmp/stabn_tf_bench_data", "Cache for the generated data.")
flags.DEFINE_integer("num_videos", 48, "Videos to generate.")
flags.DEFINE_integer("frames_per_video", 48, "Frames per video (SSv2 averages ~45).")
flags.DEFINE_integer("height", 240, "Frame height (SSv2: 240).")
flags.DEFINE_integer("width", 427, "Frame width (SSv2: mostly 427).")
flags.DEFINE_integer("num_frames", 32, "T, frames per clip.")
flags.DEFINE_integer("image_size", 224, "Output crop size.")
flags.DEFINE_integer("batch_size", 8, "Clips per batch.")
flags.DEFINE_float("seconds", 20.0, "Measuring time per loader (after warm-up), in total.")
flags.DEFINE_integer("rounds", 3, "Alternate the loaders this many times, so a change in "
                     "machine load hits both alike.")
flags.DEFINE_string("json_out", None, "Also write the figures to this JSON file.")
FLAGS = flags.FLAGS


def _frames(rng: np.random.Generator, n: int, h: int, w: int) -> list[bytes]:
    """JPEG frames of a slowly panning texture with moving blobs and per-frame grain."""
    from stabn_tf.data.synthetic import _background

    canvas = np.asarray(_background(rng, h, w + n * 2), np.float32)
    blobs = rng.uniform(0, 1, size=(4, 2)) * [h, w]
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for t in range(n):
        img = canvas[:, t * 2:t * 2 + w].copy()
        for k, (by, bx) in enumerate(blobs):
            cy, cx = by + 3 * t * math.sin(k), (bx + 4 * t) % w
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < (18 + 6 * k) ** 2
            img[mask] = img[mask] * 0.3 + np.array([200, 60 * k, 40], np.float32) * 0.7
        img += rng.normal(0, 5, size=img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.uint8(np.clip(img, 0, 255))).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def prepare_data(root: str) -> tuple[str, str]:
    """Writes (once) TFRecord shards and frame folders with identical JPEG bytes."""
    import tensorflow as tf

    from stabn_tf.data import tfrecord

    key = (f"v1_{FLAGS.num_videos}x{FLAGS.frames_per_video}_{FLAGS.height}x{FLAGS.width}")
    base = os.path.join(root, key)
    rec_dir, frame_dir = os.path.join(base, "tfrecords"), os.path.join(base, "frames")
    if os.path.exists(os.path.join(base, "DONE")):
        return rec_dir, frame_dir
    os.makedirs(rec_dir, exist_ok=True)
    os.makedirs(frame_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    num_shards = 8
    writers = [tf.io.TFRecordWriter(os.path.join(rec_dir, f"train-{i:05d}-of-{num_shards:05d}"
                                                 ".tfrecord")) for i in range(num_shards)]
    t0 = time.time()
    for v in range(FLAGS.num_videos):
        jpegs = _frames(rng, FLAGS.frames_per_video, FLAGS.height, FLAGS.width)
        clip_id = f"{v:05d}"
        writers[v % num_shards].write(
            tfrecord.make_sequence_example(clip_id, v % 174, f"class {v % 174}", jpegs))
        os.makedirs(os.path.join(frame_dir, clip_id), exist_ok=True)
        for i, data in enumerate(jpegs, start=1):
            with open(os.path.join(frame_dir, clip_id, f"{i:05d}.jpg"), "wb") as f:
                f.write(data)
    for w in writers:
        w.close()
    open(os.path.join(base, "DONE"), "w").close()
    print(f"generated {FLAGS.num_videos} videos in {time.time() - t0:.1f}s "
          f"({sum(len(j) for j in jpegs) / len(jpegs) / 1024:.1f} KiB per JPEG frame)")
    return rec_dir, frame_dir


class NaiveLoader:
    """The reference code's per-clip work: PIL decode every sampled frame, PIL crop and
    resize, numpy normalise; one clip at a time."""

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)

    def __init__(self, frame_dir: str, num_frames: int, size: int, seed: int = 0):
        self.videos = sorted(os.path.join(frame_dir, d) for d in os.listdir(frame_dir))
        self.num_frames, self.size = num_frames, size
        self.rng = np.random.default_rng(seed)

    def clip(self) -> np.ndarray:
        video = self.videos[self.rng.integers(len(self.videos))]
        names = sorted(os.listdir(video))
        n, t = len(names), self.num_frames
        idx = np.floor((np.arange(t) + self.rng.uniform(size=t)) * n / t).astype(int)
        with Image.open(os.path.join(video, names[0])) as im:
            w, h = im.size
        short = min(h, w)
        area = self.rng.uniform(0.3, 1.0) * short * short
        ratio = math.exp(self.rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch = min(h, max(1, round(math.sqrt(area / ratio))))
        cw = min(w, max(1, round(math.sqrt(area * ratio))))
        y, x = self.rng.integers(0, h - ch + 1), self.rng.integers(0, w - cw + 1)
        frames = []
        for i in idx:
            with Image.open(os.path.join(video, names[min(i, n - 1)])) as im:
                im = im.convert("RGB").crop((x, y, x + cw, y + ch))
                frames.append(np.asarray(im.resize((self.size, self.size),
                                                   Image.Resampling.BILINEAR)))
        clip = np.stack(frames).astype(np.float32) / 255.0
        return (clip - self.mean) / self.std

    def batch(self, batch_size: int) -> np.ndarray:
        return np.stack([self.clip() for _ in range(batch_size)])


def _measure(next_batch, batch_size: int, seconds: float, warmup: int = 3
             ) -> tuple[int, float, float]:
    """(clips, wall seconds, CPU seconds of this process, all threads) over at least
    `seconds` of wall time, after `warmup` batches."""
    for _ in range(warmup):
        next_batch()
    clips, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        next_batch()
        clips += batch_size
    return clips, time.perf_counter() - t0, time.process_time() - c0


def main(argv):
    del argv
    from stabn_tf.data import ClipPreprocessor, make_dataset

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rec_dir, frame_dir = prepare_data(FLAGS.data_dir)
    bs, t, s = FLAGS.batch_size, FLAGS.num_frames, FLAGS.image_size

    ds = make_dataset(os.path.join(rec_dir, "train-*.tfrecord"), training=True,
                      batch_size=bs, preprocessor=ClipPreprocessor(t, s), repeat=True,
                      shuffle_buffer=16)
    naive_loader = NaiveLoader(frame_dir, t, s)
    per_round = FLAGS.seconds / FLAGS.rounds
    totals = {"ours": np.zeros(3), "naive": np.zeros(3)}  # clips, wall s, CPU s
    for _ in range(FLAGS.rounds):
        # A fresh iterator per round, dropped after it: no tf.data thread keeps working
        # (or banks batches) while the naive loader is measured.
        it = iter(ds)
        totals["ours"] += _measure(lambda it=it: next(it), bs, per_round)
        del it
        gc.collect()
        totals["naive"] += _measure(lambda: naive_loader.batch(bs), bs, per_round, warmup=1)
    ours, naive = (totals[k][0] / totals[k][1] for k in ("ours", "naive"))
    # Clips per CPU-second: the per-core efficiency, unaffected by other load on the machine.
    ours_cpu, naive_cpu = (totals[k][0] / totals[k][2] for k in ("ours", "naive"))

    result = {
        "clip": f"{t}x{s}x{s}", "frames": f"{FLAGS.height}x{FLAGS.width}", "cores": cores,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "ours_clips_per_s": round(ours, 2), "naive_clips_per_s": round(naive, 2),
        "ratio": round(ours / naive, 2),
        "ours_clips_per_s_per_core": round(ours / cores, 2),
        "naive_clips_per_s_per_core": round(naive, 2),
        "ours_clips_per_cpu_second": round(ours_cpu, 2),
        "naive_clips_per_cpu_second": round(naive_cpu, 2),
    }
    print(f"clips {t}x{s}x{s} from {FLAGS.height}x{FLAGS.width} JPEG frames, {cores} cores, "
          f"load average {result['load_average']}")
    print(f"  ours  (tf.data, all {cores} cores): {ours:8.2f} clips/s "
          f"({ours / cores:.2f} per core; {ours_cpu:.2f} per CPU-second)")
    print(f"  naive (PIL + numpy, 1 core):      {naive:8.2f} clips/s "
          f"({naive:.2f} per core; {naive_cpu:.2f} per CPU-second)")
    print(f"  ratio ours / naive: {ours / naive:.2f}x (per CPU-second: "
          f"{ours_cpu / naive_cpu:.2f}x)")
    if FLAGS.json_out:
        from stabn_tf.disk import write_atomic

        write_atomic(FLAGS.json_out, json.dumps(result, indent=1))
    print(json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
