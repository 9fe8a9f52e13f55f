"""The report with names that matplotlib would read as math or lacks glyphs for, and
`--corrections` files with bad boxes or videos the report does not have: whole sites,
one line per problem, nothing drawn before the corrections are known to be good."""

import json

import keras
import pytest

import stabn_tf
from stabn_tf.evaluate import EvaluationError
from stabn_tf.explain import glyphs
from stabn_tf.report import build_report

#: Clip ids (and their classes' names) that once broke the pictures.
NAMES = ("take $x_1_2$ b", "price $5 or $6", "100% \\ back\\slash", "中文 视频",
         "שלום مرحبا")


@pytest.fixture(scope="module")
def named(tmp_path_factory, named_clips):
    root = tmp_path_factory.mktemp("names")
    named_clips(root / "validation-00000-of-00001.tfrecord", NAMES)
    keras.utils.set_random_seed(1)
    model = stabn_tf.build_stabn(num_classes=len(NAMES), num_frames=4, image_size=32,
                                 depth=18, width_multiplier=0.125, class_names=list(NAMES))
    model.save(root / "named.keras")
    return {"checkpoint": str(root / "named.keras"), "progress": False, "tables": [],
            "files": str(root / "validation-*.tfrecord")}


@pytest.mark.slow  # draws a whole site
def test_names_with_math_signs_and_cjk_make_a_whole_site(named, tmp_path, capfd,
                                                          monkeypatch):
    monkeypatch.delenv(glyphs.NOTED_ENV, raising=False)
    glyphs._fallbacks.cache_clear()
    corrections = tmp_path / "corrections.json"  # as the editor exports them
    corrections.write_text(json.dumps({
        NAMES[0]: {"frames": {"1": [[0.1, 0.2, 0.5, 0.6]]}, "active_frames": [[1, 2]]},
        NAMES[3]: {"frames": {"0": [{"box": [0, 0, 0.5, 0.5], "role": "hand"}]}}},
        ensure_ascii=False))
    said = []
    out = tmp_path / "site"
    result = build_report(**named, output_dir=str(out), workers=2, log=said.append,
                          corrections=str(corrections))
    assert (result["clips"], result["failed"]) == (len(NAMES), 0), said
    assert (out / "index.html").exists()
    clips = json.loads((out / "clips.json").read_text())
    assert sorted(c["clip"] for c in clips) == sorted(NAMES)
    data = (out / "assets" / "corrections-data.js").read_text().split("=", 1)[1]
    loaded = json.loads(data.strip().rstrip(";"))
    assert loaded[NAMES[0]]["frames"] == {"1": [[0.1, 0.2, 0.5, 0.6]]}
    assert loaded[NAMES[3]]["frames"]["0"][0]["role"] == "hand"
    err = capfd.readouterr().err
    assert "Glyph" not in err and "Traceback" not in err
    # At most one line for the glyphs no installed font has, whatever the workers draw.
    assert len([line for line in err.splitlines() if "no installed font" in line]) <= 1


def test_bad_boxes_in_corrections_are_one_line_each_before_drawing(named, tmp_path):
    corrections = tmp_path / "corrections.json"
    corrections.write_text(json.dumps({NAMES[1]: {"frames": {  # NaN written as JSON's NaN
        "0": [[float("nan"), 0, 1, 1]], "1": [[0.2, 0.2, 1.5, 0.9]],
        "2": [[0.6, 0.1, 0.4, 0.5]], "3": [[0.1, 0.1, 0.4, 0.5]]}}}))
    said = []
    out = tmp_path / "site"
    with pytest.raises(EvaluationError, match=r"has 3 problem\(s\), the first: "
                       r"corrections.json: video price \$5 or \$6, frame 0: a box must be"):
        build_report(**named, output_dir=str(out), log=said.append,
                     corrections=str(corrections))
    assert said == [
        f"corrections.json: video {NAMES[1]}, frame 0: a box must be 4 numbers [ymin, xmin, "
        "ymax, xmax], got [nan, 0, 1, 1]",
        f"corrections.json: video {NAMES[1]}, frame 1: box [0.2, 0.2, 1.5, 0.9] lies "
        "outside the frame [0, 1]",
        f"corrections.json: video {NAMES[1]}, frame 2: box [0.6, 0.1, 0.4, 0.5] is empty "
        "(needs ymin < ymax and xmin < xmax)"]
    assert not out.exists() or not any(out.rglob("*.png"))  # nothing drawn


def test_corrections_of_unknown_videos_are_said_and_left_out(named, tmp_path):
    corrections = tmp_path / "mine.json"
    corrections.write_text(json.dumps(
        {**{f"other-{i}": {"frames": {"0": [[0, 0, 1, 1]]}} for i in range(5)},
         NAMES[2]: {"frames": {"0": []}}}))
    said = []
    out = tmp_path / "site"
    build_report(**named, output_dir=str(out), max_clips=1, log=said.append,
                 corrections=str(corrections))
    lines = [line for line in said if "--corrections" in line]
    assert lines == ["--corrections: 5 of the 6 videos in mine.json are not among the clips "
                     "of --files ('other-0', 'other-1', 'other-2' and 2 more): left out"]
    data = (out / "assets" / "corrections-data.js").read_text()
    assert "other-" not in data and json.dumps(NAMES[2])[1:-1] in data
