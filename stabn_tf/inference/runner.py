"""One way to predict: a `Runner` turns `Clip`s into `Prediction`s, whatever runs the model.

`KerasRunner` (`keras_runner`) runs a `.keras` model; `LiteRTRunner` (`litert`) an exported
TFLite model. Both take their classes, clip shape and preprocessing from the model itself.
`run_inputs` feeds a runner video files, frame folders and TFRecord shards, collecting
unreadable inputs as one-line errors instead of stopping.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.data.video import VideoReadError
from stabn_tf.disk import write_atomic
from stabn_tf.errors import StabnError
from stabn_tf.inference.inputs import Clip, is_tfrecord_input, load_clip, tfrecord_clips
from stabn_tf.inference.prediction import Prediction
from stabn_tf.outputs import ATTENTION, PROBABILITIES, SPATIAL_ATTENTION, TEMPORAL_ATTENTION
from stabn_tf.precision import PrecisionChoice


class InferenceError(ValueError, StabnError):
    """A model or an input that cannot be used; `str()` is one line for the user."""


def config_path(model_path: str | os.PathLike) -> str:
    """Where an exported model's config lies: `model.tflite` → `model.json`."""
    return os.path.splitext(os.fspath(model_path))[0] + ".json"


def write_export_config(model_path: str, model: keras.Model, format: str,
                        **conversion) -> None:
    """Writes the config an export carries beside `model_path` (`config_path`): the
    model's own config (class names, clip shape and preprocessor, architecture), the
    export's `format` and how it was converted (`conversion`, e.g. `quantize`)."""
    config = {**model.get_config(), "format": format, **conversion}
    write_atomic(config_path(model_path), json.dumps(config, indent=1))


def read_export_config(model_path: str, format: str, not_ours: str,
                       lists: Sequence[str] = ()) -> dict:
    """The config `write_export_config` wrote beside `model_path`; InferenceError when it
    is unreadable, or (with `not_ours` as the reason) not one of a `format` export, or
    one whose `lists` fields are not lists."""
    path = config_path(model_path)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise InferenceError(f"{path}: unreadable ({e})") from None
    if not isinstance(config, dict) or config.get("format") != format \
            or not all(isinstance(config.get(key), list) for key in lists):
        raise InferenceError(f"{path}: {not_ours}")
    return config


def exported_preprocessor(config: dict, num_frames: int, image_size: int,
                          where: str) -> ClipPreprocessor:
    """The `ClipPreprocessor` an exported model's config holds (`where` names the config),
    checked against the `num_frames` × `image_size`² clips its input takes. Exports from
    before configs held one get the one that shape gives: what they were always fed."""
    saved = config.get("preprocessor")
    if saved is None:
        return ClipPreprocessor(num_frames, image_size)
    try:
        preprocessor = keras.saving.deserialize_keras_object(saved) \
            if isinstance(saved, dict) else saved
    except (TypeError, ValueError, KeyError) as e:
        raise InferenceError(f"{where}: its preprocessor is unreadable ({e})") from None
    if not isinstance(preprocessor, ClipPreprocessor):
        raise InferenceError(f"{where}: its preprocessor is not a ClipPreprocessor "
                             f"({type(preprocessor).__name__})")
    if (preprocessor.num_frames, preprocessor.image_size) != (num_frames, image_size):
        raise InferenceError(
            f"{where} has a preprocessor for {preprocessor.num_frames} frames of "
            f"{preprocessor.image_size}, the model takes {num_frames} frames of "
            f"{image_size}: not the config it was exported with")
    return preprocessor


