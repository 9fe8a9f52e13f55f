"""The code base stays `ruff` clean (configuration in ruff.toml)."""

import importlib.util
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    # Run as a module of the interpreter running the tests: found whether or not the
    # virtual environment is activated (its bin/ need not be on PATH).
    assert importlib.util.find_spec("ruff"), "ruff is not installed: pip install -e '.[test]'"
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
