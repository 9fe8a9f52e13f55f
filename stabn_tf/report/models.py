"""The models a report shows: a `.keras` checkpoint or an exported `.tflite` / `.xml` file,
each with the runner that explains it and a key of its content (and, for a Keras model run
in bfloat16, of its precision) that names its folder."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable

from stabn_tf.evaluate.inputs import load_checkpoint
from stabn_tf.inference import (
    EXPORTED_MODELS,
    KerasRunner,
    OpenVINORunner,
    Runner,
    open_runner,
    safe_name,
)
from stabn_tf.models.stabn import VideoClassifier


@dataclasses.dataclass
class ReportModel:
    """One model of the report: its runner (attention, or Grad-CAM for a baseline), an
    optional Grad-CAM runner for `--gradcam`, and the folder key of its checkpoint."""

    path: str
    key: str
    label: str
    runner: Runner
    gradcam: Runner | None = None
    keras: VideoClassifier | None = None

    @property
    def precision(self) -> str:
        return self.runner.precision

    @property
    def kind(self) -> str:
        if isinstance(self.runner, OpenVINORunner):
            return "OpenVINO IR"
        if self.keras is None:
            return f"TFLite (LiteRT runtime), {self.precision}"
        kind = "Keras ST-ABN" if self.keras.has_attention else "Keras baseline (Grad-CAM)"
        return f"{kind}, {self.precision}"


def checkpoint_key(path: str | os.PathLike) -> str:
    """`<name>-<12 hex digits of sha256>` of the model file (and, for an exported model, the
    config beside it that names its classes, and an IR's weights): equal content, equal key."""
    path = os.fspath(path)
    digest = hashlib.sha256()
    files = [path]
    if path.endswith(EXPORTED_MODELS):
        files += [os.path.splitext(path)[0] + ".json", os.path.splitext(path)[0] + ".bin"]
    for name in files:
        if not os.path.isfile(name):
            continue
        with open(name, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    stem = safe_name(os.path.splitext(os.path.basename(path))[0])
    return f"{stem}-{digest.hexdigest()[:12]}"


def open_model(path: str, *, gradcam: bool, gradcam_layer: str | None,
               log: Callable[[str], None], precision: str = "auto") -> ReportModel:
    """A `.keras` checkpoint or an exported model as a `ReportModel` (one line if not).

    `precision` (auto, float32, bfloat16) as for `open_runner`; a Keras model's records
    in bfloat16 go to a folder of their own.
    """
    path = os.fspath(path)
    if path.endswith(EXPORTED_MODELS):
        if gradcam:
            log(f"{path}: an exported model has no gradients; no Grad-CAM panel for it")
        return ReportModel(path, checkpoint_key(path), path,
                           open_runner(path, precision=precision))
    model = load_checkpoint(path)
    method = "attention" if model.has_attention else "gradcam"
    runner = KerasRunner(model, method, gradcam_layer, precision=precision)
    cam = (KerasRunner(runner.model, "gradcam", gradcam_layer)
           if gradcam and model.has_attention else None)
    key = checkpoint_key(path) + ("" if runner.precision == "float32"
                                  else f"-{runner.precision}")
    return ReportModel(path, key, path, runner, cam, runner.model)
