"""The evaluation's one error type, so the CLI can turn every user mistake into one line."""


class EvaluationError(ValueError):
    """An input that makes the evaluation impossible; `str()` is one line for the user."""