class Runner:
    """The interface every model front end implements.

    Subclasses set `name`, `class_names`, `preprocessor` and `has_attention`, and implement
    `outputs`: normalised clips `[B, T, S, S, 3]` → `{"probabilities": [B, K]}` plus, where
    the model explains itself, `"spatial_attention" [B, T, h, w]` and
    `"temporal_attention" [B, T]` (and optionally the attention branch's `"attention"`
    probabilities `[B, K]`). `precision_choice` says what the model computes in and why
    (`precision`: "float32", "bfloat16", or a TFLite model's own, e.g. "int8").
    """

    name: str
    class_names: list[str]
    preprocessor: ClipPreprocessor
    has_attention: bool
    method = "attention"
    precision_choice = PrecisionChoice("float32", "float32", "the model's own")

    @property
    def precision(self) -> str:
        return self.precision_choice.precision

    def outputs(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def batched(self, clips: np.ndarray) -> np.ndarray:
        """`[T, S, S, 3]` or `[B, T, S, S, 3]` clips as a batch; InferenceError unless
        they are the clips this model takes (`preprocessor`)."""
        batch = clips[None] if clips.ndim == 4 else clips
        size = self.preprocessor.image_size
        expected = (self.preprocessor.num_frames, size, size, 3)
        if batch.ndim != 5 or batch.shape[1:] != expected:
            raise InferenceError(f"expected clips [T, H, W, 3] or [B, T, H, W, 3] with "
                                 f"(T, H, W) = {expected[:3]}; got {clips.shape}")
        return batch

    def predict(self, clip: Clip) -> Prediction:
        """One input's prediction: each of its clips run, their softmax averaged."""
        out = self.outputs(clip.clips)
        per_clip = out[PROBABILITIES]
        attention = out.get(ATTENTION)
        return Prediction(
            name=clip.name, class_names=self.class_names, probabilities=per_clip.mean(axis=0),
            per_clip=per_clip, frame_indices=np.asarray(clip.frame_indices),
            spatial=out.get(SPATIAL_ATTENTION), temporal=out.get(TEMPORAL_ATTENTION),
            attention_probabilities=None if attention is None else attention.mean(axis=0),
            frames=clip.frames, true_label=clip.true_label, boxes=clip.boxes,
            method=self.method, source=clip.source, precision=self.precision,
            frame_size=clip.frame_size, note=clip.note,
            crop=None if clip.frame_size is None else
            self.preprocessor.crop_in_frame(*clip.frame_size))

    def load(self, path: str | os.PathLike, num_clips: int = 1) -> Clip:
        """A video file or frame folder, prepared for this model."""
        return load_clip(path, self.preprocessor, num_clips)


def iter_inputs(runner: Runner, inputs: Sequence[str], *, num_clips: int = 1,
                max_clips: int | None = 4, clip_ids: Sequence[str] = (),
                on_error: Callable[[str, str], None]) -> Iterator[Clip]:
    """The clips of video files, frame folders and TFRecord patterns; an unreadable input
    is reported through `on_error(path, message)` and skipped."""
    for path in inputs:
        path = os.fspath(path)
        if not is_tfrecord_input(path):
            try:
                yield runner.load(path, num_clips)
            except (VideoReadError, OSError) as e:
                on_error(path, str(e) if isinstance(e, VideoReadError) else f"{path}: {e}")
            continue
        try:
            clips = list(tfrecord_clips(path, runner.preprocessor, max_clips=max_clips,
                                        clip_ids=clip_ids, num_clips=num_clips))
        except FileNotFoundError as e:
            on_error(path, str(e))
            continue
        except tf.errors.OpError as e:  # a corrupt shard
            on_error(path, f"{path}: cannot read TFRecords ({type(e).__name__}: "
                           f"{(e.message or '').splitlines()[0]})")
            continue
        missing = set(clip_ids) - {c.name for c in clips}
        if clip_ids and missing:
            on_error(path, f"{path}: clip id(s) not found: {sorted(missing)}")
        yield from clips


def run_inputs(runner: Runner, inputs: Sequence[str], *, num_clips: int = 1,
               max_clips: int | None = 4, clip_ids: Sequence[str] = (),
               on_result: Callable[[Prediction], None] | None = None,
               on_error: Callable[[str, str], None] | None = None,
               ) -> tuple[list[Prediction], list[dict]]:
    """Predicts every input; returns (predictions, errors as `{"path", "error"}`)."""
    predictions, errors = [], []

    def fail(path: str, message: str) -> None:
        errors.append({"path": path, "error": message})
        if on_error:
            on_error(path, message)

    for clip in iter_inputs(runner, inputs, num_clips=num_clips, max_clips=max_clips,
                            clip_ids=clip_ids, on_error=fail):
        prediction = runner.predict(clip)
        predictions.append(prediction)
        if on_result:
            on_result(prediction)
    return predictions, errors
