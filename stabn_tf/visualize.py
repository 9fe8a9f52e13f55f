"""Figure-3-style pictures of an explanation: frames, "where" overlaid, "when" as colour bars."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib import cm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

SPATIAL_CMAP = "jet"
# Temporal weights: red = important, blue = not, as in the paper's figure.
TEMPORAL_CMAP = "coolwarm"


def overlay_attention(frames: np.ndarray, spatial: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend each frame with its spatial map, bilinear-resized to the frame.

    Shapes: frames `[T, H, W, 3]` uint8, spatial `[T, h, w]` or `[T, h, w, 1]` in [0, 1]
    -> `[T, H, W, 3]` uint8.
    """
    frames = np.asarray(frames)
    spatial = np.asarray(spatial, np.float32)
    if spatial.ndim == 4:
        spatial = spatial[..., 0]
    if frames.ndim != 4 or spatial.ndim != 3 or len(frames) != len(spatial):
        raise ValueError(f"expected frames [T, H, W, 3] and maps [T, h, w]; got "
                         f"{frames.shape} and {spatial.shape}.")
    height, width = frames.shape[1:3]
    colormap = matplotlib.colormaps[SPATIAL_CMAP]
    out = np.empty_like(frames, dtype=np.uint8)
    for t, (frame, heat) in enumerate(zip(frames, spatial)):
        heat = np.asarray(Image.fromarray(heat, mode="F").resize((width, height),
                                                                 Image.BILINEAR))
        colour = colormap(np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
        out[t] = np.clip((1 - alpha) * frame + alpha * colour, 0, 255).astype(np.uint8)
    return out


def attention_figure(
    frames: np.ndarray,
    spatial: np.ndarray,
    temporal: np.ndarray,
    *,
    title: str | None = None,
    columns: int = 8,
    frame_numbers: Sequence[int] | None = None,
) -> Figure:
    """A grid of frames with the spatial attention overlaid and, under each frame, a bar
    coloured by its temporal weight (value printed). Any frame count works; the last row
    may be partly empty.
    """
    temporal = np.asarray(temporal, np.float32).reshape(-1)
    blended = overlay_attention(frames, spatial)
    count = len(blended)
    if len(temporal) != count:
        raise ValueError(f"{count} frames but {len(temporal)} temporal weights.")
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    aspect = blended.shape[1] / blended.shape[2]
    # Figure, not pyplot: no global figure registry, no display backend needed.
    fig = Figure(figsize=(1.6 * columns, (1.6 * aspect + 0.45) * rows + (0.5 if title else 0)))
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=[6 * aspect, 1] * rows,
                            hspace=0.15, wspace=0.05)
    colormap = matplotlib.colormaps[TEMPORAL_CMAP]
    numbers = list(frame_numbers) if frame_numbers is not None else list(range(count))
    for i in range(count):
        r, c = divmod(i, columns)
        ax = fig.add_subplot(grid[2 * r, c])
        ax.imshow(blended[i])
        ax.set_title(f"frame {numbers[i]}", fontsize=7, pad=2)
        ax.axis("off")
        bar = fig.add_subplot(grid[2 * r + 1, c])
        value = float(temporal[i])
        bar.add_patch(Rectangle((0, 0), 1, 1, color=colormap(value)))
        bar.text(0.5, 0.5, f"{value:.2f}", ha="center", va="center", fontsize=7,
                 color="white" if abs(value - 0.5) > 0.3 else "black")
        bar.set_xlim(0, 1)
        bar.set_ylim(0, 1)
        bar.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.colorbar(cm.ScalarMappable(cmap=TEMPORAL_CMAP), ax=fig.axes, fraction=0.015, pad=0.01,
                 label="temporal attention")
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
