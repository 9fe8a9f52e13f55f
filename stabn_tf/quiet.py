"""TensorFlow and LiteRT without their noise: every stabn_tf tool prints only its own lines.

Importing TensorFlow prints C++ lines (absl's "All log messages before
absl::InitializeLog()", oneDNN's notice, CPU-feature hints) that no environment variable
turns off, because they are written before TensorFlow's logging is configured; LiteRT
prints "Created TensorFlow Lite XNNPACK delegate" when an interpreter starts, and the
TFLite converter a dozen MLIR/quantizer lines. `caught_stderr()` points the process's
stderr file descriptor at a temporary file around such a step and prints what was caught
only if the step fails; `import_tensorflow()` imports TensorFlow that way and sets
TensorFlow's Python logger to errors only (its tf.function retracing hints are for
developers, and showed twice: once per handler); `catch_tensorflow_startup()` (run by
`import stabn_tf`) does the same for whichever later import first loads TensorFlow.
`TF_CPP_MIN_LOG_LEVEL=0` turns all of this off (everything shows again); unset, the level
becomes 2 (later C++ errors still show). Nothing happens when TensorFlow is already
imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

from stabn_tf.import_hooks import around_import


def verbose() -> bool:
    """True when the user asked for TensorFlow's own lines (`TF_CPP_MIN_LOG_LEVEL=0`)."""
    return os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2") == "0"


@contextlib.contextmanager
def caught_stderr() -> Iterator[None]:
    """Runs the block with file descriptor 2 caught; shows what was caught only when the
    block raises."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr (e.g. embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules:
        return
    if verbose():
        return
    with caught_stderr():
        import tensorflow  # noqa: F401
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def catch_tensorflow_startup() -> None:
    """Makes the first `import tensorflow` from now on (by any module) behave as
    `import_tensorflow()`: its start-up lines caught, its Python logger set to errors."""
    if not verbose():
        around_import("tensorflow", _quietly)


def _quietly(load) -> None:
    with caught_stderr():
        load()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
