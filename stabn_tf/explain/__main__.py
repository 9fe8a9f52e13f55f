"""Explain predictions as pictures: the paper's Figure 3 (PNG), the top-5 classes, and an
animated GIF or MP4 of the attention overlay.

    python -m stabn_tf.explain clip.mp4 frames_dir/ \\
        --checkpoint=runs/demo/checkpoints/final.keras --output_dir=explanations
    python -m stabn_tf.explain 'data/ssv2/validation-*.tfrecord' --max_clips=4 \\
        --checkpoint=... --output_dir=...

Inputs: video files (mp4, webm, avi, ...), frame folders, and TFRecord shards or globs
(`*.tfrecord*`; the first `--max_clips` clips, or those named by `--clip_ids`; their
ground-truth boxes are drawn when the records have them). For each clip the output
directory gets `<name>.png` (frames with the spatial attention Ms overlaid, under each a
bar coloured by the temporal attention Mt, red = important, blue = not, with its value),
`<name>.gif` (or `.mp4`) and `<name>.json` (top-5, Ms, Mt). `--method=gradcam` shows a
3D Grad-CAM instead (works for the baseline too). An input that cannot be read prints one
error line and the others are still explained; the exit status is then 1.

Library: `explain_clip` → `Explanation`, `render_explanation`, `tfrecord_clips`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence

import keras
import numpy as np

from stabn_tf import data as data_lib
from stabn_tf import visualize
from stabn_tf.data.video import VideoReadError
from stabn_tf.evaluate import EvaluationError, load_checkpoint, model_spec
from stabn_tf.gradcam import GradCAM
from stabn_tf.models.stabn import (
    PERCEPTION,
    SPATIAL_ATTENTION,
    TEMPORAL_ATTENTION,
    explanation_model,
)
from stabn_tf.predict import load_clip, resolve_class_names

METHODS = ("attention", "gradcam")
ANIMATIONS = ("gif", "mp4", "none")


@dataclasses.dataclass
class Explanation:
    """One explained clip.

    frames: uint8 `[T, S, S, 3]`; spatial: `[T, h, w]`; temporal: `[T]`;
    top_k: [(class index, name, probability)]; true_label: index or None;
    frame_numbers: source frame of each clip frame; boxes: `[T, 4]` ground truth or None;
    method: "attention" (Ms, Mt) or "gradcam".
    """

    name: str
    frames: np.ndarray
    spatial: np.ndarray
    temporal: np.ndarray
    top_k: list[tuple[int, str, float]]
    true_label: int | None
    frame_numbers: list[int]
    boxes: np.ndarray | None
    method: str
    class_names: list[str]

    @property
    def title(self) -> str:
        index, name, p = self.top_k[0]
        text = f"{self.name}  |  predicted: {name} (p={p:.2f})"
        if self.true_label is not None:
            text += f"  |  true: {self.class_names[self.true_label]}"
        return text

    @property
    def temporal_label(self) -> str:
        return "temporal attention Mt" if self.method == "attention" else "Grad-CAM frame weight"

    def to_json(self) -> dict:
        return {
            "name": self.name, "method": self.method,
            "top_k": [{"index": i, "label": n, "probability": round(p, 6)}
                      for i, n, p in self.top_k],
            "true_label": (None if self.true_label is None else
                           {"index": self.true_label,
                            "label": self.class_names[self.true_label]}),
            "frame_numbers": self.frame_numbers,
            "temporal": [round(float(v), 4) for v in self.temporal],
            "spatial": np.round(self.spatial, 4).tolist(),
        }


class Explainer:
    """A model, its class names and a method; `explain(...)` one clip at a time."""

    def __init__(self, model: keras.Model, class_names: Sequence[str],
                 method: str = "attention", top_k: int = 5, gradcam_layer: str | None = None):
        if method not in METHODS:
            raise EvaluationError(f"--method={method!r}: choose from {METHODS}")
        self.spec = model_spec(model)
        if method == "attention" and not self.spec.is_stabn:
            raise EvaluationError("this is a baseline model without attention: use "
                                  "--method=gradcam")
        self.method = method
        self.class_names = list(class_names)
        self.top_k = max(1, min(top_k, self.spec.num_classes))
        self._net = explanation_model(model) if self.spec.is_stabn else model
        self._cam = GradCAM(model, gradcam_layer) if method == "gradcam" else None

    def explain(self, name: str, clip: np.ndarray, frames: np.ndarray, *,
                frame_numbers: Sequence[int] | None = None, true_label: int | None = None,
                boxes: np.ndarray | None = None) -> Explanation:
        """clip: normalised `[T, S, S, 3]`; frames: the same as uint8 for display."""
        outputs = self._net(clip[None], training=False)
        probs = keras.ops.convert_to_numpy(keras.ops.softmax(outputs[PERCEPTION], -1))[0]
        order = np.argsort(-probs, kind="stable")[:self.top_k]
        top = [(int(i), self.class_names[i], float(probs[i])) for i in order]
        if self.method == "attention":
            spatial = keras.ops.convert_to_numpy(outputs[SPATIAL_ATTENTION])[0, ..., 0]
            temporal = keras.ops.convert_to_numpy(outputs[TEMPORAL_ATTENTION])[0]
        else:  # explain the predicted class
            result = self._cam(clip[None], [top[0][0]])
            spatial, temporal = result.maps[0], result.frame_scores[0]
        numbers = list(frame_numbers) if frame_numbers is not None else list(range(len(clip)))
        return Explanation(name, frames, spatial, temporal, top, true_label,
                           [int(n) for n in numbers], boxes, self.method, self.class_names)


def explain_clip(model: keras.Model, clip: np.ndarray, frames: np.ndarray,
                 class_names: Sequence[str], *, name: str = "clip", method: str = "attention",
                 **kwargs) -> Explanation:
    """One-shot `Explainer(model, class_names, method).explain(name, clip, frames, ...)`."""
    return Explainer(model, class_names, method).explain(name, clip, frames, **kwargs)


def render_explanation(explanation: Explanation, output_dir: str, *, columns: int = 8,
                       animation: str = "gif", fps: float = 4.0, dpi: int = 100,
                       display_size: int = 224) -> dict[str, str]:
    """Writes `<name>.png` (Figure 3 + top-k), `<name>.gif|mp4` and `<name>.json` into
    `output_dir`; returns {"png", "animation", "json"} → paths (no animation with "none")."""
    if animation not in ANIMATIONS:
        raise EvaluationError(f"--animation={animation!r}: choose from {ANIMATIONS}")
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.join(output_dir, safe_name(explanation.name))
    fig = visualize.attention_figure(
        explanation.frames, explanation.spatial, explanation.temporal,
        title=explanation.title, columns=columns, frame_numbers=explanation.frame_numbers,
        boxes=explanation.boxes, top_k=[(n, p) for _, n, p in explanation.top_k],
        temporal_label=explanation.temporal_label)
    paths = {"png": stem + ".png", "json": stem + ".json"}
    with open(paths["png"], "wb") as f:
        f.write(visualize.figure_png(fig, dpi=dpi))
    if animation != "none":
        _, name, p = explanation.top_k[0]
        pictures = visualize.animation_frames(
            explanation.frames, explanation.spatial, explanation.temporal,
            display_size=display_size, frame_numbers=explanation.frame_numbers,
            caption=f"{name} ({p:.2f})", boxes=explanation.boxes)
        paths["animation"] = visualize.write_animation(f"{stem}.{animation}", pictures, fps)
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(explanation.to_json(), f, indent=1)
    return paths


def safe_name(name: str) -> str:
    """A file-name-safe version of an input's name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "clip"


