"""How good is an explanation? Metrics against ground truth, as pure numpy functions.

Conventions (shared by every function here):

- A spatial map is `[..., h, w]` (any non-negative or real scores; higher = more
  important), at any resolution. It is compared with the frame by bilinear upsampling
  to the frame size with half-pixel centres (`stabn_tf.explain.resize`, which also
  sizes the pictures), so maps of different resolutions (ST-ABN's Ms at H/16, a
  Grad-CAM at H/32) are judged on the same pixels.
- A box is `[..., 4]`: normalised (ymin, xmin, ymax, xmax) in the frame, as the TFRecord
  ground truth and `stabn_tf.data.make_dataset(with_metadata=True)` give them. A pixel
  (i, j) of an `H×W` frame is inside when its centre ((i+½)/H, (j+½)/W) is. An all-zero
  box means "object not visible"; such frames are skipped by the callers.
- Temporal scores are `[..., T]`, one per frame, higher = more important.

Metrics:

- `pointing_game`: is the map's peak inside the box (1) or not (0)? Ties (a flat map)
  score the fraction of tied peak pixels inside, so a constant map scores the box's area,
  what chance would.
- `centre_prior`: the map a method that ignores the video would give (a central blob):
  with objects near the centre it is a stronger reference than random maps.
- `mass_in_box`: share of the map's mass inside the box. Maps are min-max normalised per
  frame first by default, so a map with a large constant offset (a sigmoid attention that
  never goes below 0.3) is judged on its shape, like a ReLU'd Grad-CAM.
- `auroc` / `temporal_auroc`: how well the temporal scores separate active frames (the
  action happens) from static ones; 1 = every active frame ranked above every static one,
  0.5 = chance. Ties count one half (Mann–Whitney U).
- `pearson`: how alike two maps or score sets are (one correlation over all their values),
  e.g. one model's attention against another's or against its exported copy.
- Deletion (faithfulness): `frame_deletion_masks` / `region_deletion_masks` give the order
  in which frames / grid cells are removed (most important first), `apply_frame_mask` /
  `apply_region_mask` remove them from a clip, and `deletion_auc` summarises the curve of
  the true-class probability against the fraction removed (lower = the explanation found
  what the model needs; compare with a random order on the same model).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from stabn_tf.explain.resize import resize


def box_mask(boxes: np.ndarray, size: tuple[int, int] | int,
             tolerance: float = 0.0) -> np.ndarray:
    """Boolean `[..., H, W]`: pixel centres inside each box `[..., 4]`, grown by
    `tolerance` (a fraction of the frame side) on every side."""
    boxes = np.asarray(boxes, np.float64)
    height, width = (size, size) if isinstance(size, int) else size
    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    ymin, xmin, ymax, xmax = (boxes[..., k, None] for k in range(4))
    inside_y = (ys >= ymin - tolerance) & (ys <= ymax + tolerance)  # [..., H]
    inside_x = (xs >= xmin - tolerance) & (xs <= xmax + tolerance)  # [..., W]
    return inside_y[..., :, None] & inside_x[..., None, :]


def box_visible(boxes: np.ndarray) -> np.ndarray:
    """`[...]` True where a box `[..., 4]` has positive area (all zeros = not visible)."""
    boxes = np.asarray(boxes)
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def pointing_game(maps: np.ndarray, boxes: np.ndarray, size: tuple[int, int] | int, *,
                  tolerance: float = 0.0) -> np.ndarray:
    """Per map: 1.0 if its peak (after upsampling to `size`) is inside the box, else 0.0.

    Shapes: maps `[N, h, w]`, boxes `[N, 4]` → `[N]` float. When several pixels tie for
    the peak, the score is the fraction of them inside the box. `tolerance` grows the box
    by that fraction of the frame side (the classic pointing game allows 15 px at 224 px).
    """
    up = resize(maps, size)
    flat = up.reshape(len(up), -1)
    peak = flat.max(axis=1, keepdims=True)
    spread = flat.max(axis=1, keepdims=True) - flat.min(axis=1, keepdims=True)
    ties = flat >= peak - 1e-9 * np.maximum(spread, 1e-12)
    inside = box_mask(boxes, size, tolerance).reshape(len(up), -1)
    return (ties & inside).sum(axis=1) / ties.sum(axis=1)


def mass_in_box(maps: np.ndarray, boxes: np.ndarray, size: tuple[int, int] | int, *,
                normalize: bool = True) -> np.ndarray:
    """Per map: the share of its mass inside the box, in [0, 1].

    Shapes: maps `[N, h, w]`, boxes `[N, 4]` → `[N]` float. With `normalize` each upsampled
    map is min-max scaled to [0, 1] first (a flat map then counts as uniform); otherwise
    negative values are clipped to 0. A map with no mass at all scores the box's area.
    """
    up = resize(maps, size)
    flat = up.reshape(len(up), -1)
    if normalize:
        low = flat.min(axis=1, keepdims=True)
        span = flat.max(axis=1, keepdims=True) - low
        flat = np.where(span > 0, (flat - low) / np.where(span > 0, span, 1.0), 1.0)
    else:
        flat = np.clip(flat, 0.0, None)
    inside = box_mask(boxes, size).reshape(len(up), -1)
    total = flat.sum(axis=1)
    area = inside.mean(axis=1)
    share = (flat * inside).sum(axis=1) / np.where(total > 0, total, 1.0)
    return np.where(total > 0, share, area)


def centre_prior(shape: tuple[int, int], sigma: float = 0.2) -> np.ndarray:
    """A reference "explanation" that ignores the input: a Gaussian `[h, w]` centred on the
    frame, `sigma` in fractions of the frame side, peak 1. Objects tend to be near the
    centre, so a spatial explanation should beat this, not only random maps."""
    height, width = shape
    ys = (np.arange(height) + 0.5) / height - 0.5
    xs = (np.arange(width) + 0.5) / width - 0.5
    return np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma ** 2))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays, flattened (nan when either is constant)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (1 = positive).

    The probability that a random positive scores above a random negative, ties counting
    one half. NaN when either class is absent.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)  # ties share their average rank
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def temporal_auroc(weights: np.ndarray, active: np.ndarray) -> dict[str, float]:
    """Active-vs-static separation of per-frame weights `[N, T]` (labels `[N, T]`).

    Returns `per_clip` (mean AUROC over the clips that have both active and static
    frames: does the explanation rank a clip's own frames right?), `pooled` (one AUROC
    over all frames of all clips, which also needs the weights comparable across clips)
    and `clips` (how many clips had both kinds of frame).
    """
    weights = np.asarray(weights, np.float64)
    active = np.asarray(active).astype(bool)
    per_clip = [auroc(w, a) for w, a in zip(weights, active) if a.any() and not a.all()]
    return {
        "per_clip": float(np.mean(per_clip)) if per_clip else float("nan"),
        "pooled": auroc(weights, active),
        "clips": len(per_clip),
    }


def importance_order(scores: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the last axis from most to least important (stable: ties keep their
    order); with `rng`, a random permutation instead (the deletion baseline)."""
    scores = np.asarray(scores)
    if rng is not None:
        return np.stack([rng.permutation(scores.shape[-1])
                         for _ in range(int(np.prod(scores.shape[:-1])))]).reshape(scores.shape)
    return np.argsort(-scores, axis=-1, kind="stable")


