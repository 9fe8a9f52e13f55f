"""The README's Keras snippet runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # builds and fits a model
def test_keras_snippet_runs():
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
              if "model.fit(clips" in b]
    assert len(blocks) == 1, "README's Keras snippet not found"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert namespace["explained"]["temporal_attention"].shape == (1, 8)
    assert set(namespace["inverted"]) == {"perception", "attention"}
