"""What an evaluation reads: a checkpoint (the model says what clips it takes and what its
classes are) and the TFRecord shards, by default the validation split of the checkpoint's
training run."""

from __future__ import annotations

import os
from collections.abc import Sequence

from stabn_tf.data import list_files
from stabn_tf.evaluate.errors import EvaluationError
from stabn_tf.inference import load_checkpoint as load_inference_checkpoint
from stabn_tf.models.stabn import VideoClassifier
from stabn_tf.runs import RunDirectory, RunError


def load_checkpoint(path: str | os.PathLike) -> VideoClassifier:
    """A `.keras` ST-ABN or baseline model (without its optimizer), ready for evaluation.

    Raises `EvaluationError` with one line naming the file when it is missing, not one of
    our models, or takes clips evaluation cannot make (non-square frames).
    """
    model = load_inference_checkpoint(path)
    try:
        _ = model.preprocessor  # raises for non-square models, which have none
    except ValueError as e:
        raise EvaluationError(f"{os.fspath(path)}: {e}") from None
    return model


def validation_files(checkpoint: str | os.PathLike) -> str:
    """The validation shards of the run that wrote `checkpoint` (its `config.json`:
    `val_files`, or the built-in synthetic set's cache, regenerated when missing)."""
    run = RunDirectory.of_checkpoint(checkpoint)
    if run is None:
        raise EvaluationError(f"no --files given and no run config (config.json) next to "
                              f"{os.fspath(checkpoint)}: pass --files")
    try:
        val_pattern = run.data_patterns()[1]
    except RunError as e:
        message = f"no --files given and the run's config is unusable ({e})"
        raise EvaluationError(message) from None
    if not val_pattern:
        raise EvaluationError(f"no --files given and {run.file(run.CONFIG)} names no "
                              "validation files: pass --files")
    return val_pattern


def check_files(files: str | Sequence[str]) -> None:
    """One line when a pattern matches no shard (before any model runs)."""
    try:
        list_files(files)
    except FileNotFoundError as e:
        raise EvaluationError(str(e)) from None
