"""One clip of the report for one model: its prediction, pictures and ground-truth scores,
kept as `<stem>.record.json` beside the pictures so a re-run reads it instead of running
the model and drawing again.

The pictures are `render_prediction`'s (Figure 3 PNG; the GIF when asked for); the gallery
thumbnail is the picture part of the GIF's frame with the highest temporal weight
(`figures.overlay_pictures`, the same overlay), without the GIF's text lines, which would
be unreadable or cut off at thumbnail size. `draw_clip` is all the drawing of one clip,
from the model's outputs alone, so drawing processes can share the work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
from PIL import Image

from stabn_tf.disk import atomic_path, write_atomic
from stabn_tf.evaluate.quality import POINTING_TOLERANCE
from stabn_tf.explain import metrics as em
from stabn_tf.explain.figures import SPATIAL_CMAP, overlay_pictures
from stabn_tf.explain.render import render_prediction
from stabn_tf.inference import Clip, Prediction

#: Bumped when a record's content changes meaning, so old records are redrawn.
RECORD_VERSION = 5  # 2: thumbnails without baked-in text; 3: the editor's frames and maps;
# 4: compact pictures (palette PNG, no GIF unless asked for), the maps in the record;
# 5: maps drawn as cells in a chosen colour map (the record names it)
#: Colours of the Figure 3 palette PNG.
PNG_COLOURS = 256
THUMBNAIL_SIZE = 144
#: `<stem>` + this names a clip's gallery thumbnail.
THUMB_SUFFIX = ".thumb.jpg"


def _number(value: float) -> float | None:
    """JSON has no NaN: a score that cannot be computed is null."""
    return None if value is None or math.isnan(value) else round(float(value), 4)


def clip_scores(prediction: Prediction, active: np.ndarray | None) -> dict:
    """This clip's explanation against its ground truth: pointing game and mass in box over
    the active frames with the object visible, and the temporal AUROC (active vs static
    frames); nulls where the data has no ground truth or the clip no such frames."""
    scores = {"pointing_game": None, "mass_in_box": None, "temporal_auroc": None,
              "frames_scored": 0}
    if prediction.spatial is None or prediction.boxes is None or active is None:
        return scores
    active = np.asarray(active, bool)
    size = int(prediction.frames.shape[-2])
    scored = active & em.box_visible(prediction.boxes)
    if scored.any():
        maps, boxes = prediction.spatial[0][scored], prediction.boxes[scored]
        scores["pointing_game"] = _number(em.pointing_game(
            maps, boxes, size, tolerance=POINTING_TOLERANCE).mean())
        scores["mass_in_box"] = _number(em.mass_in_box(maps, boxes, size).mean())
        scores["frames_scored"] = int(scored.sum())
    scores["temporal_auroc"] = _number(em.auroc(prediction.temporal[0], active))
    return scores


def _summary(prediction: Prediction, files: dict[str, str], active) -> dict:
    temporal = (np.asarray(prediction.temporal[0], float) if prediction.temporal is not None
                else np.zeros(0))
    return {"files": {k: os.path.basename(v) for k, v in files.items()},
            "method": prediction.method,
            "temporal": [round(float(v), 4) for v in temporal],
            "mt_spread": round(float(np.ptp(temporal)), 4) if temporal.size else 0.0,
            "scores": clip_scores(prediction, active)}


def write_thumbnail(prediction: Prediction, path: str, colormap: str = SPATIAL_CMAP) -> None:
    """The frame where the temporal weight peaks, Ms overlaid and the true box outlined, as
    a small JPEG: only the picture, no text (the card says the rest in HTML, and the
    gallery's legend the colour scale)."""
    t = int(np.argmax(prediction.temporal[0])) if prediction.temporal[0].size else 0
    boxes = None if prediction.boxes is None else prediction.boxes[t:t + 1]
    picture, = overlay_pictures(prediction.frames[0][t:t + 1], prediction.spatial[0][t:t + 1],
                                display_size=THUMBNAIL_SIZE, boxes=boxes, colormap=colormap)
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    with atomic_path(path) as temporary:  # a cut-off run leaves no half picture behind
        picture.save(temporary, "JPEG", quality=80, optimize=True)


def write_frame_strip(frames: np.ndarray, path: str) -> None:
    """The model's T sampled frames (its centre crop, `uint8 [T, S, S, 3]`) side by side
    as one JPEG `[S, T·S]`: the pictures the clip page's editor draws boxes on."""
    strip = np.concatenate(list(np.asarray(frames, np.uint8)), axis=1)
    with atomic_path(path) as temporary:
        Image.fromarray(strip).save(temporary, "JPEG", quality=90)


def editor_fields(prediction: Prediction, frame_size) -> dict | None:
    """Where the shown frames lie in the source frames (the editor draws on them); None
    without a frame size."""
    if frame_size is None:
        return None
    return {"frame_size": [int(v) for v in frame_size],
            "crop": [round(float(v), 6) for v in prediction.crop],
            "image_size": int(prediction.frames.shape[-2])}


def record_path(folder: str, stem: str) -> str:
    return os.path.join(folder, f"{stem}.record.json")


def load_record(folder: str, stem: str, clip: Clip, *, animation: bool = False,
                gradcam: bool = False, colormap: str = SPATIAL_CMAP) -> dict | None:
    """The clip's saved record when it is complete, describes this very clip (same
    sampled frames and label: a different split with the same clip ids is redrawn) and
    holds the pictures asked for (an animation, a Grad-CAM panel, in `colormap`)."""
    try:
        with open(record_path(folder, stem), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    files = record.get("files", {})
    same = (record.get("version") == RECORD_VERSION
            and record.get("frame_indices") == np.asarray(clip.frame_indices).tolist()
            and record.get("true_label") == clip.true_label
            and record.get("colormap") == colormap
            and (not animation or "animation" in files or "png" not in files)
            and (not gradcam or "gradcam" in record)
            and all(os.path.exists(os.path.join(folder, name)) for name in files.values()))
    return record if same else None


@dataclasses.dataclass
class Drawing:
    """One clip of one model to draw, as a drawing process gets it: the model's outputs
    (not the clip's float frames) and what the record says about the clip."""

    prediction: Prediction
    folder: str
    stem: str
    frame_indices: list
    true_label: int | None
    has_boxes: bool
    active: np.ndarray | None
    frame_size: tuple[int, int] | None
    animation: bool = False
    gradcam: Prediction | None = None
    colormap: str = SPATIAL_CMAP

    @classmethod
    def of(cls, clip: Clip, prediction: Prediction, folder: str, stem: str, *,
           animation: bool = False, gradcam: Prediction | None = None,
           colormap: str = SPATIAL_CMAP) -> Drawing:
        return cls(prediction, folder, stem, np.asarray(clip.frame_indices).tolist(),
                   clip.true_label, clip.boxes is not None, clip.active, clip.frame_size,
                   animation, gradcam, colormap)


def _pictures(prediction: Prediction, folder: str, stem: str, animation: bool,
              colormap: str = SPATIAL_CMAP) -> dict[str, str]:
    """Figure 3 (a palette PNG: a quarter of the bytes, no visible change) and, when asked
    for, the GIF; the renderer's JSON is dropped (the record keeps the numbers)."""
    files = render_prediction(prediction, folder, stem,
                              animation="gif" if animation else "none", colormap=colormap)
    os.remove(files.pop("json"))
    if "png" in files:
        with Image.open(files["png"]) as picture:
            picture.load()
        with atomic_path(files["png"]) as temporary:
            picture.convert("RGB").quantize(PNG_COLOURS, dither=Image.Dither.NONE).save(
                temporary, "PNG", optimize=True)
    return files


def draw_clip(drawing: Drawing) -> dict:
    """Draws one clip (Figure 3, thumbnail, the editor's frames; the GIF and Grad-CAM
    panel when asked for) into its folder and writes the record last, so a record on
    disk means every picture is complete. Runs in a drawing process: same input, same
    bytes, whichever process draws it."""
    prediction, folder, stem = drawing.prediction, drawing.folder, drawing.stem
    files = _pictures(prediction, folder, stem, drawing.animation, drawing.colormap)
    if "png" in files:
        files["thumb"] = os.path.join(folder, stem + THUMB_SUFFIX)
        write_thumbnail(prediction, files["thumb"], drawing.colormap)
    editor = None if prediction.frames is None else editor_fields(prediction,
                                                                  drawing.frame_size)
    if editor is not None:
        files["frames"] = os.path.join(folder, f"{stem}.frames.jpg")
        write_frame_strip(prediction.frames[0], files["frames"])
    top = prediction.top_k(5)
    record = {"version": RECORD_VERSION, "clip": prediction.name, "stem": stem,
              "frame_indices": drawing.frame_indices, "true_label": drawing.true_label,
              "predicted": top[0][0], "confidence": round(top[0][2], 6),
              "top5": [[i, name, round(p, 6)] for i, name, p in top],
              "has_boxes": drawing.has_boxes, "colormap": drawing.colormap,
              **_summary(prediction, files, drawing.active),
              "ms": None if prediction.spatial is None else np.round(
                  np.asarray(prediction.spatial[0], float), 3).tolist()}
    if editor is not None:
        record["editor"] = editor
    if drawing.gradcam is not None:
        cam_files = _pictures(drawing.gradcam, folder, f"{stem}.gradcam", drawing.animation,
                              drawing.colormap)
        record["gradcam"] = _summary(drawing.gradcam, cam_files, drawing.active)
        record["files"].update({f"gradcam_{k}": os.path.basename(v)
                                for k, v in cam_files.items()})
    write_atomic(record_path(folder, stem), json.dumps(record, separators=(",", ":")))
    return record


def spatial_maps(record: dict) -> np.ndarray | None:
    """The clip's spatial maps `[T, h, w]` as the record keeps them (for comparing models)."""
    maps = record.get("ms")
    return None if maps is None else np.asarray(maps, float)
