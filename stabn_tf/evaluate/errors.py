"""The evaluation's one error type, so the CLI can turn every user mistake into one line."""

from stabn_tf.errors import StabnError


class EvaluationError(ValueError, StabnError):
    """An input that makes the evaluation impossible; `str()` is one line for the user."""
