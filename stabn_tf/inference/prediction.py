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
        if self.true_label is not None:
            out["true_label"] = {"index": self.true_label,
                                 "label": self.class_names[self.true_label]}
        if self.temporal is not None:
            out["method"] = self.method
            out["temporal_attention"] = np.round(np.asarray(self.temporal, float), 4).tolist()
            out["spatial_attention"] = np.round(np.asarray(self.spatial, float), 4).tolist()
        if self.attention_probabilities is not None:
            out["attention_branch_top_k"] = entries(self.top_k(k, attention_branch=True))
        return out

    def format_text(self, k: int = 5) -> str:
        """The block the CLIs print: the top-k, then per clip "when" (a sparkline and the
        weight of each sampled source frame) and "where" (each frame's peak cell)."""
        top = self.top_k(k)
        width = max(len(name) for _, name, _ in top)
        lines = [self.source or self.name]
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
            h, w = self.spatial[c].shape[1:]
            peaks = [np.unravel_index(int(np.argmax(m)), (h, w)) for m in self.spatial[c]]
            lines.append(f"  where{label} (peak per frame, (y, x) as fractions of the frame): "
                         + " ".join(f"({(y + 0.5) / h:.2f},{(x + 0.5) / w:.2f})"
                                    for y, x in peaks))
        return "\n".join(lines)


def sparkline(values) -> str:
    """Values in [0, 1] as block characters, one per frame."""
    return "".join(_BARS[int(np.clip(v, 0.0, 1.0) * (len(_BARS) - 1) + 0.5)] for v in values)
