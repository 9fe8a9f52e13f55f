"""A built-in synthetic "Something-Something" with ground truth for explanations.

    python -m stabn_tf.data.synthetic --output_dir=/tmp/synth            # SSv2 layout only
    python -m stabn_tf.data.synthetic --output_dir=/tmp/synth --convert  # + TFRecords

Each video shows one bold "acting" object (a saturated shape with a thick black outline
and a white marker dot, so its orientation is visible) on a textured background, plus
distractors (smaller, desaturated discs that drift and bounce the whole time). The object
rests, performs its action during a random sub-window of the clip, and rests again. The
classes come in time-reversed pairs (left→right vs right→left, appear vs disappear, ...)
plus two order-dependent ones (pushing until it falls off; pretending = go and come back),
so a single frame, or a bag of frames, cannot tell the class: the temporal order decides.

The output is the official SSv2 layout (VP9 `.webm` + the four JSON files), so it goes
through `stabn_tf.data.convert --dataset=ssv2` exactly like real data, plus
`something-something-v2-groundtruth.json` with, per frame, the acting object's box
(normalised ymin, xmin, ymax, xmax; all zeros while it is not visible) and whether the
action is happening. The converter carries both into the TFRecords (the box as a
`clip/box/*` box with role `object`, and `clip/gt/active`), where they also serve as
attention supervision targets. Everything is deterministic given the seed.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import json
import math
import multiprocessing.pool
import os
import time

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from stabn_tf.data import labels as labels_lib
from stabn_tf.data._parallel import worker_pool
from stabn_tf.data.video import write_video
from stabn_tf.disk import atomic_path, write_atomic
from stabn_tf.locking import Flock

#: The class list, as SSv2 templates (the class name is the template without brackets).
TEMPLATES: tuple[str, ...] = (
    "Moving [something] from left to right",
    "Moving [something] from right to left",
    "Moving [something] up",
    "Moving [something] down",
    "Moving [something] closer to the camera",
    "Moving [something] away from the camera",
    "Making [something] appear",
    "Making [something] disappear",
    "Rotating [something] clockwise",
    "Rotating [something] counterclockwise",
    "Pushing [something] so that it falls off the table",
    "Pretending to move [something] from left to right",
)
CLASSES: tuple[str, ...] = tuple(labels_lib.ssv2_template_to_label(t) for t in TEMPLATES)
_ACTIONS = ("left_to_right", "right_to_left", "up", "down", "closer", "away", "appear",
            "disappear", "rotate_cw", "rotate_ccw", "push_off", "pretend_left_to_right")

#: Defaults sized for the CPU demo: ~700 videos, generated + converted in ~1-2 min on 2 cores.
DEFAULTS = {
    "num_train_per_class": 48,
    "num_val_per_class": 10,
    "num_test_per_class": 0,
    "resolution": 128,
    "num_frames": 24,
    "seed": 0,
}
#: Bump when the rendering changes, so caches made by `ensure_synthetic_tfrecords` refresh.
VERSION = 3  # 3: the object box is stored as a `clip/box/*` box of role "object"
FPS = 12
ASPECT = 5 / 4  # width / height
#: Fraction of the clip the action lasts (the rest is static, before and after).
ACTION_FRACTION = (0.45, 0.75)
GROUND_TRUTH_FILE = "something-something-v2-groundtruth.json"
VIDEO_SUBDIR = "20bn-something-something-v2"
_SETTINGS_FILE = "synthetic.json"

_COLOURS = {  # name → hue (HSV), for the acting object's saturated fill
    "red": 0.0, "orange": 0.08, "yellow": 0.15, "green": 0.33, "cyan": 0.5,
    "blue": 0.62, "purple": 0.76, "magenta": 0.86,
}
_SHAPES = ("square", "triangle", "pentagon", "arrow", "L-block", "cross")
_SUPERSAMPLE = 4


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    clip_id: str
    split: str
    class_index: int
    seed: int
    resolution: int
    num_frames: int
    num_distractors: tuple[int, int]


# --- drawing -------------------------------------------------------------------------------


def _smooth(p: float) -> float:
    """Smoothstep easing, so motion starts and stops gently like a hand would."""
    p = min(max(p, 0.0), 1.0)
    return p * p * (3 - 2 * p)


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A static, muted texture: colour noise, stripes or a checkerboard, plus grain.

    Kept within 40..230 so the acting object's black outline stays the darkest thing.
    """
    kind = rng.integers(3)
    base = rng.uniform(70, 180, size=3)
    if kind == 0:
        grid = rng.uniform(-45, 45, size=(rng.integers(3, 7), rng.integers(3, 7), 3))
        img = np.asarray(Image.fromarray(np.uint8(np.clip(grid + 128, 0, 255))).resize(
            (w, h), Image.Resampling.BICUBIC), np.float32) - 128 + base
    else:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        other = np.clip(base + rng.uniform(-50, 50, size=3), 60, 200)
        if kind == 1:
            angle = rng.uniform(0, math.pi)
            period = rng.uniform(0.08, 0.2) * h
            t = (np.cos(angle) * xx + np.sin(angle) * yy) * (2 * math.pi / period)
            mix = (0.5 + 0.5 * np.sin(t))[..., None]
        else:
            cell = rng.uniform(0.06, 0.15) * h
            mix = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2)[..., None] * 0.8 + 0.1
        img = base * mix + other * (1 - mix)
    img = img + rng.normal(0, 6, size=(h, w, 3))
    return Image.fromarray(np.uint8(np.clip(img, 40, 230)))


