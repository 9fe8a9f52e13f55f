"""Label files: strict readers whose errors name file and line; the flip table."""

import json

import pytest

from stabn_tf.data import labels as L
from stabn_tf.data.synthetic import CLASSES


def test_read_write_roundtrip(tmp_path):
    path = tmp_path / "labels.txt"
    L.write_labels(path, ["a b", "c"])
    assert L.read_labels(path) == ["a b", "c"]
    path.write_text("x\ny\n\n\n")  # trailing blank lines are fine
    assert L.read_labels(path) == ["x", "y"]


@pytest.mark.parametrize("text,line,words", [
    ("a\n\nb\n", 2, "blank line"),
    ("a\nb\na\n", 3, "duplicate"),
    ("", None, "no classes"),
])
def test_read_labels_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(L.LabelFileError) as err:
        L.read_labels(path)
    assert str(path) in str(err.value) and words in str(err.value)
    assert err.value.line == line
    if line:
        assert f"{path}:{line}" in str(err.value)


def test_ssv2_labels(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"Moving something up": "1", "Moving something down": "0"}))
    assert L.load_ssv2_labels(path) == ["Moving something down", "Moving something up"]


@pytest.mark.parametrize("content,words", [
    ('{"a": "0",\n "b": "1",\n}', "invalid JSON"),
    ('["a", "b"]', "expected a non-empty JSON object"),
    ('{"a": "0", "b": "2"}', "missing [1]"),
    ('{"a": "0", "b": "0"}', "index 0 used by both"),
    ('{"a": "zero"}', "not an integer"),
])
def test_ssv2_label_errors(tmp_path, content, words):
    path = tmp_path / "something-something-v2-labels.json"
    path.write_text(content)
    with pytest.raises(L.LabelFileError) as err:
        L.load_ssv2_labels(path)
    assert str(path) in str(err.value) and words in str(err.value)
    if words == "invalid JSON":
        assert err.value.line == 3


def test_template_to_label():
    assert (L.ssv2_template_to_label("Holding [something] next to [something]")
            == "Holding something next to something")


def test_flip_map_swaps_direction_classes_and_blocks_orphans():
    mapping, flippable = L.flip_class_map(CLASSES)
    name = {c: i for i, c in enumerate(CLASSES)}
    lr = name["Moving something from left to right"]
    rl = name["Moving something from right to left"]
    cw, ccw = name["Rotating something clockwise"], name["Rotating something counterclockwise"]
    assert mapping[lr] == rl and mapping[rl] == lr and mapping[cw] == ccw and mapping[ccw] == cw
    pretend = name["Pretending to move something from left to right"]
    assert not flippable[pretend] and mapping[pretend] == pretend
    up = name["Moving something up"]
    assert flippable[up] and mapping[up] == up
    m2, f2 = L.flip_class_map(["Turning the camera left while filming something",
                               "Turning the camera right while filming something",
                               "Pushing something from left to right"])
    assert m2 == [1, 0, 2] and f2 == [True, True, False]
