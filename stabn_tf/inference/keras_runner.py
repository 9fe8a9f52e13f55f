"""`KerasRunner`: the `Runner` of a Keras `STABN` / `ResNet3D` model."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import tensorflow as tf

from stabn_tf.inference.gradcam import GradCAM
from stabn_tf.inference.runner import InferenceError, Runner
from stabn_tf.models.policy import inference_graph, model_precision, with_precision
from stabn_tf.models.stabn import (
    VideoClassifier,
    archive_damage,
    load_model,
)
from stabn_tf.outputs import (
    ATTENTION,
    PERCEPTION,
    PROBABILITIES,
    SPATIAL_ATTENTION,
    TEMPORAL_ATTENTION,
)
from stabn_tf.precision import PrecisionChoice, choose_precision

METHODS = ("attention", "gradcam")


class KerasRunner(Runner):
    """A Keras `STABN` / `ResNet3D`. `method="gradcam"` explains with a 3D Grad-CAM of
    the predicted class at `gradcam_layer` (a layer or stage name; default res5) instead
    of the attention maps (and works for the baseline). `traced=False` calls the model
    eagerly instead of through a `tf.function` (for callbacks inside a distributed `fit`).

    `precision` ("auto", "float32", "bfloat16"; `stabn_tf.precision`) runs a copy of the
    model built in that precision (`with_precision`, `inference_graph`; probabilities and
    maps stay float32); None runs `model` as it is (a callback's live model).
    `runner.model` is the model that runs, `runner.precision_choice` what it computes in
    and why.
    """

    def __init__(self, model: VideoClassifier, method: str = "attention",
                 gradcam_layer: str | None = None, *, traced: bool = True,
                 precision: str | None = None):
        if not isinstance(model, VideoClassifier):
            raise InferenceError(f"model {getattr(model, 'name', model)!r} is not a stabn_tf "
                                 "model (STABN / ResNet3D)")
        if method not in METHODS:
            raise InferenceError(f"method {method!r}: choose from {METHODS}")
        if method == "attention" and not model.has_attention:
            raise InferenceError(f"{model.name!r} is a baseline without attention: use the "
                                 "gradcam method")
        try:
            self.preprocessor = model.preprocessor
        except ValueError as e:
            raise InferenceError(str(e)) from None
        if precision is None:
            self.precision_choice = PrecisionChoice(model_precision(model), "model",
                                                    "the model as built")
        else:
            self.precision_choice = choose_precision(precision)
            model = with_precision(model, self.precision_choice.precision)
        self.model = model
        self.name = model.name
        self.class_names = list(model.class_names)
        self.has_attention = model.has_attention or method == "gradcam"
        self.method = method
        # precision=None: possibly a live model in training, so its own layers, unfolded
        net = inference_graph(model, fold=precision is not None)
        forward = lambda x: net(x, training=False)  # noqa: E731
        self._forward = tf.function(forward, reduce_retracing=True) if traced else forward
        try:
            self._cam = GradCAM(model, gradcam_layer) if method == "gradcam" else None
        except ValueError as e:
            raise InferenceError(str(e)) from None

    def outputs(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        raw = self._forward(tf.constant(np.asarray(clips, np.float32)))
        out = {PROBABILITIES: tf.nn.softmax(tf.cast(raw[PERCEPTION], tf.float32)).numpy()}
        if ATTENTION in raw:
            out[ATTENTION] = tf.nn.softmax(tf.cast(raw[ATTENTION], tf.float32)).numpy()
        if self._cam is not None:
            cam = self._cam(clips, out[PROBABILITIES].argmax(axis=-1))
            out[SPATIAL_ATTENTION], out[TEMPORAL_ATTENTION] = cam.maps, cam.frame_scores
        elif SPATIAL_ATTENTION in raw:
            out[SPATIAL_ATTENTION] = np.asarray(raw[SPATIAL_ATTENTION], np.float32)[..., 0]
            out[TEMPORAL_ATTENTION] = np.asarray(raw[TEMPORAL_ATTENTION], np.float32)
        return out


def load_checkpoint(path: str | os.PathLike) -> VideoClassifier:
    """A `.keras` model of this project; `InferenceError` with one line naming the file
    when it is missing, not a Keras archive, or not one of our models."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InferenceError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise InferenceError(f"{path}: {archive_damage(path)}")
    try:
        return load_model(path)
    except Exception as e:  # Keras raises many exception types for a bad file
        damage = archive_damage(path)  # checked only now: it reads the whole file
        if damage:
            raise InferenceError(f"{path}: {damage}") from None
        text = str(e).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        if reason.startswith(path):
            raise InferenceError(reason) from None
        raise InferenceError(f"{path}: cannot load as a stabn_tf model ({reason})") from None
