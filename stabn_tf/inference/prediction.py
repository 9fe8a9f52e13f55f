"""`Prediction`: what every front end (predict, explain, evaluate's figures, TensorBoard,
the LiteRT runner) gets back for one input, whichever model produced it."""

from __future__ import annotations

import dataclasses

import numpy as np

_BARS = "▁▂▃▄▅▆▇█"


@dataclasses.dataclass
class Prediction:
    """One input's result.

    probabilities `[K]`: the perception softmax, averaged over the input's clips.
    per_clip `[n, K]`: each clip's softmax. spatial `[n, T, h, w]` and temporal `[n, T]`:
    the explanation of each clip (Ms/Mt for ST-ABN, a Grad-CAM for `method="gradcam"`;
    None for a baseline without one). attention_probabilities `[K]`: ST-ABN's attention
    branch, averaged (Keras models only). frames `uint8 [n, T, S, S, 3]`: the pixels the
    model saw, for pictures. frame_indices `[n, T]`: their positions in the source.
    true_label / boxes `[T, 4]`: ground truth where the input has it. precision: what
    the model computed in ("float32", "bfloat16", a TFLite model's "int8", ...).
    frame_size: the source frame's (height, width); crop `(y, x, h, w)`: the model's centre
    crop as fractions of it. Maps and frames cover the crop; every "where" reported is
    mapped through it into the source frame (None: unknown, reported in the model's view).
    note: what the user should know about the input (`Clip.note`), printed and in JSON.
    """

    name: str
    class_names: list[str]
    probabilities: np.ndarray
    per_clip: np.ndarray
    frame_indices: np.ndarray
    spatial: np.ndarray | None = None
    temporal: np.ndarray | None = None
    attention_probabilities: np.ndarray | None = None
    frames: np.ndarray | None = None
    true_label: int | None = None
    boxes: np.ndarray | None = None
    method: str = "attention"
    source: str | None = None
    precision: str | None = None
    frame_size: tuple[int, int] | None = None
    crop: tuple[float, float, float, float] | None = None
    note: str | None = None  # about the input (a video cut short), for the user

    def top_k(self, k: int = 5, *, attention_branch: bool = False
              ) -> list[tuple[int, str, float]]:
        """The k most probable classes as (index, name, probability), ties by index."""
        probabilities = self.attention_probabilities if attention_branch else self.probabilities
        order = np.argsort(-probabilities, kind="stable")[:max(1, min(k, len(probabilities)))]
        return [(int(i), self.class_names[i], float(probabilities[i])) for i in order]

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def explanation_label(self) -> str:
        return "temporal attention Mt" if self.method == "attention" else "Grad-CAM frame weight"

    def peaks(self, clip: int = 0) -> list[tuple[float, float]]:
        """Each frame's spatial-map peak (centre of the peak cell) as (y, x) fractions of
        the source frame (of the model's view when the crop is unknown)."""
        h, w = self.spatial[clip].shape[1:3]
        cells = [np.unravel_index(int(np.argmax(m)), (h, w)) for m in self.spatial[clip]]
        return [to_frame((y + 0.5) / h, (x + 0.5) / w, self.crop) for y, x in cells]

    @property
    def where_frame(self) -> str:
        """What "where" fractions are of, in words."""
        if self.crop is None:
            return "the model's view"
        return f"the {self.frame_size[1]}×{self.frame_size[0]} source frame"

    def view_caption(self) -> str | None:
        """Which part of the source frame the pictures show (None: unknown)."""
        if self.crop is None:
            return None
        y, x, h, w = self.crop
        return (f"frames: the model's centre crop, rows {y:.0%}–{y + h:.0%} and columns "
                f"{x:.0%}–{x + w:.0%} of {self.where_frame}")

    @property
    def spatial_label(self) -> str:
        return "spatial attention Ms" if self.method == "attention" else "Grad-CAM map"

    def title(self) -> str:
        _, name, p = self.top_k(1)[0]
        text = f"{self.name}  |  predicted: {name} (p={p:.2f})"
        if self.true_label is not None:
            text += f"  |  true: {self.class_names[self.true_label]}"
        return text

    def to_json(self, k: int = 5) -> dict:
        def entries(top):
            return [{"index": i, "label": n, "probability": round(p, 6)} for i, n, p in top]

        out: dict = {"name": self.name, "top_k": entries(self.top_k(k)),
                     "frame_indices": np.asarray(self.frame_indices).tolist()}
        if self.source is not None:
            out["path"] = self.source
        if self.precision is not None:
            out["precision"] = self.precision
        if self.note is not None:
            out["note"] = self.note
        if self.true_label is not None:
            out["true_label"] = {"index": self.true_label,
                                 "label": self.class_names[self.true_label]}
        if self.temporal is not None:
            out["method"] = self.method
            out["temporal_attention"] = np.round(np.asarray(self.temporal, float), 4).tolist()
            out["spatial_attention"] = np.round(np.asarray(self.spatial, float), 4).tolist()
            out["where"] = [[[round(y, 4), round(x, 4)] for y, x in self.peaks(c)]
                            for c in range(len(self.spatial))]
            if self.crop is not None:
                out["frame_size"] = list(self.frame_size)
                out["spatial_attention_crop"] = [round(v, 6) for v in self.crop]
        if self.attention_probabilities is not None:
            out["attention_branch_top_k"] = entries(self.top_k(k, attention_branch=True))
        return out

    def format_text(self, k: int = 5) -> str:
        """The block the CLIs print: the top-k, then per clip "when" (a sparkline and the
        weight of each sampled source frame) and "where" (each frame's peak cell)."""
        top = self.top_k(k)
        width = max(len(name) for _, name, _ in top)
        lines = [self.source or self.name]
        if self.note:
            lines.append(f"  note: {self.note}")
        for rank, (index, name, p) in enumerate(top, 1):
            lines.append(f"  {rank}. {name:<{width}}  {p:6.1%}  (class {index})")
        if self.temporal is None:
            return "\n".join(lines)
        clips = len(self.temporal)
        for c in range(clips):
            weights, frames = self.temporal[c], self.frame_indices[c]
            label = f" (clip {c + 1})" if clips > 1 else ""
            lines.append(f"  when{label}: {sparkline(weights)}  peak at source frame "
                         f"{int(frames[int(np.argmax(weights))])}")
            cells = [f"{int(f)}: {w:.2f}" for f, w in zip(frames, weights)]
            for start in range(0, len(cells), 8):
                lines.append("    " + "  ".join(cells[start:start + 8]))
            lines.append(f"  where{label} (peak per frame, (y, x) as fractions of "
                         f"{self.where_frame}): "
                         + " ".join(f"({y:.2f},{x:.2f})" for y, x in self.peaks(c)))
        return "\n".join(lines)


def to_frame(y: float, x: float, crop: tuple[float, float, float, float] | None
             ) -> tuple[float, float]:
    """A point (y, x) in fractions of the model's view → fractions of the source frame,
    through `crop` `(y, x, h, w)` (fractions of the frame; None: the view is the frame)."""
    if crop is None:
        return float(y), float(x)
    cy, cx, ch, cw = crop
    return float(cy + y * ch), float(cx + x * cw)


def sparkline(values) -> str:
    """Values in [0, 1] as block characters, one per frame."""
    return "".join(_BARS[int(np.clip(v, 0.0, 1.0) * (len(_BARS) - 1) + 0.5)] for v in values)
