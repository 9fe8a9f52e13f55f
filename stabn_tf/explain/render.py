"""The one renderer of a `Prediction`: Figure 3 (PNG), an animated overlay (GIF or MP4) and
the numbers (JSON). The explain and predict CLIs, evaluation figures and the TensorBoard
images all draw through here."""

from __future__ import annotations

import json
import os

from absl import flags
from matplotlib.figure import Figure

from stabn_tf.disk import write_atomic
from stabn_tf.explain import figures
from stabn_tf.explain.glyphs import check_names
from stabn_tf.inference.prediction import Prediction

ANIMATIONS = ("gif", "mp4", "none")


def define_colormap_flag() -> None:
    """`--colormap` of the commands that draw spatial maps (explain, predict, report)."""
    flags.DEFINE_enum("colormap", figures.SPATIAL_CMAP, figures.SPATIAL_COLORMAPS,
                      "Colour map of the spatial maps: viridis (perceptually uniform, the "
                      "default) or jet (the paper's look, for side-by-side comparison).")


def prediction_figure(prediction: Prediction, *, clip: int = 0, columns: int = 8,
                      top_k: int = 5, colormap: str = figures.SPATIAL_CMAP) -> Figure:
    """Figure 3 for one clip of a prediction: frames with the spatial map overlaid, the
    temporal weights as coloured bars, ground-truth boxes where known, the top-k; the
    title says which part of the source frame the pictures show."""
    if prediction.temporal is None or prediction.frames is None:
        raise ValueError(f"{prediction.name}: no explanation or frames to draw")
    caption = prediction.view_caption()
    check_names([*prediction.class_names, prediction.name])
    return figures.attention_figure(
        prediction.frames[clip], prediction.spatial[clip], prediction.temporal[clip],
        title=prediction.title() + (f"\n{caption}" if caption else ""), columns=columns,
        frame_numbers=[int(n) for n in prediction.frame_indices[clip]],
        boxes=prediction.boxes if clip == 0 else None,
        top_k=[(n, p) for _, n, p in prediction.top_k(top_k)],
        temporal_label=prediction.explanation_label, spatial_label=prediction.spatial_label,
        colormap=colormap)


def render_prediction(prediction: Prediction, output_dir: str, stem: str, *,
                      columns: int = 8, animation: str = "gif", fps: float = 4.0,
                      dpi: int = 100, display_size: int = 224, top_k: int = 5,
                      colormap: str = figures.SPATIAL_CMAP) -> dict[str, str]:
    """Writes `<stem>.json` and, when the prediction has an explanation, `<stem>.png` and
    `<stem>.gif|mp4` into `output_dir`; returns {"json", "png", "animation"} → paths.

    The JSON is written last, so a JSON file means its pictures are complete. `colormap`
    is the spatial map's (`figures.SPATIAL_COLORMAPS`).
    """
    figures.check_colormap(colormap)
    if animation not in ANIMATIONS:
        raise ValueError(f"animation {animation!r}: choose from {ANIMATIONS}")
    if not fps > 0:
        raise ValueError(f"animation frame rate must be > 0, got {fps}")
    base = os.path.join(output_dir, stem)
    paths = {}
    if prediction.temporal is not None and prediction.frames is not None:
        fig = prediction_figure(prediction, columns=columns, top_k=top_k, colormap=colormap)
        paths["png"] = base + ".png"
        write_atomic(paths["png"], figures.figure_png(fig, dpi=dpi))
        if animation != "none":
            _, name, p = prediction.top_k(1)[0]
            pictures = figures.animation_frames(
                prediction.frames[0], prediction.spatial[0], prediction.temporal[0],
                display_size=display_size,
                frame_numbers=[int(n) for n in prediction.frame_indices[0]],
                caption=f"{name} ({p:.2f})", boxes=prediction.boxes, colormap=colormap,
                map_name="Ms" if prediction.method == "attention" else "Grad-CAM")
            paths["animation"] = figures.write_animation(f"{base}.{animation}", pictures, fps)
    paths["json"] = base + ".json"
    write_atomic(paths["json"], json.dumps(prediction.to_json(top_k), indent=1))
    return paths