def _polygon(shape: str) -> list[tuple[float, float]]:
    """Outline in unit coordinates (-1..1), deliberately not rotation-symmetric."""
    if shape == "square":
        return [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    if shape == "triangle":
        return [(0, -1), (1, 0.9), (-1, 0.9)]
    if shape == "pentagon":
        return [(math.cos(a), math.sin(a)) for a in
                (math.radians(-90 + 72 * k) for k in range(5))]
    if shape == "arrow":
        return [(-1, -0.35), (0.2, -0.35), (0.2, -0.9), (1, 0), (0.2, 0.9), (0.2, 0.35),
                (-1, 0.35)]
    if shape == "L-block":
        return [(-0.9, -1), (-0.1, -1), (-0.1, 0.3), (0.9, 0.3), (0.9, 1), (-0.9, 1)]
    return [(-0.35, -1), (0.35, -1), (0.35, -0.35), (1, -0.35), (1, 0.35), (0.35, 0.35),
            (0.35, 1), (-0.35, 1), (-0.35, 0.35), (-1, 0.35), (-1, -0.35), (-0.35, -0.35)]


def _object_sprite(rng: np.random.Generator, size: int) -> tuple[Image.Image, str]:
    """The acting object, drawn at 4× its base `size` (`_place` scales it down after any
    rotation, so edges stay crisp at every scale and angle)."""
    colour = list(_COLOURS)[rng.integers(len(_COLOURS))]
    shape = _SHAPES[rng.integers(len(_SHAPES))]
    r, g, b = colorsys.hsv_to_rgb(_COLOURS[colour], rng.uniform(0.85, 1.0),
                                  rng.uniform(0.85, 1.0))
    big = size * _SUPERSAMPLE
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    half = big / 2 * 0.92
    pts = [(big / 2 + x * half, big / 2 + y * half) for x, y in _polygon(shape)]
    draw.polygon(pts, fill=(int(r * 255), int(g * 255), int(b * 255), 255),
                 outline=(0, 0, 0, 255), width=max(2, big // 12))
    # The marker: a white dot with a black ring, off-centre, so rotation is visible.
    mx, my = pts[0][0] * 0.55 + big / 2 * 0.45, pts[0][1] * 0.55 + big / 2 * 0.45
    rad = big * 0.11
    draw.ellipse([mx - rad, my - rad, mx + rad, my + rad], fill=(255, 255, 255, 255),
                 outline=(0, 0, 0, 255), width=max(1, big // 40))
    return img, f"{colour} {shape}"


def _distractor_sprite(rng: np.random.Generator, size: int) -> Image.Image:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.3), rng.uniform(0.45, 0.9))
    big = size * 4
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    aspect = rng.uniform(0.6, 1.0)
    pad = big * (1 - aspect) / 2
    ImageDraw.Draw(img).ellipse([2, pad, big - 2, big - pad],
                                fill=(int(r * 255), int(g * 255), int(b * 255), 230))
    return img.resize((size, size), Image.Resampling.LANCZOS)


@dataclasses.dataclass
class _State:
    cx: float  # centre, as a fraction of the frame width
    cy: float  # centre, as a fraction of the frame height
    scale: float = 1.0
    angle: float = 0.0  # degrees, counter-clockwise on screen (PIL's convention)
    alpha: float = 1.0


def _trajectory(action: str, rng: np.random.Generator):
    """A function progress p∈[0,1] → _State for the acting object during its action.

    Positions keep the object inside the eval centre crop (the middle 7/8 of the short
    side), so evaluation never crops the action away.
    """
    cy = rng.uniform(0.35, 0.65)
    cx = rng.uniform(0.38, 0.62)
    if action in ("left_to_right", "right_to_left"):
        a, b = rng.uniform(0.28, 0.36), rng.uniform(0.64, 0.72)
        if action == "right_to_left":
            a, b = b, a
        return lambda p: _State(a + (b - a) * _smooth(p), cy)
    if action in ("up", "down"):
        a, b = rng.uniform(0.66, 0.74), rng.uniform(0.26, 0.34)
        if action == "down":
            a, b = b, a
        return lambda p: _State(cx, a + (b - a) * _smooth(p))
    if action in ("closer", "away"):
        a, b = rng.uniform(0.5, 0.65), rng.uniform(1.35, 1.55)
        if action == "away":
            a, b = b, a
        return lambda p: _State(cx, cy, scale=a + (b - a) * _smooth(p))
    if action in ("appear", "disappear"):
        sign = 1 if action == "appear" else -1
        return lambda p: _State(cx, cy, alpha=_smooth(p) if sign > 0 else 1 - _smooth(p))
    if action in ("rotate_cw", "rotate_ccw"):
        start = rng.uniform(0, 360)
        turn = rng.uniform(120, 200) * (-1 if action == "rotate_cw" else 1)
        return lambda p: _State(cx, cy, angle=start + turn * _smooth(p))
    if action == "push_off":
        x0, y0 = rng.uniform(0.33, 0.45), rng.uniform(0.35, 0.5)
        slide = rng.uniform(0.15, 0.2)
        split = 0.45

        def push(p: float) -> _State:
            if p <= split:
                return _State(x0 + slide * _smooth(p / split), y0)
            q = (p - split) / (1 - split)
            return _State(x0 + slide + 0.08 * q, y0 + (1.35 - y0) * q * q, angle=-40 * q)
        return push
    if action == "pretend_left_to_right":
        a, d = rng.uniform(0.28, 0.36), rng.uniform(0.25, 0.34)
        return lambda p: _State(a + d * math.sin(math.pi * _smooth(p)), cy)
    raise ValueError(f"unknown action {action!r}")


def _place(frame: Image.Image, sprite: Image.Image, state: _State, supersample: int = 1,
           ) -> tuple[float, float, float, float] | None:
    """Pastes the sprite (drawn at `supersample`× size) rotated, scaled and faded as
    `state` says; returns its normalised box (ymin, xmin, ymax, xmax), or None if invisible.
    """
    w, h = frame.size
    img = sprite
    if state.angle % 360:
        img = img.rotate(state.angle, resample=Image.Resampling.BICUBIC, expand=True)
    factor = state.scale / supersample
    if factor != 1:
        img = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))),
                         Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BILINEAR)
    if state.alpha < 1:
        a = img.getchannel("A").point(lambda v: int(v * state.alpha))
        img = img.copy()
        img.putalpha(a)
    left = round(state.cx * w - img.width / 2)
    top = round(state.cy * h - img.height / 2)
    frame.paste(img, (left, top), img)
    bbox = img.getchannel("A").point(lambda v: 255 if v > 24 else 0).getbbox()
    if bbox is None:
        return None
    x0, y0 = max(left + bbox[0], 0), max(top + bbox[1], 0)
    x1, y1 = min(left + bbox[2], w), min(top + bbox[3], h)
    if x1 <= x0 or y1 <= y0:
        return None
    return y0 / h, x0 / w, y1 / h, x1 / w


