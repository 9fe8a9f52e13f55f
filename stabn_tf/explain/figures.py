"""Pictures of an explanation: frames, "where" overlaid, "when" as colour bars.

- `attention_figure`: the paper's Figure 3 as a grid (any frame count), optionally with
  ground-truth boxes and a top-k list; `figure_png` renders it.
- `animation_frames` + `write_animation`: the same overlay as an animated GIF or MP4, one
  video frame per clip frame, with its temporal weight as a coloured bar.

Every spatial map is drawn the same way (figures, GIFs, the report's thumbnails and its
editor): on the fixed scale 0..1 (never stretched to the map's own range, so a flat map
looks flat), each of its cells as a square (nearest-neighbour upsampling: a 4×4 map shows
16 cells, not a smooth blob, and the captions say "Ms: 4×4"), in a perceptually uniform
colour map by default (viridis: equal steps in value look like equal steps in colour and
lightness rises with the value, so the map reads the same on any object's colours), over
the frame at partial opacity so the frame stays readable. `colormap="jet"` gives the
paper's rainbow look for side-by-side comparison.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from fractions import Fraction

import av
import matplotlib
import numpy as np
from matplotlib import cm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw, ImageFont

from stabn_tf.data.video import write_video
from stabn_tf.disk import atomic_path
from stabn_tf.explain.glyphs import name_style, pil_font, quiet_glyph_warnings
from stabn_tf.explain.resize import resize

#: Colour maps a spatial map can be drawn in: the perceptually uniform default, and the
#: paper's rainbow (for comparing with its figures).
SPATIAL_COLORMAPS = ("viridis", "jet")
SPATIAL_CMAP = SPATIAL_COLORMAPS[0]
#: Opacity of the map over the frame: the frame stays readable under it.
OVERLAY_ALPHA = 0.5
#: What the spatial scale's ends mean, under its name: the dark end reads "not looked at",
#: not "cold" or "negative".
SCALE_WIDTH = 0.85  # inches per colour scale: bar, ticks and a two-line label
SPATIAL_MEANING = "\n0 = not attended, 1 = attended"
# Temporal weights: red = important, blue = not, as in the paper's figure.
TEMPORAL_CMAP = "coolwarm"


def check_colormap(colormap: str) -> str:
    """`colormap` when it is one of `SPATIAL_COLORMAPS`; ValueError in one line otherwise."""
    if colormap not in SPATIAL_COLORMAPS:
        raise ValueError(f"colour map {colormap!r}: choose from {list(SPATIAL_COLORMAPS)}")
    return colormap


def colormap_stops(colormap: str = SPATIAL_CMAP, count: int = 64) -> list[str]:
    """`count` colours of the map from 0 to 1 as "#rrggbb": the same scale for the
    report's HTML (the editor's overlay, the gallery's legend) as for the pictures."""
    colours = matplotlib.colormaps[check_colormap(colormap)](np.linspace(0.0, 1.0, count))
    return ["#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3]) for rgb in colours]


def grid_size(spatial: np.ndarray) -> str:
    """The spatial map's true resolution as the captions state it, "h×w" (e.g. "4×4")."""
    shape = np.shape(spatial)
    if len(shape) >= 3 and shape[-1] == 1:
        shape = shape[:-1]
    return f"{shape[-2]}×{shape[-1]}"


def overlay_attention(frames: np.ndarray, spatial: np.ndarray, alpha: float = OVERLAY_ALPHA,
                      colormap: str = SPATIAL_CMAP) -> np.ndarray:
    """Blend each frame with its spatial map on the fixed 0..1 scale, each map cell drawn
    as a block of pixels (nearest-neighbour upsampling: the map's resolution stays
    visible).

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
    lookup = matplotlib.colormaps[check_colormap(colormap)]
    # Cell of each pixel row / column: the same cells a nearest-neighbour resize picks.
    rows = np.minimum((np.arange(height) + 0.5) * spatial.shape[1] / height,
                      spatial.shape[1] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * spatial.shape[2] / width,
                      spatial.shape[2] - 1).astype(int)
    colour = lookup(np.clip(spatial, 0.0, 1.0))[..., :3] * 255.0  # [T, h, w, 3]
    colour = colour[:, rows][:, :, cols]
    return np.clip((1 - alpha) * frames + alpha * colour, 0, 255).astype(np.uint8)


def attention_figure(
    frames: np.ndarray,
    spatial: np.ndarray,
    temporal: np.ndarray,
    *,
    title: str | None = None,
    columns: int = 8,
    frame_numbers: Sequence[int] | None = None,
    boxes: np.ndarray | None = None,
    top_k: Sequence[tuple[str, float]] | None = None,
    temporal_label: str = "temporal attention",
    spatial_label: str = "spatial attention Ms",
    colormap: str = SPATIAL_CMAP,
) -> Figure:
    """A grid of frames with the spatial attention overlaid and, under each frame, a bar
    coloured by its temporal weight (value printed). Any frame count works; the last row
    may be partly empty.

    `boxes` `[T, 4]` (normalised ymin, xmin, ymax, xmax; all zeros = none) are drawn as
    white outlines (the ground truth, when known). `top_k` lists (class name, probability)
    pairs printed under the title. Both maps get a labelled colour scale on the right:
    `spatial_label`'s (the overlay, with the map's grid size) and `temporal_label`'s (the
    bars). Each frame's title gives its map's range, so a flat map reads as flat.
    """
    temporal = np.asarray(temporal, np.float32).reshape(-1)
    blended = overlay_attention(frames, spatial, colormap=colormap)
    values = np.asarray(spatial, np.float32).reshape(len(blended), -1)
    count = len(blended)
    if len(temporal) != count:
        raise ValueError(f"{count} frames but {len(temporal)} temporal weights.")
    if boxes is not None and len(boxes) != count:
        raise ValueError(f"{count} frames but {len(boxes)} boxes.")
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    aspect = blended.shape[1] / blended.shape[2]
    title_height = 0.5 + 0.15 * title.count("\n") if title else 0
    header = title_height + (0.16 * len(top_k) + 0.1 if top_k else 0)
    # Figure, not pyplot: no global figure registry, no display backend needed.
    fig = Figure(figsize=(1.6 * columns + 2 * SCALE_WIDTH,
                          (1.6 * aspect + 0.45) * rows + header))
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=[6 * aspect, 1] * rows,
                            hspace=0.15, wspace=0.05)
    bar_colours = matplotlib.colormaps[TEMPORAL_CMAP]
    numbers = list(frame_numbers) if frame_numbers is not None else list(range(count))
    for i in range(count):
        r, c = divmod(i, columns)
        ax = fig.add_subplot(grid[2 * r, c])
        ax.imshow(blended[i])
        ax.set_title(f"frame {numbers[i]} · {values[i].min():.2f}–{values[i].max():.2f}",
                     fontsize=6.5, pad=2)
        ax.axis("off")
        if boxes is not None and _visible(boxes[i]):
            height, width = blended.shape[1:3]
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
            ax.add_patch(Rectangle((xmin * width - 0.5, ymin * height - 0.5),
                                   (xmax - xmin) * width, (ymax - ymin) * height,
                                   fill=False, edgecolor="white", linewidth=1.0,
                                   linestyle="--"))
        bar = fig.add_subplot(grid[2 * r + 1, c])
        value = float(temporal[i])
        bar.add_patch(Rectangle((0, 0), 1, 1, color=bar_colours(value)))
        bar.text(0.5, 0.5, f"{value:.2f}", ha="center", va="center", fontsize=7,
                 color="white" if abs(value - 0.5) > 0.3 else "black")
        bar.set_xlim(0, 1)
        bar.set_ylim(0, 1)
        bar.axis("off")
    if title:
        fig.suptitle(title, fontsize=9, **name_style(title))
    if top_k:
        width = max(len(name) for name, _ in top_k)
        text = "\n".join(f"{i + 1}. {name:<{width}}  {p:.3f}"
                         for i, (name, p) in enumerate(top_k))
        height = fig.get_figheight()
        fig.text(0.5, 1.0 - (title_height or 0.1) / height, text, ha="center", va="top",
                 multialignment="left", fontsize=7,
                 **name_style(text, family="monospace"))
        fig.subplots_adjust(top=1.0 - header / height)
    _colour_scales(fig, [(colormap, f"{spatial_label}: {grid_size(spatial)}"
                          + SPATIAL_MEANING),
                         (TEMPORAL_CMAP, temporal_label)])
    return fig


def _colour_scales(fig: Figure, scales: Sequence[tuple[str, str]]) -> None:
    """A labelled 0..1 colour scale per (colormap, label), side by side right of the
    grid, each spanning its height; the grid shrinks to make room."""
    step = SCALE_WIDTH
    width = fig.get_figwidth()
    right = fig.subplotpars.right
    fig.subplots_adjust(right=right - step * len(scales) / width)
    boxes = [ax.get_position() for ax in fig.axes]
    bottom, top = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    left = max(b.x1 for b in boxes) + 0.1 / width
    for i, (colormap, label) in enumerate(scales):
        ax = fig.add_axes((left + i * step / width, bottom, 0.12 / width, top - bottom))
        bar = fig.colorbar(cm.ScalarMappable(cmap=colormap), cax=ax)
        bar.set_ticks([0, 0.5, 1])
        bar.ax.tick_params(labelsize=7)
        bar.set_label(label, fontsize=7)


def _visible(box) -> bool:
    return float(box[2]) > float(box[0]) and float(box[3]) > float(box[1])


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    with quiet_glyph_warnings():
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _fitting_font(text: str, width: float, size: int, smallest: int = 7):
    """The default font (or, for text it lacks glyphs for, an installed one that has them)
    at `size`, or smaller (not below `smallest`) until `text` fits in `width` pixels: a
    long class name under a 224-pixel animation is shown whole."""
    font = pil_font(text, size, _font(size))
    while size > smallest and font.getlength(text) > width:
        size -= 1
        font = pil_font(text, size, _font(size))
    return font


def _bar_height(picture_height: int) -> int:
    return max(14, picture_height // 8)


def overlay_pictures(frames: np.ndarray, spatial: np.ndarray, *, display_size: int = 224,
                     boxes: np.ndarray | None = None, colormap: str = SPATIAL_CMAP
                     ) -> list[Image.Image]:
    """The frames (short side `display_size`) with the spatial attention overlaid and the
    boxes outlined in white: the picture part of every animation frame and thumbnail,
    no text baked in."""
    frames = np.asarray(frames)
    height, width = frames.shape[1:3]
    scale = display_size / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = resize(frames, (size[1], size[0]))
    line = max(1, _bar_height(size[1]) // 10)
    pictures = []
    for i, image in enumerate(overlay_attention(resized, spatial, colormap=colormap)):
        picture = Image.fromarray(image)
        if boxes is not None and _visible(boxes[i]):
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
            x0, y0 = xmin * size[0], ymin * size[1]
            # A box thinner than a pixel (e.g. cut by the crop) is a one-pixel line.
            ImageDraw.Draw(picture).rectangle(
                [x0, y0, max(x0, xmax * size[0] - 1), max(y0, ymax * size[1] - 1)],
                outline="white", width=line)
        pictures.append(picture)
    return pictures


def animation_frames(
    frames: np.ndarray,
    spatial: np.ndarray,
    temporal: np.ndarray,
    *,
    display_size: int = 224,
    frame_numbers: Sequence[int] | None = None,
    caption: str | None = None,
    boxes: np.ndarray | None = None,
    colormap: str = SPATIAL_CMAP,
    map_name: str = "Ms",
) -> list[Image.Image]:
    """One RGB picture per frame for an animation: the frame (resized so its short side is
    `display_size`) with the spatial attention overlaid, a bar coloured by the frame's
    temporal weight (value and frame number printed), the spatial map's colour scale as a
    labelled strip (its grid size named), and an optional caption line.

    Shapes: frames `[T, H, W, 3]` uint8, spatial `[T, h, w(, 1)]`, temporal `[T]`.
    """
    frames = np.asarray(frames)
    temporal = np.asarray(temporal, np.float32).reshape(-1)
    if len(temporal) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(temporal)} temporal weights.")
    overlays = overlay_pictures(frames, spatial, display_size=display_size, boxes=boxes,
                                colormap=colormap)
    size = overlays[0].size
    bar = _bar_height(size[1])
    font = _font(max(10, bar * 2 // 3))
    bar_colours = matplotlib.colormaps[TEMPORAL_CMAP]
    numbers = list(frame_numbers) if frame_numbers is not None else list(range(len(frames)))
    lines = 2 if caption else 1
    # "x", not "×": the default font has no glyph for it.
    caption_font = _fitting_font(caption or "", size[0] - 4, max(10, bar * 2 // 3))
    scale_strip = _scale_strip(size[0], bar, colormap,
                               f"{map_name} {grid_size(spatial).replace('×', 'x')}")
    pictures = []
    for i, overlay in enumerate(overlays):
        canvas = Image.new("RGB", (size[0], size[1] + bar * (1 + lines)), "white")
        canvas.paste(overlay, (0, 0))
        draw = ImageDraw.Draw(canvas)
        value = float(temporal[i])
        colour = tuple(int(255 * c) for c in bar_colours(value)[:3])
        draw.rectangle([0, size[1], size[0], size[1] + bar], fill=colour)
        ink = "white" if abs(value - 0.5) > 0.3 else "black"
        draw.text((size[0] / 2, size[1] + bar / 2), f"frame {numbers[i]}: when = {value:.2f}",
                  fill=ink, font=font, anchor="mm")
        canvas.paste(scale_strip, (0, size[1] + bar))
        if caption:
            draw.text((size[0] / 2, size[1] + 2.5 * bar), caption, fill="black",
                      font=caption_font, anchor="mm")
        pictures.append(canvas)
    return pictures


def _scale_strip(width: int, height: int, colormap: str, name: str) -> Image.Image:
    """The spatial colour scale as a strip `width` × `height`: 0 (left) to 1 (right), its
    ends and `name` printed in whichever of black or white stands out from the colour
    under each, in a font small enough that the three fit the width."""
    ramp = matplotlib.colormaps[colormap](np.linspace(0.0, 1.0, width))[:, :3]
    strip = Image.fromarray(np.repeat((ramp[None] * 255).astype(np.uint8), height, axis=0))
    draw = ImageDraw.Draw(strip)
    labels = ((2, "lm", "0 not attended"), (width / 2, "mm", name),
              (width - 2, "rm", "1 attended"))
    size = max(6, height * 2 // 3)
    font = _font(size)
    def fits() -> bool:  # the name centred, each end's label beside it with a gap
        ends = max(draw.textlength(labels[0][2], font=font),
                   draw.textlength(labels[2][2], font=font))
        return ends + draw.textlength(name, font=font) / 2 + 2 + size <= width / 2

    while size > 6 and not fits():
        size -= 1
        font = _font(size)
    for x, anchor, text in labels:
        left, _, right, _ = draw.textbbox((x, height / 2), text, font=font, anchor=anchor)
        under = ramp[max(0, int(left)):max(int(left) + 1, min(width, int(right)))]
        # Relative luminance of the colours under the text: dark ones get white ink.
        luminance = float(np.mean(under @ np.array([0.2126, 0.7152, 0.0722])))
        draw.text((x, height / 2), text, font=font, anchor=anchor,
                  fill="black" if luminance > 0.4 else "white")
    return strip


ANIMATION_FORMATS = (".gif", ".mp4")


def write_animation(path: str | os.PathLike, pictures: Sequence[Image.Image],
                    fps: float = 4.0) -> str:
    """Writes equally sized pictures as an animated GIF (looping) or an H.264/MPEG-4 MP4,
    chosen by the file extension; returns the path."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in ANIMATION_FORMATS:
        raise ValueError(f"{path}: animations are written as {ANIMATION_FORMATS}, got {ext!r}.")
    if not pictures:
        raise ValueError("no pictures to animate")
    with atomic_path(path) as staged:
        if ext == ".gif":
            first, *rest = [p.convert("RGB") for p in pictures]
            first.save(staged, format="GIF", save_all=True, append_images=rest,
                       duration=round(1000 / fps), loop=0, optimize=True)
        else:
            _write_mp4(staged, pictures, fps)
    return path


def _write_mp4(path: str, pictures: Sequence[Image.Image], fps: float) -> None:
    # yuv420p needs even sides.
    width, height = (pictures[0].width // 2 * 2, pictures[0].height // 2 * 2)
    write_video(path, [np.asarray(p.convert("RGB"))[:height, :width] for p in pictures],
                Fraction(fps).limit_denominator(1000),
                "libx264" if "libx264" in av.codecs_available else "mpeg4", format="mp4")
