"""Classify video files: top-k labels with probabilities and the per-frame temporal attention.

    python -m stabn_tf.predict clip1.mp4 clip2.webm frames_dir/ \\
        --checkpoint=runs/demo/checkpoints/final.keras [--labels=labels.txt] [--json]

Each input is a video file (anything PyAV decodes: mp4, webm, avi, mkv, ...) or a folder
of frame images (sorted by name). It is prepared exactly like an evaluation clip
(`stabn_tf.data`: stored short side 256, centre segment sampling, centre crop, ImageNet
normalisation). A file that cannot be read gives one error line on stderr and the others
are still processed; the exit status is then 1.

Library: `load_clip` (one input → clip + display frames), `predict_clip`,
`predict_paths`, `format_prediction`, `resolve_class_names`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence

import keras
import numpy as np
from PIL import Image

from stabn_tf.data import read_labels
from stabn_tf.data import video as video_lib
from stabn_tf.data.video import VideoReadError
from stabn_tf.evaluate import EvaluationError, load_checkpoint, model_spec
from stabn_tf.models.stabn import ATTENTION, PERCEPTION, TEMPORAL_ATTENTION, explanation_model

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclasses.dataclass
class LoadedClip:
    """One input, ready for the model and for pictures.

    clips: float32 `[n, T, S, S, 3]`, normalised; frames: uint8 `[n, T, S, S, 3]`, the same
    pixels for display; frame_indices: `[n, T]` positions in the source; fps may be None.
    """

    path: str
    clips: np.ndarray
    frames: np.ndarray
    frame_indices: np.ndarray
    num_source_frames: int
    fps: float | None


def read_frame_folder(path: str | os.PathLike,
                      short_side: int | None = video_lib.DEFAULT_SHORT_SIDE) -> np.ndarray:
    """The images of a folder, sorted by name, as uint8 RGB `[N, H, W, 3]` with the short
    side brought down to `short_side` (as the converter stores frames). Raises
    `VideoReadError` for an empty folder, an unreadable image or mixed sizes."""
    path = os.fspath(path)
    names = sorted(n for n in os.listdir(path) if n.lower().endswith(FRAME_EXTENSIONS))
    if not names:
        raise VideoReadError(path, f"frame folder has no {'/'.join(FRAME_EXTENSIONS)} images")
    frames, size = [], None
    for name in names:
        file = os.path.join(path, name)
        try:
            with Image.open(file) as img:
                img = img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise VideoReadError(file, f"unreadable frame ({e})") from e
        if size is None:
            first = (img.height, img.width)
            size = video_lib.scaled_size(img.height, img.width, short_side)
        elif (img.height, img.width) != first:
            raise VideoReadError(file, f"frame size {img.height}×{img.width} differs from the "
                                 f"first frame's {first[0]}×{first[1]}")
        if (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.Resampling.BOX)
        frames.append(np.asarray(img))
    return np.stack(frames)


def load_clip(path: str | os.PathLike, num_frames: int, image_size: int,
              num_clips: int = 1) -> LoadedClip:
    """A video file or frame folder → `LoadedClip`, prepared like an evaluation clip (the
    same ops as `stabn_tf.data.load_video`). Raises `VideoReadError` naming the input."""
    path = os.fspath(path)
    if os.path.isdir(path):
        source, fps = read_frame_folder(path), None
    else:
        decoded = video_lib.decode_video(path)
        source, fps = decoded.frames, decoded.fps
    clips, frames, indices = video_lib.eval_clips(source, num_frames, image_size, num_clips)
    return LoadedClip(path, clips, frames, np.asarray(indices), len(source), fps)


def resolve_class_names(checkpoint: str, labels: str, num_classes: int) -> list[str]:
    """Class names: `labels` (a labels.txt), else the training run's labels (its
    config.json next to `checkpoints/`: `--labels`, labels.txt beside the training shards,
    or the built-in synthetic set's classes), else "class <i>"."""
    names = read_labels(labels) if labels else _run_labels(checkpoint)
    if names is not None and len(names) != num_classes:
        if labels:
            raise EvaluationError(f"{labels} lists {len(names)} classes but the model has "
                                  f"{num_classes}")
        names = None
    return names or [f"class {i}" for i in range(num_classes)]


def _run_labels(checkpoint: str) -> list[str] | None:
    from stabn_tf.training.trainer import load_run_config

    try:
        config = load_run_config(checkpoint)
    except (OSError, ValueError, TypeError):
        return None
    if config is None:
        return None
    try:
        if config.labels:
            return read_labels(config.labels)
        if config.dataset == "synthetic":  # known without (re)generating the data
            from stabn_tf.data.synthetic import CLASSES

            return list(CLASSES)
        if config.train_files:
            import glob

            matches = sorted(glob.glob(config.train_files.split(",")[0]))
            if matches:
                return read_labels(os.path.join(os.path.dirname(matches[0]), "labels.txt"))
    except (OSError, ValueError):
        return None
    return None


@dataclasses.dataclass
class Prediction:
    """top_k: [(class index, name, probability)] of the clips' averaged softmax;
    temporal_attention: per clip, one weight per frame (None for a baseline model)."""

    path: str
    top_k: list[tuple[int, str, float]]
    temporal_attention: list[list[float]] | None
    frame_indices: list[list[int]]
    attention_top_k: list[tuple[int, str, float]] | None = None

    def to_json(self) -> dict:
        def entries(top):
            return [{"index": i, "label": n, "probability": round(p, 6)} for i, n, p in top]

        out = {"path": self.path, "top_k": entries(self.top_k),
               "frame_indices": self.frame_indices}
        if self.temporal_attention is not None:
            out["temporal_attention"] = [[round(v, 4) for v in c]
                                         for c in self.temporal_attention]
        if self.attention_top_k is not None:
            out["attention_branch_top_k"] = entries(self.attention_top_k)
        return out