def render_video(spec: VideoSpec) -> tuple[np.ndarray, list[int], list[list[float]], str]:
    """Frames `[N, H, W, 3]` uint8, per-frame active flags and boxes, and the object's name."""
    rng = np.random.default_rng(spec.seed)
    h = spec.resolution
    w = int(round(h * ASPECT / 2) * 2)
    n = spec.num_frames
    background = _background(rng, h, w)
    sprite, name = _object_sprite(rng, max(8, round(h * rng.uniform(0.2, 0.26))))
    action = _ACTIONS[spec.class_index]
    path = _trajectory(action, rng)
    length = max(2, round(n * rng.uniform(*ACTION_FRACTION)))
    start = int(rng.integers(0, n - length + 1))

    distractors = []
    for _ in range(int(rng.integers(spec.num_distractors[0], spec.num_distractors[1] + 1))):
        d_size = max(4, round(h * rng.uniform(0.1, 0.16)))
        speed = rng.uniform(0.01, 0.03)
        heading = rng.uniform(0, 2 * math.pi)
        distractors.append({
            "sprite": _distractor_sprite(rng, d_size),
            "pos": np.array([rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)]),
            "vel": speed * np.array([math.cos(heading), math.sin(heading)]),
        })

    frames, active, boxes = [], [], []
    for t in range(n):
        p = (t - start) / (length - 1)
        frame = background.copy()
        for d in distractors:
            d["pos"] += d["vel"]
            for k in range(2):  # bounce off the borders
                if not 0.05 <= d["pos"][k] <= 0.95:
                    d["vel"][k] *= -1
                    d["pos"][k] = min(max(d["pos"][k], 0.05), 0.95)
            _place(frame, d["sprite"], _State(d["pos"][0], d["pos"][1]))
        box = _place(frame, sprite, path(min(max(p, 0.0), 1.0)), _SUPERSAMPLE)
        frames.append(np.asarray(frame))
        active.append(int(0 <= t - start < length))
        boxes.append([round(v, 5) for v in box] if box else [0.0, 0.0, 0.0, 0.0])
    return np.stack(frames), active, boxes, name