def is_tfrecord_input(path: str) -> bool:
    return ".tfrecord" in os.path.basename(path)


def tfrecord_clips(pattern: str, num_frames: int, image_size: int, *, max_clips: int = 4,
                   clip_ids: Sequence[str] = ()) -> Iterator[dict]:
    """Clips of TFRecord shards, as the evaluation sees them: dicts with name, clip,
    frames (uint8), frame_numbers, true_label and boxes (None without ground truth). With
    `clip_ids`, only those clips (all of them, in record order); else the first
    `max_clips`."""
    wanted = set(clip_ids)
    ds = data_lib.make_dataset(pattern, training=False, batch_size=1, num_frames=num_frames,
                               image_size=image_size, with_metadata=True)
    count = 0
    for clips, targets in ds:
        clip_id = targets["clip_id"].numpy()[0].decode("utf-8")
        if wanted and clip_id not in wanted:
            continue
        clip = clips.numpy()[0]
        yield {"name": clip_id, "clip": clip, "frames": data_lib.denormalize(clip),
               "frame_numbers": targets["frame_indices"].numpy()[0].tolist(),
               "true_label": int(targets[PERCEPTION].numpy()[0]),
               "boxes": targets["gt_box"].numpy()[0] if "gt_box" in targets else None}
        count += 1
        if (wanted and count == len(wanted)) or (not wanted and count >= max_clips):
            return


