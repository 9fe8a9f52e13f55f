"""Run a shipped ST-ABN TFLite model on video files with the LiteRT runtime.

    python -m stabn_tf.lite model.tflite VIDEO [VIDEO ...] [--top_k=5] [--output_dir=DIR]

For each video: the top-k classes with probabilities, the temporal attention per frame
("when") and where the spatial attention peaks per frame ("where"). With `--output_dir`,
a JSON file and a Figure-3-style PNG per video. The clip is prepared exactly as the eval
pipeline prepares a stored video (`stabn_tf.data.load_video`), at the model's own T and
size, read from the model file; class names come from `labels.txt` next to the model
(written by `python -m export.tflite`). Float, float16, dynamic-range and integer models
all work: an int8 / int16 input is quantized here with the scale stored in the model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from absl import app, flags
from ai_edge_litert.interpreter import Interpreter, OpResolverType

PROBABILITIES = "probabilities"
LOGITS = "logits"
SPATIAL_ATTENTION = "spatial_attention"
TEMPORAL_ATTENTION = "temporal_attention"
_BARS = "▁▂▃▄▅▆▇█"


@dataclasses.dataclass
class VideoPrediction:
    """One video's result: top-k `(class index, name, probability)`, Mt `[T]`, Ms
    `[T, h, w]` (None for a baseline model) and the sampled frames (uint8, for pictures)."""

    path: str
    top_k: list[tuple[int, str, float]]
    temporal_attention: np.ndarray | None
    spatial_attention: np.ndarray | None
    frames: np.ndarray | None = None

    def to_json(self) -> dict:
        out = {"video": self.path,
               "top_k": [{"index": i, "label": name, "probability": round(p, 6)}
                         for i, name, p in self.top_k]}
        if self.temporal_attention is not None:
            out["temporal_attention"] = [round(float(v), 6) for v in self.temporal_attention]
            out["spatial_attention"] = np.round(self.spatial_attention, 6).tolist()
        return out


class LiteModel:
    """A TFLite ST-ABN (or baseline) model from `python -m export.tflite`.

    `model(clips)` runs normalised float clips `[T, H, W, 3]` or `[B, T, H, W, 3]` (one
    interpreter call per clip: the model has batch 1) and returns the outputs by name,
    batched and float32. `num_threads` sets the CPU threads; `xnnpack=False` runs the
    builtin kernels without the default XNNPACK delegate (for comparisons).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *,
                 model_content: bytes | None = None,
                 labels: Sequence[str] | str | os.PathLike | None = None,
                 num_threads: int | None = None, xnnpack: bool = True):
        resolver = (OpResolverType.AUTO if xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.path = os.fspath(model_path) if model_path is not None else None
        self.interpreter = Interpreter(model_path=self.path, model_content=model_content,
                                       num_threads=num_threads,
                                       experimental_op_resolver_type=resolver)
        self._runner = self.interpreter.get_signature_runner()
        inputs = self._runner.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"expected one input (clips), the model has {sorted(inputs)}")
        self.input_name, self._input = next(iter(inputs.items()))
        shape = tuple(int(s) for s in self._input["shape"])
        if len(shape) != 5 or shape[0] != 1 or shape[-1] != 3:
            raise ValueError(f"expected input [1, T, H, W, 3], the model has {list(shape)}")
        self.num_frames, self.height, self.width = shape[1:4]
        self.output_names = sorted(self._runner.get_output_details())
        if PROBABILITIES not in self.output_names:
            raise ValueError(f"the model has no {PROBABILITIES!r} output "
                             f"({self.output_names}): export it with `python -m export.tflite`")
        self.num_classes = int(self._runner.get_output_details()[PROBABILITIES]["shape"][-1])
        self.labels = self._resolve_labels(labels)

    def _resolve_labels(self, labels) -> list[str]:
        from stabn_tf.data import read_labels

        if labels is None and self.path is not None:
            candidate = os.path.join(os.path.dirname(os.path.abspath(self.path)), "labels.txt")
            labels = candidate if os.path.exists(candidate) else None
        if labels is None:
            return [f"class {i}" for i in range(self.num_classes)]
        names = read_labels(labels) if isinstance(labels, (str, os.PathLike)) else list(labels)
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for a model with {self.num_classes} "
                             "classes")
        return names

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def _prepare(self, clip: np.ndarray) -> np.ndarray:
        clip = np.asarray(clip, np.float32)[None]
        if self.input_dtype == np.float32:
            return clip
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(clip / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def __call__(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        clips = np.asarray(clips)
        single = clips.ndim == 4
        batch = clips[None] if single else clips
        expected = (self.num_frames, self.height, self.width, 3)
        if batch.ndim != 5 or batch.shape[1:] != expected:
            raise ValueError(f"expected clips [T, H, W, 3] or [B, T, H, W, 3] with "
                             f"(T, H, W) = {expected[:3]}; got {clips.shape}")
        outs = [self._runner(**{self.input_name: self._prepare(clip)}) for clip in batch]
        return {name: np.concatenate([np.asarray(o[name], np.float32) for o in outs])
                for name in self.output_names}

    def predict_video(self, path: str | os.PathLike, top_k: int = 5,
                      with_frames: bool = False) -> VideoPrediction:
        """Decodes, samples and normalises one video file, runs it, ranks the classes.

        Raises `stabn_tf.data.VideoReadError` (an OSError) naming the file when it cannot
        be read.
        """
        from stabn_tf.data.video import decode_video, eval_clips

        if self.height != self.width:
            raise ValueError(f"video input needs a square model, this one is "
                             f"{self.height}×{self.width}")
        # One decode for both the model's clip and the frames shown with it.
        clips, shown, _ = eval_clips(decode_video(path).frames, self.num_frames, self.height)
        out = {k: v[0] for k, v in self(clips[0]).items()}
        # Rank by logits when present: int8 probabilities tie at their 1/256 resolution.
        scores = out.get(LOGITS, out[PROBABILITIES])
        order = np.argsort(-scores, kind="stable")[: max(1, min(top_k, self.num_classes))]
        frames = shown[0] if with_frames else None
        return VideoPrediction(
            path=os.fspath(path),
            top_k=[(int(i), self.labels[i], float(out[PROBABILITIES][i])) for i in order],
            temporal_attention=out.get(TEMPORAL_ATTENTION),
            spatial_attention=out.get(SPATIAL_ATTENTION),
            frames=frames,
        )


def sparkline(values: Sequence[float]) -> str:
    """Values in [0, 1] as block characters, one per frame."""
    return "".join(_BARS[int(np.clip(v, 0.0, 1.0) * (len(_BARS) - 1) + 0.5)] for v in values)


def format_prediction(result: VideoPrediction) -> str:
    """The text the CLI prints for one video."""
    lines = [result.path]
    width = max(len(name) for _, name, _ in result.top_k)
    for rank, (index, name, prob) in enumerate(result.top_k, start=1):
        lines.append(f"  {rank}. {name:<{width}}  {prob:6.1%}  (class {index})")
    if result.temporal_attention is not None:
        mt = result.temporal_attention
        peak = int(np.argmax(mt))
        lines.append(f"  when  (temporal attention, {len(mt)} frames): {sparkline(mt)}  "
                     f"[{' '.join(f'{v:.2f}' for v in mt)}]  peak: frame {peak}")
        ms = result.spatial_attention
        h, w = ms.shape[1:]
        cells = [np.unravel_index(int(np.argmax(m)), (h, w)) for m in ms]
        where = " ".join(f"({(y + 0.5) / h:.2f},{(x + 0.5) / w:.2f})" for y, x in cells)
        lines.append(f"  where (spatial attention peak per frame, (y, x) as fractions of the "
                     f"frame): {where}")
    return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("labels", None, "labels.txt; default: next to the model file.")
    flags.DEFINE_integer("top_k", 5, "How many classes to list per video.")
    flags.DEFINE_integer("num_threads", None, "CPU threads for the interpreter.")
    flags.DEFINE_string("output_dir", None, "Also write <video>.json and <video>.png (frames "
                        "with the spatial attention overlaid, temporal attention as bars).")


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3:
        print("usage: python -m stabn_tf.lite MODEL.tflite VIDEO [VIDEO ...] [--top_k=5] "
              "[--output_dir=DIR]", file=sys.stderr)
        return 2
    from stabn_tf.data import VideoReadError

    model_path, videos = argv[1], argv[2:]
    try:
        model = LiteModel(model_path, labels=FLAGS.labels, num_threads=FLAGS.num_threads)
    except (OSError, ValueError) as e:
        print(f"error: {model_path}: {e}", file=sys.stderr)
        return 2
    if FLAGS.output_dir:
        os.makedirs(FLAGS.output_dir, exist_ok=True)
    failures = 0
    for video in videos:
        try:
            result = model.predict_video(video, FLAGS.top_k, with_frames=bool(FLAGS.output_dir))
        except VideoReadError as e:
            print(f"error: {e}", file=sys.stderr)
            failures += 1
            continue
        print(format_prediction(result), flush=True)
        if FLAGS.output_dir:
            _write_outputs(result, FLAGS.output_dir)
    return 1 if failures else 0


def _write_outputs(result: VideoPrediction, output_dir: str) -> None:
    stem = os.path.splitext(os.path.basename(result.path))[0]
    with open(os.path.join(output_dir, f"{stem}.json"), "w") as f:
        json.dump(result.to_json(), f, indent=1)
    if result.temporal_attention is not None and result.frames is not None:
        from stabn_tf.visualize import attention_figure, figure_png

        index, name, prob = result.top_k[0]
        fig = attention_figure(result.frames, result.spatial_attention,
                               result.temporal_attention, title=f"{stem}: {name} ({prob:.0%})")
        with open(os.path.join(output_dir, f"{stem}.png"), "wb") as f:
            f.write(figure_png(fig))


if __name__ == "__main__":
    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
