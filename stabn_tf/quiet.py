"""TensorFlow without its start-up noise.

Importing TensorFlow prints C++ lines (absl's "All log messages before
absl::InitializeLog()", oneDNN's notice, CPU-feature hints) that no environment variable
turns off, because they are written before TensorFlow's logging is configured. Every
stabn_tf tool would open with them. `import_tensorflow()` imports TensorFlow with the
process's stderr file descriptor pointed at a temporary file, and prints what was caught
only if the import fails. `TF_CPP_MIN_LOG_LEVEL=0` turns this off (everything shows again);
unset, the level becomes 2 (later C++ errors still show). Nothing happens when TensorFlow
is already imported.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules:
        return
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2") == "0":
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr (e.g. embedded interpreters)
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