def write_webm(path: str, frames: np.ndarray, fps: int = FPS) -> None:
    """VP9 `.webm` (as SSv2 is distributed). Byte-identical for identical frames: one
    encoder thread, and `bitexact` so the muxer writes no random UIDs."""
    with atomic_path(path) as tmp:
        write_video(tmp, frames, fps, "libvpx-vp9", format="webm",
                    container_options={"fflags": "+bitexact"}, threads=1,
                    options={"deadline": "realtime", "cpu-used": "8", "crf": "28", "b:v": "0",
                             "row-mt": "0"})


def _make_one(args: tuple[VideoSpec, str]) -> tuple[str, list[int], list[list[float]], str]:
    spec, video_dir = args
    frames, active, boxes, name = render_video(spec)
    write_webm(os.path.join(video_dir, f"{spec.clip_id}.webm"), frames)
    return spec.clip_id, active, boxes, name


# --- dataset ---------------------------------------------------------------------------------


def _specs(num_train_per_class: int, num_val_per_class: int, num_test_per_class: int,
           resolution: int, num_frames: int, seed: int,
           num_distractors: tuple[int, int]) -> list[VideoSpec]:
    rng = np.random.default_rng([seed, 0])
    per_split = (("train", num_train_per_class), ("validation", num_val_per_class),
                 ("test", num_test_per_class))
    layout = [(split, c) for split, count in per_split for c in range(len(CLASSES))
              for _ in range(count)]
    ids = rng.permutation(len(layout)) + 1000  # ids carry no hint of class or split
    return [VideoSpec(str(ids[i]), split, c, int(np.random.SeedSequence([seed, i]).
                                                   generate_state(1)[0]),
                      resolution, num_frames, num_distractors)
            for i, (split, c) in enumerate(layout)]


