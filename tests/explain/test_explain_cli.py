"""`stabn_tf.explain` and the pictures: Figure-3 grid, GIF/MP4, CLI on video + TFRecord."""

import io
import json
import os

import av
import keras
import numpy as np
import pytest
from PIL import Image

import stabn_tf
from stabn_tf.data.synthetic import CLASSES
from stabn_tf.data.video import write_video
from stabn_tf.explain import figures as visualize
from stabn_tf.explain.render import render_prediction
from stabn_tf.inference import InferenceError, OutputNames, open_runner, run_inputs
from stabn_tf.inference.inputs import tfrecord_clips
from stabn_tf.training.callbacks import explanation_pngs

PNG = b"\x89PNG\r\n\x1a\n"


def _explanation_inputs(count, rng=None):
    rng = rng or np.random.default_rng(0)
    frames = rng.integers(0, 255, (count, 32, 32, 3), dtype=np.uint8)
    return frames, rng.uniform(size=(count, 2, 2, 1)), rng.uniform(size=count)


def _png_size(data):
    with Image.open(io.BytesIO(data)) as img:
        return img.size


@pytest.mark.parametrize("count,columns,rows", [(5, 3, 2), (8, 8, 1), (7, 4, 2), (1, 8, 1)])
def test_figure_grid_for_any_frame_count(count, columns, rows):
    frames, spatial, temporal = _explanation_inputs(count)
    fig = visualize.attention_figure(frames, spatial, temporal, columns=columns)
    images = [ax for ax in fig.axes if ax.get_images()]
    assert len(images) == count
    ranges = [f"{m.min():.2f}–{m.max():.2f}" for m in spatial]
    assert [ax.get_title() for ax in images] == [f"frame {i} · {r}"
                                                 for i, r in zip(range(count), ranges)]
    bar_values = [ax.texts[0].get_text() for ax in fig.axes if ax.texts]
    assert bar_values == [f"{v:.2f}" for v in temporal]
    # rows × (frame + bar) grid rows
    assert fig.axes[0].get_gridspec().get_geometry() == (2 * rows, min(columns, count))


def test_figure_png_grows_with_rows_and_shows_boxes_and_top_k():
    frames, spatial, temporal = _explanation_inputs(6)
    one_row = visualize.figure_png(visualize.attention_figure(frames, spatial, temporal,
                                                              columns=6))
    two_rows = visualize.figure_png(visualize.attention_figure(frames, spatial, temporal,
                                                               columns=3))
    assert one_row[:8] == PNG and two_rows[:8] == PNG
    assert _png_size(two_rows)[1] > _png_size(one_row)[1]
    boxes = np.tile([0.1, 0.2, 0.5, 0.6], (6, 1))
    boxes[2] = 0  # not visible: no outline
    fig = visualize.attention_figure(frames, spatial, temporal, boxes=boxes,
                                     top_k=[("moving up", 0.7), ("moving down", 0.2)])
    outlined = [ax for ax in fig.axes if ax.get_images() and ax.patches]
    assert len(outlined) == 5
    assert any("1. moving up" in t.get_text() and "2. moving down" in t.get_text()
               for t in fig.texts)
    with pytest.raises(ValueError, match="6 frames but 5"):
        visualize.attention_figure(frames, spatial, temporal[:5])


def test_figure_has_labelled_scales_for_ms_beside_mt():
    frames, spatial, temporal = _explanation_inputs(3)
    fig = visualize.attention_figure(frames, spatial, temporal,
                                     temporal_label="temporal attention Mt")
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["spatial attention Ms: 2×2\n0 = not attended, 1 = attended",
                      "temporal attention Mt"]
    pictures = [ax.get_position() for ax in fig.axes if ax.get_images()]
    scales = [ax.get_position() for ax in fig.axes if ax.get_ylabel()]
    assert max(p.x1 for p in pictures) < scales[0].x0 < scales[0].x1 < scales[1].x0


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_animation_has_one_frame_per_clip_frame(tmp_path, ext):
    frames, spatial, temporal = _explanation_inputs(5)
    pictures = visualize.animation_frames(frames, spatial, temporal, display_size=64,
                                          caption="moving up (0.70)")
    assert len(pictures) == 5 and pictures[0].width == 64 and pictures[0].height > 64
    path = visualize.write_animation(tmp_path / f"a{ext}", pictures, fps=5)
    if ext == ".gif":
        with Image.open(path) as gif:
            assert gif.n_frames == 5 and gif.size == pictures[0].size
    else:
        with av.open(path) as video:
            decoded = list(video.decode(video=0))
        assert len(decoded) == 5 and decoded[0].width == 64
    with pytest.raises(ValueError, match="animations are written as"):
        visualize.write_animation(tmp_path / "a.avi", pictures)


def test_training_callback_draws_through_the_runner(tiny_tfrecords):
    model = stabn_tf.STABN.from_preset("stabn_tiny")
    clips = list(tfrecord_clips(os.path.join(tiny_tfrecords, "validation-*.tfrecord"),
                                model.preprocessor, max_clips=2))
    pngs = explanation_pngs(model, clips)
    assert len(pngs) == 2 and all(p[:8] == PNG for p in pngs)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    keras.utils.set_random_seed(2)
    stabn_tf.STABN.from_preset("stabn_tiny", class_names=CLASSES).save(root / "stabn.keras")
    stabn_tf.ResNet3D.from_preset("stabn_tiny").save(root / "baseline.keras")
    return root


def _video(path, count=9):
    frames = np.full((count, 40, 48, 3), 90, np.uint8)
    for t in range(count):
        frames[t, 10:22, 3 + 4 * t:13 + 4 * t] = (30, 200, 60)
    write_video(str(path), frames, 8, "libx264", format="mp4")