def explain_inputs(explainer: Explainer, inputs: Sequence[str], output_dir: str, *,
                   max_clips: int = 4, clip_ids: Sequence[str] = (), columns: int = 8,
                   animation: str = "gif", fps: float = 4.0,
                   on_result=None, on_error=None) -> tuple[list[dict], list[dict]]:
    """Explains every input (video, frame folder or TFRecord pattern) and renders it.

    Returns (written: [{"name", "png", "animation", "json", "top_k"}], errors: [{"path",
    "error"}]); an unreadable input is an error entry, not an exception.
    """
    written, errors = [], []
    spec = explainer.spec
    used: set[str] = set()

    def done(explanation: Explanation) -> None:
        base, k = explanation.name, 1
        while safe_name(explanation.name) in used:  # two inputs with the same file name
            k += 1
            explanation.name = f"{base}_{k}"
        used.add(safe_name(explanation.name))
        paths = render_explanation(explanation, output_dir, columns=columns,
                                   animation=animation, fps=fps)
        entry = {"name": explanation.name, **paths, "top_k": explanation.top_k}
        written.append(entry)
        if on_result:
            on_result(explanation, entry)

    def fail(path: str, message: str) -> None:
        errors.append({"path": path, "error": message})
        if on_error:
            on_error(path, message)

    for path in inputs:
        path = os.fspath(path)
        if is_tfrecord_input(path):
            try:
                items = list(tfrecord_clips(path, spec.num_frames, spec.image_size,
                                            max_clips=max_clips, clip_ids=clip_ids))
            except FileNotFoundError as e:
                fail(path, str(e))
                continue
            except Exception as e:  # tf.errors.* for a corrupt shard
                fail(path, f"{path}: cannot read TFRecords ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})")
                continue
            if clip_ids and len(items) < len(set(clip_ids)):
                found = {item["name"] for item in items}
                fail(path, f"{path}: clip id(s) not found: {sorted(set(clip_ids) - found)}")
            for item in items:
                done(explainer.explain(item["name"], item["clip"], item["frames"],
                                       frame_numbers=item["frame_numbers"],
                                       true_label=item["true_label"], boxes=item["boxes"]))
            continue
        try:
            loaded = load_clip(path, spec.num_frames, spec.image_size)
        except (VideoReadError, OSError) as e:
            fail(path, str(e) if isinstance(e, VideoReadError) else f"{path}: {e}")
            continue
        name = os.path.basename(os.path.normpath(path))
        if not os.path.isdir(path):
            name = os.path.splitext(name)[0] or name
        done(explainer.explain(name, loaded.clips[0], loaded.frames[0],
                               frame_numbers=loaded.frame_indices[0].tolist()))
    return written, errors


def _define_flags():
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "ST-ABN (or, with --method=gradcam, baseline) "
                        ".keras checkpoint.")
    flags.DEFINE_string("output_dir", "explanations", "Where the PNG/GIF/JSON files go.")
    flags.DEFINE_string("labels", "", "labels.txt; default: the training run's labels (or "
                        "labels.txt beside TFRecord inputs), else class numbers.")
    flags.DEFINE_enum("method", "attention", METHODS, "attention: ST-ABN's Ms/Mt; gradcam: "
                      "3D Grad-CAM of the predicted class.")
    flags.DEFINE_string("gradcam_layer", "", "Grad-CAM layer or stage (default: last stage).")
    flags.DEFINE_enum("animation", "gif", ANIMATIONS, "Animated overlay format.")
    flags.DEFINE_float("fps", 4.0, "Animation frames per second.")
    flags.DEFINE_integer("columns", 8, "Frames per row of the figure.")
    flags.DEFINE_integer("top_k", 5, "Classes listed.")
    flags.DEFINE_integer("max_clips", 4, "Clips explained per TFRecord input.")
    flags.DEFINE_list("clip_ids", [], "Explain these clip ids of TFRecord inputs instead.")
    flags.mark_flag_as_required("checkpoint")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    inputs = list(argv[1:])
    if not inputs:
        print("stabn_tf.explain: error: give video files, frame folders or TFRecord patterns",
              file=sys.stderr)
        sys.exit(2)
    try:
        model = load_checkpoint(f.checkpoint)
        spec = model_spec(model)
        labels = f.labels
        if not labels:
            beside = [os.path.join(os.path.dirname(p), "labels.txt") for p in inputs
                      if is_tfrecord_input(p)]
            labels = next((p for p in beside if os.path.exists(p)), "")
        names = resolve_class_names(f.checkpoint, labels, spec.num_classes)
        explainer = Explainer(model, names, f.method, f.top_k, f.gradcam_layer or None)
    except (EvaluationError, OSError, ValueError) as e:
        print(f"stabn_tf.explain: error: {e}", file=sys.stderr)
        sys.exit(2)

    def show(explanation: Explanation, entry: dict) -> None:
        top = ", ".join(f"{n} {p:.2f}" for _, n, p in explanation.top_k)
        print(f"{explanation.name}: {top}\n  → {entry['png']}"
              + (f", {entry['animation']}" if "animation" in entry else ""), flush=True)

    def fail(path: str, message: str) -> None:
        print(f"stabn_tf.explain: error: {message}", file=sys.stderr, flush=True)

    _, errors = explain_inputs(explainer, inputs, f.output_dir, max_clips=f.max_clips,
                               clip_ids=f.clip_ids, columns=f.columns, animation=f.animation,
                               fps=f.fps, on_result=show, on_error=fail)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