def generate_synthetic_dataset(
    output_dir: str | os.PathLike,
    *,
    num_train_per_class: int = DEFAULTS["num_train_per_class"],
    num_val_per_class: int = DEFAULTS["num_val_per_class"],
    num_test_per_class: int = DEFAULTS["num_test_per_class"],
    resolution: int = DEFAULTS["resolution"],
    num_frames: int = DEFAULTS["num_frames"],
    seed: int = DEFAULTS["seed"],
    num_distractors: tuple[int, int] = (1, 3),
    workers: int | None = None,
    progress: bool = True,
    pool: multiprocessing.pool.Pool | None = None,
) -> dict:
    """Writes the synthetic set in the SSv2 layout under `output_dir`; returns a summary.

    Layout: `something-something-v2-{labels,train,validation,test}.json`,
    `something-something-v2-groundtruth.json`, and `20bn-something-something-v2/<id>.webm`.
    `resolution` is the frame height (width = 5/4 of it); `num_frames` frames at 12 fps.
    Rendering and VP9 encoding run in `workers` spawned processes (None: all cores; 1: in
    this process), or in `pool` when given.
    """
    if resolution < 32 or num_frames < 4:
        raise ValueError(f"need resolution >= 32 and num_frames >= 4, got {resolution}, "
                         f"{num_frames}")
    if num_train_per_class < 0 or num_val_per_class < 0 or num_test_per_class < 0:
        raise ValueError("video counts per class must be >= 0")
    t0 = time.time()
    output_dir = os.fspath(output_dir)
    video_dir = os.path.join(output_dir, VIDEO_SUBDIR)
    os.makedirs(video_dir, exist_ok=True)
    specs = _specs(num_train_per_class, num_val_per_class, num_test_per_class, resolution,
                   num_frames, seed, tuple(num_distractors))
    tasks = [(s, video_dir) for s in specs]
    results = {}
    with worker_pool(workers if len(specs) > 1 else 1, pool) as active:
        it = (map(_make_one, tasks) if active is None
              else active.imap_unordered(_make_one, tasks, chunksize=4))
        for clip_id, active_flags, boxes, name in tqdm(
                it, total=len(tasks), unit="video", desc="synthesise", disable=not progress,
                dynamic_ncols=True):
            results[clip_id] = (active_flags, boxes, name)

    def entry(spec: VideoSpec) -> dict:
        name = results[spec.clip_id][2]
        template = TEMPLATES[spec.class_index]
        label = template.replace("[something]", name).replace("[Something]", name).lower()
        return {"id": spec.clip_id, "label": label, "template": template,
                "placeholders": [name]}

    def dump(name: str, obj) -> None:
        write_atomic(os.path.join(output_dir, name), json.dumps(obj, indent=1))

    order = np.random.default_rng([seed, 1]).permutation(len(specs))
    by_split = {s: [specs[i] for i in order if specs[i].split == s]
                for s in ("train", "validation", "test")}
    dump("something-something-v2-labels.json", {c: str(i) for i, c in enumerate(CLASSES)})
    dump("something-something-v2-train.json", [entry(s) for s in by_split["train"]])
    dump("something-something-v2-validation.json", [entry(s) for s in by_split["validation"]])
    dump("something-something-v2-test.json", [{"id": s.clip_id} for s in by_split["test"]])
    dump(GROUND_TRUTH_FILE, {s.clip_id: {"active": results[s.clip_id][0],
                                         "box": results[s.clip_id][1]} for s in specs})
    summary = {"videos": len(specs), "classes": len(CLASSES),
               "per_split": {k: len(v) for k, v in by_split.items()},
               "resolution": resolution, "num_frames": num_frames, "seed": seed,
               "elapsed_s": round(time.time() - t0, 2)}
    return summary


