"""Inference: one result type (`Prediction`), one runner interface (`Runner`) that the
Keras, LiteRT and OpenVINO models implement, and the inputs they read (`Clip`).

    runner = open_runner("runs/demo/checkpoints/final.keras")   # or a .tflite / .xml file
    prediction = runner.predict(runner.load("clip.webm"))
    prediction.top_k(5), prediction.spatial, prediction.temporal
"""

from __future__ import annotations

import os

from stabn_tf.inference.inputs import (
    Clip,
    OutputNames,
    input_name,
    is_tfrecord_input,
    load_clip,
    safe_name,
    tfrecord_clips,
)
from stabn_tf.inference.keras_runner import METHODS, KerasRunner, load_checkpoint
from stabn_tf.inference.litert import LiteRTRunner
from stabn_tf.inference.openvino import OpenVINORunner
from stabn_tf.inference.prediction import Prediction, sparkline
from stabn_tf.inference.runner import InferenceError, Runner, iter_inputs, run_inputs
from stabn_tf.precision import check_precision

#: File endings of the exported models `open_runner` reads (TFLite, OpenVINO IR).
EXPORTED_MODELS = (".tflite", ".xml")


def open_runner(path: str | os.PathLike, method: str = "attention",
                gradcam_layer: str | None = None, *, precision: str = "auto") -> Runner:
    """A runner for a `.keras` checkpoint or an exported `.tflite` / OpenVINO `.xml` model.

    `precision` ("auto", "float32", "bfloat16"): what a Keras model computes in
    (`stabn_tf.precision.choose_precision`); a TFLite model computes in its own precision,
    which "auto" takes and any other value must name; an OpenVINO IR's float ops compute in
    float32 or bfloat16 (auto: bfloat16 where the CPU has bf16 units). `runner.precision_choice`
    says what was chosen and why.
    """
    path = os.fspath(path)
    if path.endswith(EXPORTED_MODELS):
        kind = "a TFLite" if path.endswith(".tflite") else "an OpenVINO"
        if method != "attention":
            raise InferenceError(f"{kind} model explains with its own attention maps only")
        if not os.path.isfile(path):
            raise InferenceError(f"{path}: no such model file")
        if path.endswith(".tflite"):
            return LiteRTRunner(path, precision=precision)
        return OpenVINORunner(path, precision=precision)
    check_precision(precision)
    return KerasRunner(load_checkpoint(path), method, gradcam_layer, precision=precision)


__all__ = [
    "EXPORTED_MODELS",
    "METHODS",
    "Clip",
    "InferenceError",
    "KerasRunner",
    "LiteRTRunner",
    "OpenVINORunner",
    "OutputNames",
    "Prediction",
    "Runner",
    "input_name",
    "is_tfrecord_input",
    "iter_inputs",
    "load_checkpoint",
    "load_clip",
    "open_runner",
    "run_inputs",
    "safe_name",
    "sparkline",
    "tfrecord_clips",
]