class Predictor:
    """A model plus class names; call `predict(loaded_clip)`."""

    def __init__(self, model: keras.Model, class_names: Sequence[str], top_k: int = 5):
        self.model = model
        self.spec = model_spec(model)
        self.class_names = list(class_names)
        self.top_k = max(1, min(top_k, self.spec.num_classes))
        self._net = explanation_model(model) if self.spec.is_stabn else model

    def _top(self, probabilities: np.ndarray) -> list[tuple[int, str, float]]:
        order = np.argsort(-probabilities, kind="stable")[:self.top_k]
        return [(int(i), self.class_names[i], float(probabilities[i])) for i in order]

    def predict(self, loaded: LoadedClip) -> Prediction:
        outputs = self._net(loaded.clips, training=False)
        probs = keras.ops.convert_to_numpy(keras.ops.softmax(outputs[PERCEPTION], axis=-1))
        prediction = Prediction(loaded.path, self._top(probs.mean(axis=0)), None,
                                loaded.frame_indices.tolist())
        if self.spec.is_stabn:
            temporal = keras.ops.convert_to_numpy(outputs[TEMPORAL_ATTENTION])
            prediction.temporal_attention = temporal.astype(float).tolist()
            attention = keras.ops.convert_to_numpy(keras.ops.softmax(outputs[ATTENTION], -1))
            prediction.attention_top_k = self._top(attention.mean(axis=0))
        return prediction


def predict_clip(model: keras.Model, loaded: LoadedClip, class_names: Sequence[str],
                 top_k: int = 5) -> Prediction:
    """One-shot `Predictor(model, class_names, top_k).predict(loaded)`."""
    return Predictor(model, class_names, top_k).predict(loaded)


def predict_paths(predictor: Predictor, paths: Sequence[str], *, num_clips: int = 1,
                  on_result: Callable[[Prediction], None] | None = None,
                  on_error: Callable[[str, str], None] | None = None,
                  ) -> tuple[list[Prediction], list[dict]]:
    """Predicts every path; unreadable inputs are collected as `{"path", "error"}` (and
    reported through `on_error(path, message)`) instead of stopping the others."""
    predictions, errors = [], []
    for path in paths:
        try:
            loaded = load_clip(path, predictor.spec.num_frames, predictor.spec.image_size,
                               num_clips)
        except (VideoReadError, OSError) as e:
            message = str(e) if isinstance(e, VideoReadError) else f"{path}: {e.strerror or e}"
            errors.append({"path": os.fspath(path), "error": message})
            if on_error:
                on_error(os.fspath(path), message)
            continue
        prediction = predictor.predict(loaded)
        predictions.append(prediction)
        if on_result:
            on_result(prediction)
    return predictions, errors


def format_prediction(prediction: Prediction) -> str:
    """Human-readable block: the path, the top-k with probabilities, the "when" weights."""
    width = max(len(name) for _, name, _ in prediction.top_k)
    lines = [prediction.path]
    for rank, (_, name, p) in enumerate(prediction.top_k, 1):
        lines.append(f"  {rank}. {name:<{width}}  {p:6.1%}")
    if prediction.temporal_attention is not None:
        for c, (weights, frames) in enumerate(zip(prediction.temporal_attention,
                                                  prediction.frame_indices)):
            label = "  temporal attention" + (f" (clip {c + 1})" if
                                              len(prediction.frame_indices) > 1 else "")
            lines.append(f"{label}, per frame (source frame: weight):")
            cells = [f"{f}: {w:.2f}" for f, w in zip(frames, weights)]
            for start in range(0, len(cells), 8):
                lines.append("    " + "  ".join(cells[start:start + 8]))
    return "\n".join(lines)


def _define_flags():
    from absl import flags

    flags.DEFINE_string("checkpoint", None, "ST-ABN (or baseline) .keras checkpoint.")
    flags.DEFINE_string("labels", "", "labels.txt (one class per line); default: the training "
                        "run's labels, else class numbers.")
    flags.DEFINE_integer("top_k", 5, "How many classes to list.")
    flags.DEFINE_integer("num_clips", 1, "Clips per video; their softmax is averaged.")
    flags.DEFINE_bool("json", False, "One JSON document on stdout instead of text.")
    flags.mark_flag_as_required("checkpoint")


def main(argv: Sequence[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    paths = list(argv[1:])
    if not paths:
        print("stabn_tf.predict: error: give one or more video files or frame folders",
              file=sys.stderr)
        sys.exit(2)
    try:
        model = load_checkpoint(f.checkpoint)
        spec = model_spec(model)
        names = resolve_class_names(f.checkpoint, f.labels, spec.num_classes)
        predictor = Predictor(model, names, f.top_k)
    except (EvaluationError, OSError, ValueError) as e:  # ValueError: a bad labels file
        print(f"stabn_tf.predict: error: {e}", file=sys.stderr)
        sys.exit(2)

    def show(prediction: Prediction) -> None:
        if not f.json:
            print(format_prediction(prediction) + "\n", flush=True)

    def fail(path: str, message: str) -> None:
        print(f"stabn_tf.predict: error: {message}", file=sys.stderr, flush=True)

    predictions, errors = predict_paths(predictor, paths, num_clips=f.num_clips,
                                        on_result=show, on_error=fail)
    if f.json:
        json.dump({"checkpoint": f.checkpoint, "predictions": [p.to_json() for p in predictions],
                   "errors": errors}, sys.stdout, indent=1)
        print()
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