def _settings_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ensure_synthetic_tfrecords(
    cache_dir: str | os.PathLike,
    *,
    num_train_per_class: int = DEFAULTS["num_train_per_class"],
    num_val_per_class: int = DEFAULTS["num_val_per_class"],
    resolution: int = DEFAULTS["resolution"],
    num_frames: int = DEFAULTS["num_frames"],
    seed: int = DEFAULTS["seed"],
    num_distractors: tuple[int, int] = (1, 3),
    num_shards: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> str:
    """The directory of the synthetic set's TFRecords (`train-*.tfrecord`,
    `validation-*.tfrecord`, `labels.txt`, `manifest.json`), generating and converting it
    under `cache_dir/synthetic-<settings hash>/` only when it is not there yet.

    Safe to call from several processes at once (a file lock serialises the work).
    """
    settings = {"num_train_per_class": num_train_per_class,
                "num_val_per_class": num_val_per_class, "resolution": resolution,
                "num_frames": num_frames, "seed": seed,
                "num_distractors": list(num_distractors), "num_shards": num_shards,
                "version": VERSION}
    root = os.path.join(os.fspath(cache_dir), f"synthetic-{_settings_key(settings)}")
    raw_dir = os.path.join(root, "raw")
    out_dir = os.path.join(root, "tfrecords")
    done_file = os.path.join(out_dir, _SETTINGS_FILE)
    if _read_json(done_file) == settings:
        return out_dir
    os.makedirs(root, exist_ok=True)
    # Concurrent trainers (e.g. multi-worker) generate the set once: the others wait.
    with Flock(os.path.join(root, ".lock")) as held:
        held.acquire(wait=True)
        if _read_json(done_file) == settings:
            return out_dir
        from stabn_tf.data import convert  # local: convert imports TensorFlow

        raw_done = os.path.join(raw_dir, _SETTINGS_FILE)
        with worker_pool(workers) as pool:  # one pool (one start-up) for both steps
            if _read_json(raw_done) != settings:
                generate_synthetic_dataset(
                    raw_dir, num_train_per_class=num_train_per_class,
                    num_val_per_class=num_val_per_class, num_test_per_class=0,
                    resolution=resolution, num_frames=num_frames, seed=seed,
                    num_distractors=num_distractors, workers=workers, progress=progress,
                    pool=pool)
                write_atomic(raw_done, json.dumps(settings))
            manifest = convert.convert_dataset(
                "ssv2", raw_dir, out_dir, num_shards=num_shards, workers=workers,
                progress=progress, pool=pool)
        failed = {k: v["failed"] for k, v in manifest["splits"].items() if v["failed"]}
        if failed:
            raise RuntimeError(f"synthetic conversion lost videos {failed}; see "
                               f"{os.path.join(out_dir, convert.FAILURES_FILE)}")
        write_atomic(done_file, json.dumps(settings))
    return out_dir


if __name__ == "__main__":
    # The command is `stabn_tf.synthesize`, which imports this module under its own name, so
    # the tasks sent to worker processes pickle as `stabn_tf.data.synthetic.*`.
    import runpy

    runpy.run_module("stabn_tf.synthesize", run_name="__main__")