def test_gradcam_explanation_of_a_baseline_as_mp4(checkpoints, tmp_path):
    _video(tmp_path / "clip.mp4")
    with pytest.raises(InferenceError, match="gradcam method"):
        open_runner(checkpoints / "baseline.keras")
    runner = open_runner(checkpoints / "baseline.keras", method="gradcam", gradcam_layer="res4")
    predictions, errors = run_inputs(runner, [str(tmp_path / "clip.mp4"),
                                              str(tmp_path / "clip.mp4"),
                                              str(tmp_path / "none.webm")])
    names = OutputNames()
    out = tmp_path / "out"
    out.mkdir()
    written = [render_prediction(p, str(out), names.claim(p.name), animation="mp4", columns=3)
               for p in predictions]
    assert [os.path.basename(w["json"]) for w in written] == ["clip.json", "clip_2.json"]
    assert len(errors) == 1 and "none.webm: cannot access file" in errors[0]["error"]
    with av.open(written[0]["animation"]) as video:
        assert len(list(video.decode(video=0))) == 4
    with open(written[0]["json"]) as f:
        info = json.load(f)
    assert info["method"] == "gradcam"
    assert np.asarray(info["spatial_attention"]).shape == (1, 4, 2, 2)
    assert info["frame_indices"] == [[1, 3, 5, 7]]


@pytest.mark.slow
def test_cli_video_tfrecord_and_corrupt_input(checkpoints, tiny_tfrecords, tmp_path,
                                              own_lines_only, python):
    _video(tmp_path / "clip.mp4")
    (tmp_path / "broken.webm").write_bytes(b"\x1aE\xdf\xa3 this is not a webm")
    out = tmp_path / "out"
    records = os.path.join(tiny_tfrecords, "validation-*.tfrecord")
    result = python("-m", "stabn_tf.explain", tmp_path / "clip.mp4", tmp_path / "broken.webm",
                    records, "--max_clips=2", "--columns=3",
                    f"--checkpoint={checkpoints / 'stabn.keras'}", f"--output_dir={out}")
    assert result.returncode == 1, result.stderr[-3000:]
    own_lines_only(result)
    errors = [line for line in result.stderr.splitlines() if "stabn_tf.explain: error" in line]
    assert len(errors) == 1 and "broken.webm" in errors[0]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 3 and "clip.png" in pngs  # the video + 2 TFRecord clips
    _assert_scale_strip(out / "clip.gif", "viridis")  # the default colour map
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
        with Image.open(png.with_suffix(".gif")) as gif:
            assert gif.n_frames == 4  # one per model frame
        info = json.loads(png.with_suffix(".json").read_text())
        assert len(info["top_k"]) == 5 and len(info["temporal_attention"][0]) == 4
    record = json.loads(next(p for p in out.glob("*.json") if p.stem != "clip").read_text())
    # The model names its classes; the record's true class is known.
    assert record["true_label"]["label"].startswith(("Moving", "Making", "Rotating",
                                                     "Pushing", "Pretending"))
    assert "→" in result.stdout and "clip:" in result.stdout
    # Every file written is named, and a last line sums up.
    for path in out.iterdir():
        assert str(path) in result.stdout
    assert result.stdout.splitlines()[-1] == (
        f"stabn_tf.explain: wrote {len(list(out.iterdir()))} files for 3 input(s) to {out}")


def _assert_scale_strip(gif_path, colormap):
    """The GIF's Ms scale strip (under the 224-pixel picture of the 48×40 test video and
    its "when" bar) runs from the colour map's 0 to its 1."""
    import matplotlib

    with Image.open(gif_path) as gif:
        picture = np.asarray(gif.convert("RGB"), float)
    bar = 28  # figures._bar_height(224)
    row = picture[224 + bar + 1]  # the strip's top row: above its labels
    ends = np.asarray(matplotlib.colormaps[colormap]([0.0, 1.0])[:, :3]) * 255
    np.testing.assert_allclose(row[[0, -1]], ends, atol=30)


def test_cli_colormap_jet_keeps_the_papers_look(checkpoints, tmp_path, run_command):
    _video(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    result = run_command("stabn_tf.explain", tmp_path / "clip.mp4",
                         f"--checkpoint={checkpoints / 'stabn.keras'}", "--colormap=jet",
                         f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_scale_strip(out / "clip.gif", "jet")


@pytest.mark.parametrize("flag, message", [("--fps=0", "--fps=0.0: must be > 0"),
                                           ("--fps=-1", "--fps=-1.0: must be > 0"),
                                           ("--output_dir=AFILE", "is a file"),
                                           ("--checkpoint=FOREIGN", "a Keras model (Sequential "
                                            "'sequential') that is not an ST-ABN or baseline "
                                            "model")])
def test_bad_flags_fail_before_inference_and_write_nothing(checkpoints, tmp_path, flag,
                                                          message, run_command):
    _video(tmp_path / "clip.mp4")
    (tmp_path / "afile").write_text("x")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="sequential").save(
        tmp_path / "f.keras")
    out = tmp_path / "out"
    flag = flag.replace("AFILE", str(tmp_path / "afile"))
    flag = flag.replace("FOREIGN", str(tmp_path / "f.keras"))  # the last --checkpoint wins
    args = [flag] if flag.startswith("--output_dir") else [flag, f"--output_dir={out}"]
    result = run_command("stabn_tf.explain", tmp_path / "clip.mp4",
                         f"--checkpoint={checkpoints / 'stabn.keras'}", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"stabn_tf.explain: error: {message}"] or \
        message in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert not out.exists()
