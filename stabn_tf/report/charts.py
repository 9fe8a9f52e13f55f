"""The report's own small pictures: the confusion matrix (matplotlib, like every other
figure of the project) and the Mt sparkline (inline SVG, so a gallery of hundreds of clips
costs no extra files)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from stabn_tf.explain.figures import figure_png

#: Beyond this many classes the matrix has no tick labels (they would not be legible).
MAX_LABELLED_CLASSES = 40


def confusion_counts(true: Sequence[int], predicted: Sequence[int],
                     num_classes: int) -> np.ndarray:
    """`[K, K]` counts: row = true class, column = predicted class."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(true, int), np.asarray(predicted, int)), 1)
    return counts


def confusion_png(counts: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """The confusion matrix as a PNG, rows normalised so rare classes stay visible."""
    k = len(class_names)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape, float), where=rows > 0)
    side = float(np.clip(2.5 + 0.22 * k, 4.0, 9.0))
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(k), [str(i) for i in range(k)], fontsize=7)
        ax.set_yticks(range(k), [f"{str(n)[:40]}  {i}" for i, n in enumerate(class_names)],
                      fontsize=7)
        if k <= 16:
            for (i, j), n in np.ndenumerate(counts):
                if n:
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class (number as on the left)")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    return figure_png(fig, dpi=80)


def sparkline_svg(values: Sequence[float], *, width: int = 120, height: int = 28) -> str:
    """Per-frame weights in [0, 1] as an inline SVG area chart, one vertex per frame."""
    values = np.clip(np.asarray(values, float), 0.0, 1.0)
    if len(values) == 0:
        return ""
    xs = np.linspace(1, width - 1, len(values)) if len(values) > 1 else np.array([width / 2])
    ys = (height - 1) - values * (height - 2)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    area = f"{xs[0]:.1f},{height - 1} {line} {xs[-1]:.1f},{height - 1}"
    peak = int(np.argmax(values))
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} '
            f'{height}" role="img" aria-label="temporal weight per frame">'
            f'<polygon points="{area}" fill="#f6c89f"/>'
            f'<polyline points="{line}" fill="none" stroke="#c2410c" stroke-width="1.5"/>'
            f'<circle cx="{xs[peak]:.1f}" cy="{ys[peak]:.1f}" r="2.2" fill="#7c2d12"/></svg>')
