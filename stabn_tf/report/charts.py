"""The report's own charts: the confusion matrix (matplotlib, like every other figure of
the project). The gallery's Mt sparklines are drawn in the page by `gallery.js`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from stabn_tf.explain.figures import figure_png
from stabn_tf.explain.glyphs import name_style

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
        labels = [f"{str(n)[:40]}  {i}" for i, n in enumerate(class_names)]
        ax.set_yticks(range(k), labels, fontsize=7, **name_style(*labels))
        if k <= 16:
            for (i, j), n in np.ndenumerate(counts):
                if n:
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class (number as on the left)")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9, **name_style(title))
    return figure_png(fig, dpi=80)
