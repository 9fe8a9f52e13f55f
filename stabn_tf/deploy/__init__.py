"""Deployment of a trained model: a SavedModel for TF Serving (`saved_model`), TFLite
models for phones and boards (`tflite`) and OpenVINO IRs for Intel/AMD servers (`openvino`).

The command-line entry points are `python -m export.saved_model`, `python -m
export.tflite` and `python -m export.openvino` at the repository root; they only parse
flags and call this package. A model carries its class names, clip shape and
preprocessing, so an export needs only the `.keras` file. The data a TFLite or OpenVINO
export reads (the training split calibrates integer
models, the validation split measures parity) comes from flags or, where they leave it
open, from the run that wrote the checkpoint (`RunData`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from stabn_tf.errors import StabnError
from stabn_tf.runs import RunDirectory, RunError

Patterns = str | Sequence[str]


class ExportError(ValueError, StabnError):
    """An export that cannot start or finish; `str()` is one line for the user."""


@dataclasses.dataclass(frozen=True)
class RunData:
    """TFRecord patterns of a checkpoint's training and validation splits: None where
    neither the flags nor its run name one; `problem` then says why the run did not."""

    train: Patterns | None = None
    val: Patterns | None = None
    problem: str = ""

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike, train: Patterns | None = None,
                      val: Patterns | None = None) -> RunData:
        """`train` / `val` as given, the rest from the run that wrote `checkpoint` (the
        synthetic demo set is located, or made, exactly as training did)."""
        if train and val:
            return cls(train, val)
        run = RunDirectory.of_checkpoint(checkpoint)
        if run is None:
            return cls(train or None, val or None,
                       f"no run directory (config.json) around {os.fspath(checkpoint)}")
        try:
            run_train, run_val = run.data_patterns()
        except (RunError, OSError) as e:
            return cls(train or None, val or None, f"its run's data: {e}")
        return cls(train or run_train or None, val or run_val or None)


def describe(pattern: Patterns) -> str:
    """A pattern (or list of them) as one string for messages."""
    return pattern if isinstance(pattern, str) else ",".join(map(os.fspath, pattern))
