"""Box files read one video at a time (`json_stream`, `load_box_files`): the same values,
problems and resume keys as reading whole files, a bounded buffer, one line for a file
that is cut short or not an object."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import json_stream
from stabn_tf.data.convert import items, shards
from stabn_tf.data.convert.encode import EncodeSettings
from stabn_tf.data.convert.listing import attach_boxes


def _write(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def _stream(path, chunk_chars) -> tuple[str, object]:
    try:
        return "ok", list(json_stream.iter_object(str(path), chunk_chars))
    except json_stream.NotAnObject as e:
        return "not an object", e.type_name
    except ValueError as e:
        return "error", str(e)


def _whole(text: str) -> tuple[str, object]:
    try:
        value = json.loads(text)
    except ValueError as e:
        return "error", str(e)
    if not isinstance(value, dict):
        return "not an object", type(value).__name__
    return "ok", list(value.items())


DOCUMENTS = [
    '{}', ' {\n } ', '{"a": 1}', '{"a": [1, 2.5, NaN, Infinity, -Infinity], "b": {"x": "é"}}\n',
    '{"n": 12345678901234567890123, "m": -0.0, "e": 1e400, "s": "\\ud800"}',
    '{"é": "ü\\u00e9", "long": "' + "x" * 3000 + '"}', '[1, 2]', '"s"', '3', '3.5', 'NaN',
    'true', '', '   ', '{"a": 1} x', '{"a" 1}', '{"a": 1 "b": 2}', '{\n"a": 1,\n"b": [1,\n 2,]}',
    '\ufeff{}', '{"a": [{"b": 1}], "c": {"d": 2}, "e": [{"f": 3}]}',
]


@pytest.mark.parametrize("chunk_chars", [1, 3, 64, json_stream.CHUNK_CHARS])
def test_entries_values_and_errors_are_json_loads_ones(tmp_path, chunk_chars):
    """Whatever the buffer's size: the same entries, or json.load's message (positions
    counted in the whole file), or the same "not an object" type."""
    path = tmp_path / "doc.json"
    for text in DOCUMENTS:
        path.write_text(text, encoding="utf-8")
        want, got = _whole(text), _stream(path, chunk_chars)
        if want[0] == "ok":  # NaN != NaN: compare as text
            assert got[0] == "ok" and repr(got[1]) == repr(want[1]), text
        else:
            assert got == want, text


@pytest.mark.parametrize("with_orjson", [True, False])
def test_random_files_and_every_cut(tmp_path, monkeypatch, with_orjson):
    """Random Something-Else-like and simple-format files read as json.load reads them
    (with orjson or the standard decoder alone); every cut of them is an error."""
    if not with_orjson:
        monkeypatch.setattr(json_stream, "orjson", None)
    rng = random.Random(0)
    path = tmp_path / "doc.json"
    for trial in range(60):
        def number():
            return rng.choice([rng.uniform(-1e3, 1e3), rng.randint(0, 10 ** rng.randint(0, 25)),
                               rng.uniform(0, 1) * 10.0 ** rng.randint(-8, 8)])

        if trial % 2:
            doc = {str(k): [{"name": f"{k}/{f:04d}.jpg", "labels": [
                {"box2d": {c: number() for c in ("x1", "y1", "x2", "y2")},
                 "standard_category": rng.choice(["hand", "0000"])}]}
                for f in range(rng.randint(0, 4))] for k in range(rng.randint(0, 8))}
        else:
            doc = {str(k): {"frames": {str(f): [[number() for _ in range(4)]]
                                       for f in range(rng.randint(0, 3))},
                            "active_frames": [[1, 2]]} for k in range(rng.randint(0, 8))}
        text = json.dumps(doc, indent=rng.choice([None, 1]))
        path.write_text(text)
        chunk = rng.choice([1, 7, 50, 4096])
        assert repr(_stream(path, chunk)) == repr(_whole(text))
        for cut in sorted({rng.randint(1, len(text) - 1) for _ in range(5)} if len(text) > 2
                          else ()):
            path.write_text(text[:cut])
            assert _stream(path, chunk)[0] == "error", text[:cut]


def test_a_file_that_changes_layout_and_numbers_with_long_digit_runs(tmp_path):
    """Entries are found by their compact layout (`json.dump`'s separators) until the file
    turns to another; a long run of digits reads as `json.load` reads it, whether an
    integer part (an int beyond 64 bits) or a fraction."""
    def video(k, value):
        return [{"name": f"{k}/0001.jpg", "labels": [{"box2d": {
            "x1": value, "y1": 0.5, "x2": 3.0, "y2": 4.0}, "standard_category": "hand"}]}]

    values = [0.0012345678901234567, 12345678901234567890123, 1234567890123456789.5, 7.25]
    def compact(first):
        return ", ".join(f'"{k}": {json.dumps(video(k, v))}'
                         for k, v in enumerate(values, first))

    spaced = ",\n".join(f' "{k}" :\n{json.dumps(video(k, v), indent=2)}'
                         for k, v in enumerate(values, 10))
    text = "{" + compact(0) + ",\n" + spaced + ", " + compact(20) + "}"
    path = tmp_path / "mixed.json"
    path.write_text(text)
    for chunk in (64, 4096, json_stream.CHUNK_CHARS):
        assert repr(_stream(path, chunk)) == repr(_whole(text))


def test_a_value_far_larger_than_the_buffer_is_read_whole(tmp_path):
    frames = [{"name": f"v/{f + 1:04d}.jpg", "labels": [{"box2d": {
        "x1": 1.0 + f / 7, "y1": 2.5, "x2": 30.0, "y2": 40.0}, "standard_category": "hand"}]}
        for f in range(20000)]  # ~2.4 MB: two chunks of the default buffer
    other_video = [{"name": "w/0001.jpg", "labels": []}]
    path = _write(tmp_path / "big.json", {"v": frames, "w": other_video})
    (key, value), (other, _) = json_stream.iter_object(path, chunk_chars=4096)
    assert key == "v" and value == frames and other == "w"
    table, problems = boxes_lib.load_box_files(path)
    assert problems == [] and table["v"].num_frames == 20000
    assert table["v"].coords.dtype == np.float64 and table["v"].coords.shape == (20000, 4)


def test_a_file_cut_short_is_one_line_naming_it(tmp_path):
    data = {"1": [{"name": "1/0001.jpg", "labels": []}], "2": [{"name": "2/0001.jpg",
                                                                "labels": []}]}
    text = json.dumps(data)
    path = tmp_path / "part3.json"
    path.write_text(text[:-20])
    with pytest.raises(ValueError) as caught:
        boxes_lib.load_box_files(str(path))
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"box file {path}: cannot read it as JSON")
    assert "ends in the middle" in line and "after 1 complete entries, the last '1'" in line
    assert "cut short" in line
    with pytest.raises(ValueError, match="expected a JSON object keyed by video id, got list"):
        boxes_lib.load_box_files(_write(tmp_path / "list.json", [1, 2]))
    with pytest.raises(ValueError, match="cannot read it as JSON .*No such file"):
        boxes_lib.load_box_files(str(tmp_path / "missing.json"))
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(ValueError, match="can't decode byte 0xe9 in position 7: invalid "
                                         "continuation byte"):
        boxes_lib.load_box_files(str(tmp_path / "latin1.json"))


def test_the_converter_refuses_a_cut_part_before_writing(tmp_path):
    listing = items.Listing(["x"], {"train": [items.VideoItem("train", "1", 0, "x", "1.webm")]},
                            {"train": []})
    path = tmp_path / "part2.json"
    path.write_text('{"1": [{"name": "1/0001.jpg", "labels": [{"box2d": {"x1": 1')
    with pytest.raises(items.UsageError, match="part2.json: cannot read it as JSON .*cut"):
        attach_boxes(listing, [str(path)], "both")


def test_a_list_after_simple_entries_makes_the_file_something_elses(tmp_path):
    """As when the whole file was looked at first: any list entry → Something-Else's."""
    data = {"a": {"frames": {"0": [[0, 0, 1, 1]]}},
            "b": [{"name": "b/0001.jpg", "labels": [{"box2d": {"x1": 1, "y1": 2, "x2": 3,
                                                               "y2": 4}}]}]}
    table, problems = boxes_lib.load_box_files(_write(tmp_path / "mixed.json", data))
    assert list(table) == ["b"] and table["b"].pixels and table["b"].first_frame == 1
    assert problems == ["mixed.json: video a: expected a list of frames, got dict"]


def test_only_known_videos_are_kept_and_the_others_reported_as_before(tmp_path):
    one = _write(tmp_path / "one.json", {
        "k": {"frames": {"0": [[0, 0, 1, 1]]}}, "z": {"frames": {"0": [[0, 0, 1, 1]]}},
        "u": {"frames": {"1": [[0, 0, 1, 1]], "x": []}}})
    two = _write(tmp_path / "two.json", {"u": {"frames": {"0": []}}, "a": {"frames": {}},
                                         "k": {"frames": {"2": []}}})
    everything, all_problems = boxes_lib.load_box_files([one, two])
    table, problems = boxes_lib.load_box_files([one, two], known=["k", "missing"])
    assert list(table) == ["k"] and table["k"] == everything["k"]
    assert problems == all_problems + boxes_lib.unknown_ids(everything, ["k", "missing"])
    assert problems[-2:] == ["one.json: video u: no such video in the converted splits",
                             "one.json: video z: no such video in the converted splits"]
    assert "two.json: video u: boxes already given in one.json; keeping those" in problems


def test_an_id_twice_in_one_file_keeps_the_first(tmp_path):
    path = tmp_path / "twice.json"
    path.write_text('{"v": {"frames": {"0": [[0, 0, 1, 1]]}}, '
                    '"v": {"frames": {"1": [[0, 0, 0.5, 0.5]]}}}')
    table, problems = boxes_lib.load_box_files(str(path))
    assert table["v"].frames == ((0, (boxes_lib.Box(0.0, 0.0, 1.0, 1.0),)),)
    assert problems == ["twice.json: video v: listed twice in this file; keeping the first"]


def test_boxes_are_arrays_and_round_trip(tmp_path):
    data = {"7": [{"name": "7/0003.jpg", "labels": []},
                  {"name": "7/0001.jpg", "labels": [
                      {"box2d": {"x1": 1.5, "y1": 2, "x2": 30.25, "y2": 40.1},
                       "standard_category": "hand"},
                      {"box2d": {"x1": 0.1, "y1": 0.2, "x2": 10.333333333333334, "y2": 20},
                       "category": "0000"}]}]}
    v = boxes_lib.load_box_files(_write(tmp_path / "se.json", data))[0]["7"]
    assert v.numbers.tolist() == [1, 3] and v.ends.tolist() == [2, 2]
    assert v.coords.tolist() == [[2.0, 1.5, 40.1, 30.25], [0.2, 0.1, 20.0, 10.333333333333334]]
    assert [boxes_lib.ROLES[r] for r in v.roles] == ["hand", "object"]
    assert v.frames == ((1, (boxes_lib.Box(2.0, 1.5, 40.1, 30.25, "hand"),
                             boxes_lib.Box(0.2, 0.1, 20.0, 10.333333333333334, "object"))),
                        (3, ()))
    import pickle

    assert pickle.loads(pickle.dumps(v)) == v


#: Resume keys of these boxes computed before boxes were stored as arrays (the branch's
#: parent, main at b25f4c1): the same boxes must give the same keys, so a conversion
#: made before resumes without converting anything again.
KEYS_BEFORE = {
    ("both", "7"): "ae89ea03b43f5777368eaee438dc86ad943b4fe41511fbfd79d515bdaf7359be",
    ("both", "s"): "cda099095534631b05e9e35996ca43c10dad647997c26f1560980b4ae9a17003",
    ("both", "t"): "c7faf02f3b6c7c07276540dd475de45c1797449eca92607636956b3bd692a939",
    ("hands", "7"): "6074fe5fcb767843ce0fab9585857553f04b55a97a6e52f3ca1675d5741ac8b2",
    ("hands", "s"): "fe000ee170cb00e0ac2285623285af2f734a2532534a8bb05675242ea3b874a6",
    ("hands", "t"): "43c09049859251036d1f5ca8eb24e5434f653d6695043110d806102acb7cd6a6",
}


def test_resume_keys_are_the_ones_from_before_boxes_were_arrays(tmp_path):
    se = {"7": [{"name": "7/0001.jpg", "labels": [
        {"box2d": {"x1": 1.5, "y1": 2, "x2": 30.25, "y2": 40.125}, "standard_category": "hand"},
        {"box2d": {"x1": 0.1, "y1": 0.2, "x2": 10.333333333333334, "y2": 20},
         "category": "0000"}]},
        {"name": "7/0003.jpg", "labels": []},
        {"name": "7/0002.jpg", "labels": [{"box2d": {"x1": 5, "y1": 6, "x2": 7, "y2": 8},
                                           "standard_category": "0001"}]}]}
    simple = {"s": {"frame_size": [48, 64], "frame_rate": 24, "frames": {
        "2": [[1, 2, 3, 4.5], {"box": [0.5, 0.25, 30, 40], "role": "hand"}], "0": []},
        "active_frames": [[1, 3], 7]}, "t": {"frames": {"1": [[0.1, 0.2, 0.3, 0.4]]}}}
    files = [_write(tmp_path / "se.json", se), _write(tmp_path / "mine.json", simple)]
    for categories in ("both", "hands"):
        table, _ = boxes_lib.load_box_files(files, categories)
        for clip_id in ("7", "s", "t"):
            item = items.VideoItem("train", clip_id, 0, "x", f"{clip_id}.webm",
                                   boxes=table[clip_id])
            assert shards.input_key(item, EncodeSettings(), "content") == \
                KEYS_BEFORE[categories, clip_id]


def _frame(clip_id: str, number: int, labels: list) -> dict:
    return {"name": f"{clip_id}/{number:04d}.jpg", "labels": labels}


def _label(category: str, x1: float = 1.5, y1: float = 2.25) -> dict:
    return {"box2d": {"x1": x1, "y1": y1, "x2": x1 + 4.0, "y2": y1 + 3.5},
            "category": "thing", "standard_category": category}


@pytest.mark.parametrize("categories", ["both", "hands", "objects"])
def test_whole_video_checks_read_what_the_value_by_value_reading_does(tmp_path,
                                                                      monkeypatch,
                                                                      categories):
    """A video passing the whole-video checks gets exactly the boxes the value-by-value
    reading gives; every other shape is left to that reading (same boxes, same lines)."""
    both = [_label("hand"), _label("0000", 3.0), _label("0001", 0.5, 7.75)]
    data = {
        "1": [_frame("1", n, both) for n in range(1, 6)],
        "2": [_frame("2", n, both[:1]) for n in (3, 1, 2)],  # not in order
        "3": [_frame("3", 1, both), _frame("3", 1, both[1:])],  # a frame twice
        "4": [_frame("4", 1, [_label("hand", 1, 2)])],  # ints
        "5": [{"name": "5/0001.jpg\n", "labels": both}],  # a newline in the name
        "6": [_frame("6", 1, []), _frame("6", 2, both)],  # a frame with no boxes
        "7": [_frame("8", 1, both)],  # another video's frame
        "9": [_frame("9", 0, both)],  # numbered from 0
        "10": [{"name": "10/0001.jpg", "labels": both + [{"box2d": None}]}],
        "11": [{"name": "11/0001.jpg", "labels": {"a": 1}}],
        "12": [_frame("12", 1, [_label("0000", float("nan"))])],
        "13": [{"name": "13/12345678.jpg", "labels": both}],  # 8 digits
        "a/b": [_frame("a/b", 1, both)],
        "14": [],
    }
    path = _write(tmp_path / "part.json", data)
    keep = {boxes_lib.ROLES.index(r) for r in boxes_lib.CATEGORIES[categories]}
    regular = {c for c, frames in data.items()
               if boxes_lib._something_else_regular(c, frames, keep) is not None}
    assert regular == {"1", "6"}  # the others are left to the value-by-value reading
    fast = boxes_lib.load_box_files(path, categories)
    monkeypatch.setattr(boxes_lib, "_something_else_regular", lambda *args: None)
    slow = boxes_lib.load_box_files(path, categories)
    assert list(map(str, fast[1])) == list(map(str, slow[1]))
    assert sorted(fast[0]) == sorted(slow[0])
    for clip_id, boxes in fast[0].items():
        other = slow[0][clip_id]
        assert boxes.fields() == other.fields(), clip_id
        for name in ("numbers", "ends", "coords", "roles"):
            assert getattr(boxes, name).dtype == getattr(other, name).dtype, (clip_id, name)


@pytest.mark.slow  # spawns worker processes
def test_files_read_in_worker_processes_give_what_one_process_gives(tmp_path, monkeypatch):
    """Several files at once in spawned workers: the same boxes, problems (in the files'
    order, the first file's boxes kept) and one-line refusals as reading them in turn."""
    monkeypatch.setattr(boxes_lib, "PARALLEL_MIN_BYTES", 0)
    parts = [_write(tmp_path / f"part{p}.json", {
        str(k): [_frame(str(k), f + 1, [_label("hand", x1=p + f / 8), _label("0000")])
                 for f in range(3)] + ([{"name": "bad"}] if k == 2 else [])
        for k in range(p, p + 4)}) for p in range(3)]
    alone = boxes_lib.load_box_files(parts, known=["1", "2", "3"], workers=1)
    together = boxes_lib.load_box_files(parts, known=["1", "2", "3"], workers=3)
    assert together[1] == alone[1] and list(together[0]) == list(alone[0]) == ["1", "2", "3"]
    assert all(together[0][k] == alone[0][k] for k in alone[0])
    assert "part1.json: video 2: boxes already given in part0.json; keeping those" in alone[1]
    (tmp_path / "part1.json").write_text((tmp_path / "part1.json").read_text()[:-30])
    with pytest.raises(ValueError, match=r"^box file \S+part1.json: cannot read it as JSON "
                                         r"\(the file ends in the middle"):
        boxes_lib.load_box_files(parts, workers=3)


def test_reading_box_files_imports_no_tensorflow(python):
    """Box files are read in worker processes that must stay small: the reader (and what
    unpickling its results needs) imports no TensorFlow."""
    done = python("-c", "import sys, stabn_tf.data.boxes, stabn_tf.data.json_stream; "
                  "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                  "('tensorflow', 'keras')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