def frame_deletion_masks(frame_scores: np.ndarray,
                         rng: np.random.Generator | None = None) -> np.ndarray:
    """Boolean `[T+1, T]`: step k removes the k most important frames of `frame_scores`
    `[T]` (a random order with `rng`). Step 0 removes nothing, step T everything."""
    order = importance_order(frame_scores, rng)
    count = len(order)
    masks = np.zeros((count + 1, count), bool)
    for k in range(1, count + 1):
        masks[k, order[:k]] = True
    return masks


def _cell_index(grid: int, height: int, width: int) -> np.ndarray:
    """`[H, W]` row-major index of the `grid×grid` cell each pixel belongs to."""
    rows = np.minimum(np.arange(height) * grid // height, grid - 1)
    cols = np.minimum(np.arange(width) * grid // width, grid - 1)
    return rows[:, None] * grid + cols[None, :]


def grid_scores(maps: np.ndarray, grid: int, size: tuple[int, int] | int) -> np.ndarray:
    """Mean of each upsampled map `[T, h, w]` over a `grid×grid` partition of the frame →
    `[T, grid·grid]` (row-major cells), the units region deletion removes."""
    height, width = (size, size) if isinstance(size, int) else size
    up = resize(maps, (height, width))
    cells = np.eye(grid * grid)[_cell_index(grid, height, width).reshape(-1)]  # [H·W, G]
    return (up.reshape(len(up), -1) @ cells) / np.maximum(cells.sum(axis=0), 1.0)


def region_deletion_masks(cell_scores: np.ndarray,
                          rng: np.random.Generator | None = None) -> np.ndarray:
    """Boolean `[G+1, T, G]` for cell scores `[T, G]`: step k removes, in every frame, that
    frame's k most important cells (random cells with `rng`)."""
    order = importance_order(cell_scores, rng)  # [T, G]
    frames, cells = order.shape
    masks = np.zeros((cells + 1, frames, cells), bool)
    for k in range(1, cells + 1):
        masks[k, np.arange(frames)[:, None], order[:, :k]] = True
    return masks


def apply_frame_mask(clip: np.ndarray, removed: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """`clip` `[T, H, W, C]` with the frames where `removed` `[T]` is True set to `fill`
    (0 = the dataset's mean colour for an ImageNet-normalised clip). Broadcasts over a
    leading batch of masks: `[S, T]` → `[S, T, H, W, C]`."""
    removed = np.asarray(removed, bool)
    return np.where(removed[..., None, None, None], np.float32(fill), clip).astype(np.float32)


def cell_mask(removed_cells: np.ndarray, grid: int, size: tuple[int, int] | int) -> np.ndarray:
    """Pixel mask `[..., H, W]` of removed cells `[..., grid·grid]` (row-major)."""
    height, width = (size, size) if isinstance(size, int) else size
    return np.asarray(removed_cells, bool)[..., _cell_index(grid, height, width)]


def apply_region_mask(clip: np.ndarray, removed_cells: np.ndarray, grid: int,
                      fill: float = 0.0) -> np.ndarray:
    """`clip` `[T, H, W, C]` with the removed grid cells `[T, grid·grid]` set to `fill`;
    a leading batch of masks `[S, T, grid·grid]` gives `[S, T, H, W, C]`."""
    pixels = cell_mask(removed_cells, grid, clip.shape[1:3])
    return np.where(pixels[..., None], np.float32(fill), clip).astype(np.float32)


def deletion_auc(curve: np.ndarray) -> float:
    """Area under a deletion curve (values at equally spaced fractions 0..1 removed),
    trapezoid rule. Lower = the probability fell faster."""
    curve = np.asarray(curve, np.float64).reshape(-1)
    if len(curve) < 2:
        raise ValueError("a deletion curve needs at least two points")
    return float(((curve[:-1] + curve[1:]) / 2.0).mean())
