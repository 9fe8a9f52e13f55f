"""Export entry points for a trained ST-ABN checkpoint (DESIGN.md §6).

- `python -m export.saved_model`: a SavedModel for TF Serving, `<dir>/<name>/<version>/`.
- `python -m export.tflite`: a TFLite model (float32, float16, dynamic, int8, int16x8).

Both find what a checkpoint was trained on from its run directory: `runs/<name>/config.json`
next to `runs/<name>/checkpoints/*.keras` names the class list and the TFRecords (the
training split calibrates int8, the validation split measures parity). Flags override it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keras stays unimported until needed: export.client runs without it
    import keras

    from stabn_tf.evaluate import ModelSpec


class ExportError(ValueError):
    """An export cannot start: a missing file, or labels that do not fit the model."""


@dataclasses.dataclass
class RunData:
    """What a checkpoint was trained on. Patterns are None when unknown."""

    labels: list[str]
    train_pattern: str | list[str] | None = None
    val_pattern: str | list[str] | None = None


def load_checkpoint(path: str | os.PathLike) -> keras.Model:
    """A `.keras` checkpoint of `stabn_tf.train`: the library's loader, errors as ExportError."""
    from stabn_tf.evaluate import EvaluationError
    from stabn_tf.evaluate import load_checkpoint as load

    try:
        return load(path)
    except EvaluationError as e:
        raise ExportError(str(e)) from None


def run_data(checkpoint: str | os.PathLike, num_classes: int, *,
             labels: str | None = None, train_pattern: str | Sequence[str] | None = None,
             val_pattern: str | Sequence[str] | None = None) -> RunData:
    """Class names and data of a checkpoint, from its run's `config.json` where the flags
    leave them open (the synthetic demo set is located exactly as training located it).

    Class names: `labels`, else the run's, else `labels.txt` next to the checkpoint; their
    count must match the model. Patterns stay None when neither flags nor run name them.
    """
    from stabn_tf.data import LabelFileError, read_labels
    from stabn_tf.training.trainer import ConfigError, load_run_config, resolve_data

    checkpoint = os.fspath(checkpoint)
    resolved_labels, problem = None, ""
    train_config = load_run_config(checkpoint)
    if train_config is not None and not (labels and train_pattern and val_pattern):
        try:
            train_files, val_files, resolved_labels = resolve_data(train_config)
            train_pattern = train_pattern or train_files
            val_pattern = val_pattern or val_files
        except ConfigError as e:
            problem = f" (the run's config.json points to missing data: {e})"
    try:
        if labels:
            resolved_labels = read_labels(labels)
        elif resolved_labels is None:
            beside = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "labels.txt")
            if not os.path.exists(beside):
                raise ExportError(f"no class names for {checkpoint}{problem}: pass "
                                  "--labels=<labels.txt>")
            resolved_labels = read_labels(beside)
    except (OSError, LabelFileError) as e:
        raise ExportError(str(e)) from None
    if len(resolved_labels) != num_classes:
        raise ExportError(f"{len(resolved_labels)} class names for a model with {num_classes} "
                          "classes: wrong --labels?")
    return RunData(list(resolved_labels), train_pattern, val_pattern)


def model_spec(model: keras.Model) -> ModelSpec:
    """The library's `model_spec` (frames, size, classes, kind), errors as ExportError."""
    from stabn_tf.evaluate import EvaluationError
    from stabn_tf.evaluate import model_spec as spec

    try:
        return spec(model)
    except EvaluationError as e:
        raise ExportError(str(e)) from None
