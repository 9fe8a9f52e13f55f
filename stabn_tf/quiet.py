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
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


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
    if "tensorflow" in sys.modules or verbose():
        return
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do and hands it a loader that catches its
    start-up lines; steps aside after that one import."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _CaughtLoader(spec.loader)
        return spec


class _CaughtLoader(importlib.abc.Loader):
    """`loader`, its module run inside `caught_stderr()`."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # resources, source, ...: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with caught_stderr():
            self.loader.exec_module(module)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
