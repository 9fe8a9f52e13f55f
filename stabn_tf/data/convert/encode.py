"""One video → one record: frames decoded (or read from a frame folder), shrunk, JPEG
encoded, boxes fitted. Runs in the worker processes."""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
from PIL import Image

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import tfrecord, video
from stabn_tf.data.convert.items import EncodeSettings, VideoItem

FRAME_EXTENSIONS = (".jpg", ".jpeg")


def _jpeg(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _frames_from_video(item: VideoItem, settings: EncodeSettings):
    decoded = video.decode_video(item.source, short_side=settings.short_side, threads=1)
    jpegs = [_jpeg(f, settings.jpeg_quality) for f in decoded.frames]
    h, w = decoded.frames.shape[1:3]
    return (jpegs, decoded.fps, (h, w), decoded.source_size,
            (decoded.duration_note, decoded.duration_detail))


def _frames_from_folder(item: VideoItem, settings: EncodeSettings):
    if not os.path.isdir(item.source):
        raise video.VideoReadError(item.source, "frame folder missing")
    names = sorted(n for n in os.listdir(item.source) if n.lower().endswith(FRAME_EXTENSIONS))
    if not names:
        raise video.VideoReadError(item.source, "frame folder has no .jpg frames")
    jpegs, size, source_size = [], None, None
    for name in names:
        path = os.path.join(item.source, name)
        try:
            with open(path, "rb") as f:
                data = f.read()
            img = Image.open(io.BytesIO(data))
            img.load()
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise video.VideoReadError(path, f"unreadable frame ({video.image_reason(e)})"
                                       ) from e
        if source_size is None:
            source_size = (img.height, img.width)
            size = video.scaled_size(img.height, img.width, settings.short_side)
        elif (img.height, img.width) != source_size:
            raise video.frame_size_error(path, (img.height, img.width), names[0], source_size)
        passthrough = (img.format == "JPEG" and img.mode in ("RGB", "L")
                       and (img.height, img.width) == size)
        if passthrough:  # already small enough: keep the original bytes, no re-encoding loss
            jpegs.append(data)
            continue
        img = img.convert("RGB")
        if (img.height, img.width) != size:
            img = img.resize((size[1], size[0]), Image.Resampling.BOX)
        jpegs.append(_jpeg(np.asarray(img), settings.jpeg_quality))
    return jpegs, None, size, source_size, (None, None)


def _fit_boxes(item: VideoItem, num_frames: int, fps: float | None,
               source_size: tuple[int, int] | None
               ) -> tuple[list | None, list | None, list, int]:
    """(per-frame boxes, annotated flags, problems, boxes clipped to the frame) to store
    for one decoded video.

    The file's boxes are fitted to the decoded frames (`boxes.resolve`). On a clip that
    also has a synthetic object box, the frames the file annotates take its boxes and the
    other frames keep the object box, so a person can correct a few frames (unless the
    object box is not to supervise: `item.gt_supervision` False). A file that gives only
    `active_frames` for a video stores no box lists for it.
    """
    if item.boxes is None:
        return None, None, [], 0
    per_frame, annotated, problems, clipped = boxes_lib.resolve(item.boxes, num_frames, fps,
                                                                 source_size)
    gt_boxes = item.gt_box is not None and item.gt_supervision
    if not item.boxes.num_frames and not gt_boxes:
        return None, None, problems, clipped
    if gt_boxes and len(item.gt_box) == num_frames:
        gt = [[(b, boxes_lib.OBJECT)] if b[2] > b[0] and b[3] > b[1] else []
              for b in item.gt_box]
        per_frame = [mine if a else g for mine, a, g in zip(per_frame, annotated, gt)]
        annotated = [1] * num_frames
    return per_frame, annotated, problems, clipped


def convert_item(item: VideoItem, settings: EncodeSettings) -> dict:
    """Decodes and encodes one video. Never raises: failures come back as
    `{"ok": False, "reason": ...}` so one bad file cannot stop a conversion. Problems
    with the video's boxes come back as `box_problems` (dicts, `Problem.to_json`); the
    video is written without the bad boxes. A video the container cannot vouch for
    (shorter than its header, or no duration) is written with what decodes and says so in
    `duration` (`video.SHORTER_THAN_HEADER` / `video.NO_DURATION`)."""
    try:
        if item.kind == "frames":
            jpegs, fps, (h, w), source_size, (note, detail) = _frames_from_folder(item, settings)
        else:
            jpegs, fps, (h, w), source_size, (note, detail) = _frames_from_video(item, settings)
        if (item.gt_active is not None and note is not None
                and len(jpegs) < len(item.gt_active)):
            # Cut short: the frames that decode are the video's first ones, so they keep
            # their own per-frame ground truth.
            item = dataclasses.replace(
                item, gt_active=item.gt_active[:len(jpegs)],
                gt_box=None if item.gt_box is None else item.gt_box[:len(jpegs)])
        if item.gt_active is not None and len(item.gt_active) != len(jpegs):
            raise ValueError(f"ground truth has {len(item.gt_active)} frames, the video "
                             f"{len(jpegs)}")
        boxes, annotated, problems, clipped = _fit_boxes(item, len(jpegs), fps, source_size)
        active = None
        if item.boxes is not None:
            active, active_problems = boxes_lib.resolve_active(item.boxes, len(jpegs), fps)
            problems = problems + active_problems
        data = tfrecord.make_sequence_example(
            item.clip_id, item.label_index, item.label_text, jpegs, frame_rate=fps,
            gt_active=item.gt_active, gt_box=item.gt_box, boxes=boxes,
            box_annotated=annotated, active=active,
            ground_truth_supervision=item.gt_supervision)
        result = {"ok": True, "data": data, "num_frames": len(jpegs), "height": h,
                  "width": w, "fps": fps,
                  "kept_size": min(source_size) <= (settings.short_side or 1 << 30)}
        if note is not None:  # absent otherwise: results of whole videos unchanged
            result["duration"] = note
        if detail is not None:
            result["duration_detail"] = detail
        if item.boxes is not None:  # absent otherwise: results of box-less videos unchanged
            result["box_frames"] = sum(annotated or ())
            result["box_problems"] = [p.to_json() for p in problems]
            result["box_clipped"] = clipped
        return result
    except video.VideoReadError as e:
        return {"ok": False, "reason": e.reason if e.path == item.source else str(e)}
    except Exception as e:  # noqa: BLE001 - any per-video error is recorded, not fatal
        return {"ok": False, "reason": f"{type(e).__name__}: {e}"}


def convert_task(task: tuple[VideoItem, EncodeSettings]) -> dict:
    return convert_item(*task)
