"""The explanation browser: generated for a tiny model on a few clips, opened in headless
Chromium (Debian's chromium + chromium-driver, which the `chromium` fixture installs with
apt-get when they are missing: the README's test command passes on a fresh machine by its
own steps, and the test is never skipped), re-run without drawing anything, a TFLite model
beside the Keras one, and the one-line errors; the clip pages' box editor drawn on with
the mouse, exported and converted; class names and clip ids holding markup shown as text."""

import importlib.util
import io
import json
import os
import pathlib
import shutil
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

import stabn_tf
import stabn_tf.report.models
import stabn_tf.report.pages
import stabn_tf.report.site
from stabn_tf.data import list_files, read_labels, tfrecord
from stabn_tf.deploy import openvino, tflite
from stabn_tf.errors import StabnError
from stabn_tf.evaluate import EvaluationError, load_checkpoint
from stabn_tf.inference import tfrecord_clips
from stabn_tf.report import build_report

#: Names of the browser and its driver on PATH (Debian: chromium, chromedriver), and the
#: Debian packages that bring them.
BROWSERS = ("chromium", "chromium-browser")
DRIVERS = ("chromedriver",)
PACKAGES = ("chromium", "chromium-driver")
CLIPS = 5


class BrowserUnavailable(RuntimeError):
    """No headless browser and no way to install one; `str()` says what to do."""


def find_browser(path: str | None = None) -> tuple[str | None, str | None]:
    """(browser, driver) executables on `path` (default: PATH), None where missing."""
    def first(names):
        return next((found for name in names if (found := shutil.which(name, path=path))),
                    None)
    return first(BROWSERS), first(DRIVERS)


def install_commands(is_root: bool, path: str | None = None) -> list[list[str]]:
    """The apt-get commands that install `PACKAGES` (through `sudo -n` when not root: a
    password prompt would hang the tests); BrowserUnavailable when there is no way."""
    advice = f"install them yourself (Debian: apt-get install {' '.join(PACKAGES)})"
    if shutil.which("apt-get", path=path) is None:
        raise BrowserUnavailable(f"no chromium/chromedriver and no apt-get to install "
                                 f"{' and '.join(PACKAGES)}: {advice}")
    prefix = []
    if not is_root:
        if shutil.which("sudo", path=path) is None:
            raise BrowserUnavailable(f"no chromium/chromedriver, and installing "
                                     f"{' and '.join(PACKAGES)} needs root (no sudo here): "
                                     + advice)
        prefix = ["sudo", "-n"]
    quiet = ["-qq", "-o", "DPkg::Lock::Timeout=300"]
    return [prefix + ["apt-get", *quiet, "update"],
            prefix + ["apt-get", *quiet, "install", "-y", "--no-install-recommends",
                      *PACKAGES]]


def ensure_browser(path: str | None = None, run=subprocess.run,
                   is_root: bool | None = None) -> tuple[str, str]:
    """(browser, driver) paths, installing Debian's packages first when either is missing
    (`run` runs each command; `path` and `is_root` stand in for the machine's in tests)."""
    found = find_browser(path)
    if all(found):
        return found
    is_root = os.geteuid() == 0 if is_root is None else is_root
    for command in install_commands(is_root, path):
        done = run(command, capture_output=True, text=True, timeout=1200,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            reason = (done.stderr or done.stdout or "").strip().splitlines()
            raise BrowserUnavailable(
                f"`{' '.join(command)}` failed (exit {done.returncode}"
                + (f": {reason[-1]}" if reason else "") + f"); install "
                f"{' and '.join(PACKAGES)} yourself (Debian: apt-get install "
                f"{' '.join(PACKAGES)})")
    found = find_browser(path)
    missing = [name for name, where in zip(("chromium", "chromedriver"), found) if not where]
    if missing:
        raise BrowserUnavailable(f"installed {' and '.join(PACKAGES)}, but "
                                 f"{' and '.join(missing)} is still not on PATH")
    return found


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """Debian's headless Chromium and its driver, installed when missing."""
    try:
        return ensure_browser()
    except BrowserUnavailable as e:
        pytest.fail(f"the explanation browser test needs a headless Chromium: {e}",
                    pytrace=False)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _val(tiny_tfrecords) -> str:
    return os.path.join(tiny_tfrecords, "validation-*.tfrecord")


@pytest.fixture(scope="module")
def checkpoint(tiny_tfrecords, tmp_path_factory):
    """A tiny ST-ABN whose perception head favours the second clip's class, so the report
    has both right and wrong clips."""
    keras.utils.set_random_seed(3)
    model = stabn_tf.STABN.from_preset(
        "stabn_tiny", class_names=read_labels(os.path.join(tiny_tfrecords, "labels.txt")))
    second = list(tfrecord_clips(_val(tiny_tfrecords), model.preprocessor, max_clips=2))[1]
    dense = model.get_layer("perception")
    bias = np.zeros(dense.bias.shape, "float32")
    bias[second.true_label] = 8.0
    dense.bias.assign(bias)
    path = tmp_path_factory.mktemp("report_model") / "stabn.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def site(checkpoint, tiny_tfrecords, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "site"
    result = build_report(checkpoint=checkpoint, output_dir=str(out),
                          files=_val(tiny_tfrecords), max_clips=CLIPS, gradcam=True,
                          tables=["table1"], num_clips=[1], progress=False,
                          log=lambda text: None)
    return out, result


def _browser(chromium: tuple[str, str]) -> webdriver.Chrome:
    binary, driver = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(function (i) {"
        " return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src; });")


def test_report_in_headless_chromium(site, chromium, tmp_path):
    out, result = site
    assert result["clips"] == CLIPS and result["rendered"] == CLIPS
    clips = json.loads((out / "clips.json").read_text())
    truth = {c["stem"]: c for c in clips}
    misclassified = {c["stem"] for c in clips if c["predicted"][0] != c["true_label"]}
    assert 0 < len(misclassified) < CLIPS
    driver = _browser(chromium)
    try:
        driver.get((out / "index.html").as_uri())
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Summary")
        assert driver.find_elements(By.TAG_NAME, "table"), "no tables on the summary"
        assert not _broken_images(driver)  # the confusion matrix
        assert _console_errors(driver) == []

        driver.find_element(By.LINK_TEXT, "Gallery").click()
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
        assert len(cards) == CLIPS
        assert {c.get_attribute("data-name") for c in cards} == set(truth)
        assert not _broken_images(driver)
        # Least confident first by default, as the caption in docs/explanations.md says.
        assert driver.find_element(By.ID, "sort").get_attribute("value") == "confidence:asc"
        confidences = [float(c.get_attribute("data-confidence")) for c in cards]
        assert confidences == sorted(confidences)
        # Thumbnails are the square picture alone: no text lines baked in under it.
        sizes = driver.execute_script(
            "return Array.from(document.querySelectorAll('#grid .card img')).map("
            "function (i) { return [i.naturalWidth, i.naturalHeight]; });")
        assert len(sizes) == CLIPS and all(w == h == 144 for w, h in sizes)
        # A legend says what the thumbnails' overlay is: the map's grid and its scale.
        legend = driver.find_element(By.CSS_SELECTOR, "p.scale")
        assert "Spatial map Ms (2×2 cells" in legend.text and "viridis" in legend.text
        assert "linear-gradient" in legend.find_element(By.CLASS_NAME, "ramp").get_attribute(
            "style")
        driver.find_element(By.ID, "errors-only").click()
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")  # drawn anew
        shown = {c.get_attribute("data-name") for c in cards if c.is_displayed()}
        assert shown == misclassified
        assert driver.find_element(By.ID, "shown").text.startswith(f"{len(misclassified)} of")
        driver.save_screenshot(str(tmp_path / "gallery.png"))
        assert (tmp_path / "gallery.png").stat().st_size > 1000
        assert _console_errors(driver) == []

        card = next(c for c in cards if c.is_displayed())
        stem = card.get_attribute("data-name")
        card.click()
        assert driver.current_url.endswith(f"/clips/{stem}.html")
        assert driver.find_element(By.TAG_NAME, "h1").text == truth[stem]["clip"]
        headings = [h.text for h in driver.find_elements(By.TAG_NAME, "h3")]
        assert "3D Grad-CAM (predicted class)" in headings
        assert "Pointing game" in driver.page_source and "Temporal AUROC" in driver.page_source
        assert not _broken_images(driver)  # Figure 3, GIFs
        assert _console_errors(driver) == []
    finally:
        driver.quit()


def _executable(folder: pathlib.Path, name: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_a_missing_browser_is_installed_with_apt_get(tmp_path):
    """The fixture's decision on a fake PATH (nothing is installed or removed for real)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = str(bin_dir)
    ran = []

    def fake_apt(command, **kwargs):  # "installs" by putting the executables on PATH
        ran.append(command)
        if "install" in command:
            _executable(bin_dir, "chromium")
            _executable(bin_dir, "chromedriver")
        return subprocess.CompletedProcess(command, 0, "", "")

    _executable(bin_dir, "apt-get")
    _executable(bin_dir, "sudo")
    # Not root: through sudo -n (a password prompt would hang); update, then install.
    assert ensure_browser(path, fake_apt, is_root=False) == (str(bin_dir / "chromium"),
                                                             str(bin_dir / "chromedriver"))
    assert [c[:3] for c in ran] == [["sudo", "-n", "apt-get"]] * 2
    assert "update" in ran[0] and ran[1][-3:] == ["-y", "--no-install-recommends",
                                                  "chromium", "chromium-driver"][-3:]
    # Found: nothing runs.
    ran.clear()
    assert ensure_browser(path, fake_apt, is_root=False)[1] == str(bin_dir / "chromedriver")
    assert ran == []
    # Root: apt-get directly; only the driver missing is enough to install.
    (bin_dir / "chromedriver").unlink()
    ensure_browser(path, fake_apt, is_root=True)
    assert [c[0] for c in ran] == ["apt-get", "apt-get"]


def test_no_way_to_install_the_browser_is_one_clear_failure(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = str(bin_dir)

    def refuse(command, **kwargs):
        return subprocess.CompletedProcess(command, 100, "", "E: Unable to locate package "
                                           "chromium-driver\n")

    with pytest.raises(BrowserUnavailable, match="no apt-get to install chromium and "
                                                 "chromium-driver: install them yourself"):
        ensure_browser(path, refuse, is_root=True)
    _executable(bin_dir, "apt-get")
    with pytest.raises(BrowserUnavailable, match=r"needs root \(no sudo here\)"):
        ensure_browser(path, refuse, is_root=False)
    with pytest.raises(BrowserUnavailable, match="`apt-get -qq .* update` failed .exit 100: "
                                                 "E: Unable to locate package chromium-driver"):
        ensure_browser(path, refuse, is_root=True)

    def install_nothing(command, **kwargs):
        return subprocess.CompletedProcess(command, 0, "", "")

    with pytest.raises(BrowserUnavailable, match="but chromium and chromedriver is still not "
                                                 "on PATH"):
        ensure_browser(path, install_nothing, is_root=True)


@pytest.mark.slow
def test_rerun_draws_nothing(site, checkpoint, tiny_tfrecords):
    out, _ = site
    media = [p for p in (out / "media").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in media}
    again = build_report(checkpoint=checkpoint, output_dir=str(out), files=_val(tiny_tfrecords),
                         max_clips=CLIPS, gradcam=True, tables=["table1"], num_clips=[1],
                         progress=False, log=lambda text: None)
    assert again["rendered"] == 0
    assert {p: p.stat().st_mtime_ns for p in media} == before
    assert {p for p in (out / "media").rglob("*") if p.is_file()} == set(media)


@pytest.mark.slow
def test_another_colour_map_redraws_every_picture(site, checkpoint, tiny_tfrecords, tmp_path):
    """--colormap=jet on a site drawn in viridis: every clip is drawn again, in jet, and
    the gallery's legend says so."""
    out = tmp_path / "site"
    shutil.copytree(site[0], out)
    thumbs = {p.name: p.read_bytes() for p in (out / "media").rglob("*.thumb.jpg")}
    again = build_report(checkpoint=checkpoint, output_dir=str(out), files=_val(tiny_tfrecords),
                         max_clips=CLIPS, tables=["table1"], num_clips=[1], progress=False,
                         colormap="jet", log=lambda text: None)
    assert again["rendered"] == CLIPS
    redrawn = {p.name: p.read_bytes() for p in (out / "media").rglob("*.thumb.jpg")}
    assert redrawn.keys() == thumbs.keys()
    assert all(redrawn[name] != thumbs[name] for name in thumbs)
    assert "(jet)" in (out / "gallery.html").read_text()
    with pytest.raises(EvaluationError, match="colour map 'rainbow': choose from"):
        build_report(checkpoint=checkpoint, output_dir=str(tmp_path / "other"),
                     files=_val(tiny_tfrecords), colormap="rainbow", log=lambda text: None)


@pytest.mark.slow
def test_tflite_model_beside_the_keras_one(checkpoint, tiny_tfrecords, tmp_path):
    lite = tmp_path / "stabn.tflite"
    tflite.export_tflite(load_checkpoint(checkpoint), str(lite))
    said = []
    result = build_report(checkpoint=checkpoint, compare_checkpoint=str(lite),
                          output_dir=str(tmp_path / "site"), files=_val(tiny_tfrecords),
                          max_clips=2, tables=[], progress=False, log=said.append,
                          precision="bfloat16")
    clips = json.loads((tmp_path / "site" / "clips.json").read_text())
    assert result["clips"] == 2 and all(len(c["predicted"]) == 2 for c in clips)
    for c in clips:  # the float export explains like the Keras model (here in bf16)
        assert c["comparison"]["agree"]
        assert c["comparison"]["mt_correlation"] > 0.99
    page = (tmp_path / "site" / "index.html").read_text()
    assert "TFLite" in page and "Mt correlation" in page
    # The Keras model runs in the precision asked for, the compared export in its own;
    # bf16 records get a folder of their own.
    models = json.loads((tmp_path / "site" / "models.json").read_text())
    assert [m["precision"]["precision"] for m in models] == ["bfloat16", "float32"]
    assert models[0]["key"].endswith("-bfloat16") and models[0]["kind"].endswith(", bfloat16")
    assert "Keras ST-ABN, bfloat16" in page
    assert said.count("precision: bfloat16 (requested)") == 1
    with pytest.raises(StabnError, match="--precision=bfloat16: .* computes in float32"):
        build_report(checkpoint=str(lite), output_dir=str(tmp_path / "lite"),
                     files=_val(tiny_tfrecords), tables=[], progress=False,
                     log=lambda text: None, precision="bfloat16")


@pytest.mark.slow
def test_openvino_ir_beside_the_keras_one(checkpoint, tiny_tfrecords, tmp_path):
    ir = tmp_path / "stabn.xml"
    openvino.export_openvino(load_checkpoint(checkpoint), str(ir))
    result = build_report(checkpoint=checkpoint, compare_checkpoint=str(ir),
                          output_dir=str(tmp_path / "site"), files=_val(tiny_tfrecords),
                          max_clips=2, tables=[], progress=False, log=lambda text: None)
    clips = json.loads((tmp_path / "site" / "clips.json").read_text())
    assert result["clips"] == 2
    for c in clips:  # the float IR explains like the Keras model
        assert c["comparison"]["agree"]
        assert c["comparison"]["mt_correlation"] > 0.99
    assert "OpenVINO IR" in (tmp_path / "site" / "index.html").read_text()


@pytest.mark.slow
def test_bad_inputs_fail_in_one_line(checkpoint, tiny_tfrecords, tmp_path, own_lines_only,
                                     run_command):
    def report(**kwargs):
        settings = dict(checkpoint=checkpoint, output_dir=str(tmp_path / "out"),
                        files=_val(tiny_tfrecords), tables=[], progress=False,
                        log=lambda text: None)
        build_report(**{**settings, **kwargs})

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(EvaluationError, match="is a file"):
        report(output_dir=str(a_file))
    with pytest.raises(StabnError, match="--precision=fp16: choose from auto"):
        report(precision="fp16")
    with pytest.raises(EvaluationError, match="not writable"):
        report(output_dir=str(a_file / "inside"))
    with pytest.raises(EvaluationError, match="--corrections: cannot read .*missing.json"):
        report(corrections=str(tmp_path / "missing.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(EvaluationError, match="must hold a JSON object keyed by video id"):
        report(corrections=str(tmp_path / "list.json"))
    (tmp_path / "bad.json").write_text('{"7": {"frames": [1]}}')
    with pytest.raises(EvaluationError, match="the first: bad.json: video 7: expected"):
        report(corrections=str(tmp_path / "bad.json"))
    empty = tmp_path / "validation-empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(EvaluationError, match="validation split is empty"):
        report(files=str(empty))
    keras.utils.set_random_seed(0)
    small = stabn_tf.STABN.from_preset("stabn_tiny", num_classes=3)
    small.save(tmp_path / "three.keras")
    with pytest.raises(EvaluationError, match="do not match"):
        report(checkpoint=str(tmp_path / "three.keras"))
    other = stabn_tf.STABN.from_preset("stabn_tiny", num_frames=8)
    other.save(tmp_path / "eight.keras")
    with pytest.raises(EvaluationError, match="different clips"):
        report(compare_checkpoint=str(tmp_path / "eight.keras"))
    # The command: one line, status 2 (in this process: a fresh one's start-up lines are
    # `test_a_full_disk_is_one_line`'s).
    done = run_command("stabn_tf.report", f"--checkpoint={checkpoint}",
                       f"--output_dir={a_file}", f"--files={_val(tiny_tfrecords)}")
    assert done.returncode == 2
    own_lines_only(done)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"stabn_tf.report: error: --output_dir: output directory "
                      f"{str(a_file)!r} is a file, not a directory"]


@pytest.mark.slow
def test_a_full_disk_is_one_line(checkpoint, tiny_tfrecords, tmp_path, full_disk_command,
                                 own_lines_only):
    """ENOSPC while writing the site (simulated: see `full_disk_command`): one line naming
    the file, exit 2, no traceback."""
    out = tmp_path / "site"
    done = subprocess.run(full_disk_command("stabn_tf.report", f"--checkpoint={checkpoint}",
                                            f"--output_dir={out}",
                                            f"--files={_val(tiny_tfrecords)}",
                                            "--max_clips=1", "--tables=none"),
                          capture_output=True, text=True, env=ENV, timeout=300,
                          cwd=pathlib.Path(__file__).resolve().parents[2])
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    own_lines_only(done)  # a clip was drawn
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"stabn_tf.report: error: {out}")
    assert ": the disk is full (" in errors[0]
    assert errors[0].endswith("free some space and run the same command again (what was "
                              "drawn is kept: the next run draws the rest)")
    assert not [p for p in out.rglob(".tmp-*")]  # no half-written temporary files


def _benchmark(name: str):
    """benchmarks/<name>.py, by its path: `editor_driver` (the editor driven as a person
    does), `scale_report` (the gallery's generated cards)."""
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stored(driver, data: dict) -> dict:
    """The clip's corrections as the page's store holds them."""
    return driver.execute_script("return window.STABN_STORE.read(arguments[0], arguments[1]);",
                                 data["checkpoint"], data["clip"])


def _source_box(data: dict, pixels) -> list[float]:
    """Canvas pixels of the shown crop → the source frame's normalised box."""
    y, x, h, w = data["crop"]
    d = data["display"]
    return [y + h * pixels[0] / d, x + w * pixels[1] / d, y + h * pixels[2] / d,
            x + w * pixels[3] / d]


def _canvas_pixels(data: dict, box) -> np.ndarray:
    y, x, h, w = data["crop"]
    return np.array([(box[0] - y) / h, (box[1] - x) / w, (box[2] - y) / h,
                     (box[3] - x) / w]) * data["display"]


def _picture(element) -> np.ndarray:
    """What an element shows on the screen, as RGB pixels."""
    with Image.open(io.BytesIO(element.screenshot_as_png)) as image:
        return np.asarray(image.convert("RGB"), float)


def _check_overlay(bare: np.ndarray, shown: np.ndarray, data: dict, t: int) -> None:
    """The editor's Ms overlay of frame t is the pictures' one: each cell one colour of
    the report's colour map for its value on the fixed 0..1 scale, at its opacity, over the
    frame (checked at two points inside every cell: cells are drawn as cells)."""
    scale, ms = data["scale"], np.asarray(data["ms"][t], float)
    stops = np.array([[int(c[k:k + 2], 16) for k in (1, 3, 5)] for c in scale["stops"]])
    alpha, (h, w) = scale["alpha"], ms.shape
    size = bare.shape[0]
    for (i, j), value in np.ndenumerate(ms):
        expected = stops[round(min(max(value, 0.0), 1.0) * (len(stops) - 1))]
        for fy, fx in ((0.3, 0.3), (0.7, 0.6)):
            y, x = int((i + fy) * size / h), int((j + fx) * size / w)
            colour = (shown[y, x] - (1 - alpha) * bare[y, x]) / alpha
            np.testing.assert_allclose(colour, expected, atol=12)


def _records_by_id(pattern: str) -> dict:
    return {r.context.feature[tfrecord.CLIP_ID].bytes_list.value[0].decode(): r
            for r in (tf.train.SequenceExample.FromString(x.numpy())
                      for x in tf.data.TFRecordDataset(list_files(pattern)))}


def _record_boxes(record, frame: int) -> list[tuple[list[float], str]]:
    lists = record.feature_lists.feature_list
    coords = [list(lists[k].feature[frame].float_list.value) for k in tfrecord.BOX_COORDS]
    roles = [r.decode() for r in lists[tfrecord.BOX_ROLE].feature[frame].bytes_list.value]
    return [(list(b), role) for b, role in zip(zip(*coords), roles)]


def test_editor_draws_exports_and_converts(site, chromium, checkpoint, tiny_tfrecords,
                                           tmp_path, run_command):
    """Two clips corrected with the mouse (draw, move, resize, delete with the keyboard, roles,
    action frames), kept over a reload, exported from the Corrections page as a download,
    loaded back with --corrections under the browser's newer edits, and converted with 0
    problems into records that hold the drawn boxes and the action frames."""
    out, _ = site
    ed = _benchmark("editor_driver")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    clips = json.loads((out / "clips.json").read_text())
    first, second = clips[0]["clip"], clips[1]["clip"]
    driver = ed.chrome(str(downloads), *chromium)
    try:
        data = ed.open_clip(driver, str(out), first)
        frames = data["frame_indices"]
        assert len(frames) == 4 and len(driver.find_elements(By.CSS_SELECTOR,
                                                             "#frames canvas")) == 4
        # Boxes on two frames; the first is moved by its inside, a third drawn and deleted
        # with the Delete key.
        ed.drag(driver, ed.frame_canvas(driver, data, frames[0]), (40, 50), (120, 150))
        moved = [40 + 12, 50 - 20, 120 + 12, 150 - 20]
        ed.drag(driver, ed.frame_canvas(driver, data, frames[0]), (80, 100), (92, 80))
        hand = ed.draw_box(driver, data, frames[1],
                           {"box": _source_box(data, [20, 30, 200, 190]), "role": "hand"})
        # Resized by its bottom-right handle (it is still selected).
        ed.drag(driver, ed.frame_canvas(driver, data, frames[1]), hand[2:], (180, 160))
        hand = hand[:2] + [180, 160]
        ed.drag(driver, ed.frame_canvas(driver, data, frames[1]), (150, 10), (210, 60))
        assert len(_stored(driver, data)["frames"][str(frames[1])]) == 2
        ActionChains(driver).send_keys(Keys.DELETE).perform()
        ed.mark_active(driver, data, frames[1:3])
        stored = _stored(driver, data)
        assert sorted(stored["frames"]) == sorted([str(frames[0]), str(frames[1])])
        assert stored["active_frames"] == [[frames[1], frames[2]]]
        # Kept over a reload: the page reads them back, ticks included.
        driver.refresh()
        assert _stored(driver, data)["frames"] == stored["frames"]
        ticks = driver.find_elements(By.CSS_SELECTOR, "#frames input.active")
        assert [t.is_selected() for t in ticks] == [False, True, True, False]
        assert driver.find_element(By.ID, "editor-status").text.startswith("2 boxes on 2 frames")

        other = ed.open_clip(driver, str(out), second)
        boxes_second = {other["frame_indices"][0]: [_source_box(other, [10, 20, 60, 90])],
                        other["frame_indices"][3]: [_source_box(other, [100, 100, 220, 200])]}
        for frame, boxes in boxes_second.items():
            ed.draw_box(driver, other, frame, boxes[0])
        ed.mark_active(driver, other, [other["frame_indices"][0]])
        # "Start from the model" proposes a box on every frame still without one.
        driver.find_element(By.ID, "propose").click()
        proposed = _stored(driver, other)["frames"]
        assert sorted(map(int, proposed)) == sorted(other["frame_indices"])
        for frame in (other["frame_indices"][1], other["frame_indices"][2]):
            ed.frame_canvas(driver, other, frame)
            box = _canvas_pixels(other, proposed[str(frame)][0])
            ed.drag(driver, ed.frame_canvas(driver, other, frame),
                    ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
                    ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))  # a click selects it
            driver.find_element(By.ID, "delete-box").click()
        assert sorted(map(int, _stored(driver, other)["frames"])) == sorted(boxes_second)
        # Frame 1 has no box left on it: the picture before and after the overlay.
        t = 1
        canvas = ed.frame_canvas(driver, other, other["frame_indices"][t])
        bare = _picture(canvas)
        driver.find_element(By.ID, "overlay").click()  # the Ms overlay draws without errors
        driver.save_screenshot(str(tmp_path / "editor.png"))
        assert _console_errors(driver) == []
        _check_overlay(bare, _picture(canvas), other, t)

        driver.find_element(By.LINK_TEXT, "Corrections").click()
        rows = driver.find_elements(By.CSS_SELECTOR, "#corrections tbody tr")
        assert sorted(r.get_attribute("data-clip") for r in rows) == sorted([first, second])
        path = ed.export(driver, str(out), str(tmp_path / "exported.json"), str(downloads))
        link = driver.find_element(By.ID, "export-link")
        assert link.get_attribute("href").startswith("blob:")
        assert link.get_attribute("download") == "corrections.json"
        exported = json.loads(pathlib.Path(path).read_text())
        assert exported == json.loads(driver.find_element(By.ID, "export-preview")
                                      .get_attribute("textContent"))
        assert _console_errors(driver) == []
    finally:
        driver.quit()

    # The export: the converter's ids, source frame indices, source-normalised boxes.
    assert set(exported) == {first, second}
    a = exported[first]
    assert a["active_frames"] == [[frames[1], frames[2]]]
    assert exported[second]["active_frames"] == [other["frame_indices"][0]]
    drawn = {(first, frames[0]): [(moved, "object")], (first, frames[1]): [(hand, "hand")]}
    drawn.update({(second, f): [([round(v) for v in _canvas_pixels(other, b[0])], "object")]
                  for f, b in boxes_second.items()})
    for (clip, frame), boxes in drawn.items():
        items = exported[clip]["frames"][str(frame)]
        assert len(items) == len(boxes)
        for item, (pixels, role) in zip(items, boxes):
            box = item if role == "object" else item["box"]
            assert role == "object" and isinstance(item, list) or item["role"] == "hand"
            assert np.abs(_canvas_pixels(data if clip == first else other, box)
                          - pixels).max() <= 1.0

    # Loaded back with --corrections into a copy of the site (nothing is redrawn): a fresh
    # browser shows the file's boxes; a clip edited in the browser keeps its edits.
    copy = tmp_path / "site"
    shutil.copytree(out, copy)
    again = build_report(checkpoint=checkpoint, output_dir=str(copy), files=_val(tiny_tfrecords),
                         max_clips=CLIPS, gradcam=True, tables=["table1"], num_clips=[1],
                         progress=False, log=lambda text: None, corrections=path)
    assert again["rendered"] == 0
    driver = ed.chrome(str(downloads), *chromium)
    try:
        data = ed.open_clip(driver, str(copy), first)
        assert _stored(driver, data)["frames"] == exported[first]["frames"]
        ticks = driver.find_elements(By.CSS_SELECTOR, "#frames input.active")
        assert [t.is_selected() for t in ticks] == [False, True, True, False]
        driver.find_element(By.ID, "clear-clip").click()
        ed.draw_box(driver, data, frames[3], _source_box(data, [60, 60, 160, 160]))
        newer = ed.export(driver, str(copy), str(tmp_path / "again.json"))
        merged = json.loads(pathlib.Path(newer).read_text())
        assert list(merged[first]["frames"]) == [str(frames[3])]
        assert "active_frames" not in merged[first]
        assert merged[second] == exported[second]
        assert _console_errors(driver) == []
    finally:
        driver.quit()

    # Converted with the box file: 0 problems, the records hold the drawn boxes (within a
    # canvas pixel) on their frames and the action frames as labels.
    raw = pathlib.Path(tiny_tfrecords).parent / "raw"
    converted = tmp_path / "converted"
    done = run_command("stabn_tf.data.convert", "--dataset=ssv2", f"--input_dir={raw}",
                       f"--output_dir={converted}", f"--boxes={path}", "--splits=validation",
                       "--workers=1", "--num_shards=1", "--noprogress")
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((converted / "manifest.json").read_text())
    assert manifest["boxes"]["problems"] == 0 and manifest["boxes"]["videos_with_boxes"] == 2
    records = _records_by_id(str(converted / "validation-*.tfrecord"))
    for (clip, frame), boxes in drawn.items():
        stored = _record_boxes(records[clip], frame)
        assert [role for _, role in stored] == [role for _, role in boxes]
        for (box, _), (pixels, _) in zip(stored, boxes):
            assert np.abs(_canvas_pixels(data if clip == first else other, box)
                          - pixels).max() <= 1.0
    for clip, ranges in ((first, [(frames[1], frames[2])]),
                         (second, [(other["frame_indices"][0],) * 2])):
        lists = records[clip].feature_lists.feature_list
        assert "clip/active" in lists, "the converter does not store active_frames"
        labels = [f.int64_list.value[0] for f in lists["clip/active"].feature]
        assert labels == [int(any(lo <= i <= hi for lo, hi in ranges))
                          for i in range(len(labels))]

def _snapshot(driver, data: dict) -> str | None:
    """The clip's item in the browser's storage, as stored (None: nothing kept there)."""
    return driver.execute_script("return window.STABN_STORE.snapshot(arguments[0], "
                                 "arguments[1]);", data["checkpoint"], data["clip"])


def _exported(driver, data: dict) -> dict:
    """What the Corrections page's Export writes, as an object."""
    return driver.execute_script("return window.STABN_STORE.exportObject(arguments[0]);",
                                 data["checkpoint"])


def _status(driver) -> str:
    return driver.find_element(By.ID, "editor-status").text


def _watch_pointers(driver) -> None:
    """From now on `window.seen` lists the pointerType of each press on a frame."""
    driver.execute_script(
        "window.seen = []; document.querySelectorAll('#frames canvas').forEach("
        "function (c) { c.addEventListener('pointerdown', function (e) {"
        " window.seen.push(e.pointerType); }); });")


def _press(driver, *keys) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def _ctrl_z(driver) -> None:
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()


def test_keyboard_touch_and_pen_draw_what_the_mouse_draws(site, chromium, tmp_path):
    """One box drawn with the mouse, with the keyboard alone (Tab to the frame, N, arrows,
    Shift+arrows: each step said in the live line) and by finger and by pen (Pointer
    Events of those types): the same exported box file each time."""
    out, _ = site
    ed = _benchmark("editor_driver")
    clip = json.loads((out / "clips.json").read_text())[0]["clip"]
    driver = ed.chrome(str(tmp_path), *chromium)
    try:
        data = ed.open_clip(driver, str(out), clip)
        frame = data["frame_indices"][0]
        assert data["display"] == 224  # the keyboard's steps below assume it
        target = [40, 48, 120, 152]
        _watch_pointers(driver)
        ed.drag(driver, ed.frame_canvas(driver, data, frame), target[:2], target[2:])
        mouse = _exported(driver, data)
        box = mouse[clip]["frames"][str(frame)][0]
        np.testing.assert_allclose(_canvas_pixels(data, box), target, atol=0.5)
        assert driver.execute_script("return window.seen;") == ["mouse"]

        for pointer in ("touch", "pen"):
            driver.execute_script("window.localStorage.clear();")
            data = ed.open_clip(driver, str(out), clip)
            _watch_pointers(driver)
            assert _exported(driver, data) == {}
            ed.drag(driver, ed.frame_canvas(driver, data, frame), target[:2], target[2:],
                    pointer=pointer)
            assert driver.execute_script("return window.seen;") == [pointer]
            assert _exported(driver, data) == mouse, pointer

        driver.execute_script("window.localStorage.clear();")
        data = ed.open_clip(driver, str(out), clip)
        ed.frame_canvas(driver, data, frame)
        driver.execute_script("document.getElementById('clear-clip').focus();")
        _press(driver, Keys.TAB)
        focused = driver.switch_to.active_element
        assert (focused.tag_name, focused.get_attribute("data-t")) == ("canvas", "0")
        live = driver.find_element(By.ID, "editor-live")
        _press(driver, Keys.ARROW_UP)
        assert "No box selected" in live.text
        _press(driver, "n")
        assert live.text == (f"New box 1 of 1 on frame {frame} (object): top 84, left 84, "
                             f"bottom 140, right 140 of 224 px")
        _press(driver, *[Keys.ARROW_UP] * 11, *[Keys.ARROW_LEFT] * 9)
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(
            *[Keys.ARROW_DOWN] * 6, *[Keys.ARROW_RIGHT] * 12).key_up(Keys.SHIFT).perform()
        assert live.text.endswith("top 40, left 48, bottom 120, right 152 of 224 px")
        # Ctrl: a pixel a press; a box never leaves the frame.
        ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.ARROW_RIGHT).key_up(
            Keys.CONTROL).perform()
        assert live.text.endswith("top 40, left 49, bottom 120, right 153 of 224 px")
        _press(driver, Keys.ARROW_LEFT)
        assert live.text.endswith("left 45, bottom 120, right 149 of 224 px")
        _press(driver, *[Keys.ARROW_RIGHT] * 60)
        assert live.text.endswith("left 120, bottom 120, right 224 of 224 px")
        _press(driver, *[Keys.ARROW_LEFT] * 18)
        driver.save_screenshot(str(tmp_path / "keyboard.png"))
        assert _exported(driver, data) == mouse
        # A second box, then Space walks the boxes and Delete removes the selected one.
        _press(driver, "n")
        assert live.text.startswith("New box 2 of 2")
        _press(driver, " ")
        assert live.text.startswith("box 1 of 2")
        _press(driver, " ")
        assert live.text.startswith("box 2 of 2")
        _press(driver, Keys.DELETE)
        assert _exported(driver, data) == mouse
        assert _console_errors(driver) == []
    finally:
        driver.quit()


def test_clear_and_forget_can_be_undone(site, chromium, tmp_path):
    """"Clear this clip" and the Corrections page's "forget" put back exactly what was
    there (the stored item itself: boxes, roles, action frames) with the notice's Undo
    button and with Ctrl+Z; so does Delete."""
    out, _ = site
    ed = _benchmark("editor_driver")
    clip = json.loads((out / "clips.json").read_text())[1]["clip"]
    driver = ed.chrome(str(tmp_path), *chromium)
    try:
        data = ed.open_clip(driver, str(out), clip)
        frames = data["frame_indices"]
        ed.draw_box(driver, data, frames[0], _source_box(data, [30, 30, 120, 140]))
        ed.draw_box(driver, data, frames[2], {"box": _source_box(data, [60, 20, 200, 100]),
                                              "role": "hand"})
        ed.mark_active(driver, data, frames[1:3])
        kept = _snapshot(driver, data)
        status = _status(driver)
        assert status.startswith("2 boxes on 2 frames, 2 action frames")
        bar = driver.find_element(By.CSS_SELECTOR, ".undo")
        for how in ("button", "ctrl+z"):
            driver.find_element(By.ID, "clear-clip").click()
            assert json.loads(_snapshot(driver, data))["frames"] == {}
            assert _status(driver).startswith("0 boxes on 0 frames, 0 action frames")
            assert bar.is_displayed() and bar.text.startswith("Cleared this clip.")
            if how == "button":
                driver.save_screenshot(str(tmp_path / "cleared.png"))
                driver.find_element(By.ID, "undo").click()
            else:
                _ctrl_z(driver)
            assert _snapshot(driver, data) == kept, how
            assert _status(driver) == status
            ticks = driver.find_elements(By.CSS_SELECTOR, "#frames input.active")
            assert [t.is_selected() for t in ticks] == [False, True, True, False]
            assert "Undone: cleared this clip" in bar.text
        # Delete, then Ctrl+Z: the box is back, role and all.
        ed.drag(driver, ed.frame_canvas(driver, data, frames[2]), (100, 60), (100, 60))
        _press(driver, Keys.DELETE)
        assert str(frames[2]) not in json.loads(_snapshot(driver, data))["frames"]
        _ctrl_z(driver)
        assert _snapshot(driver, data) == kept
        assert _console_errors(driver) == []

        driver.get((out / "corrections.html").as_uri())
        row = f'#corrections tbody tr[data-clip="{clip}"]'
        assert driver.find_element(By.CSS_SELECTOR, row).text.count("this browser") == 1
        for how in ("button", "ctrl+z"):
            driver.find_element(By.CSS_SELECTOR, f"{row} button").click()
            assert not driver.find_elements(By.CSS_SELECTOR, row)
            bar = driver.find_element(By.CSS_SELECTOR, ".undo")
            assert bar.is_displayed() and bar.text.startswith("Forgot ")
            if how == "button":
                driver.save_screenshot(str(tmp_path / "forgot.png"))
                driver.find_element(By.ID, "undo").click()
            else:
                _ctrl_z(driver)
            assert driver.find_elements(By.CSS_SELECTOR, row), how
            driver.save_screenshot(str(tmp_path / f"forget_undone_{how}.png"))
            assert _snapshot(driver, data) == kept
        _ctrl_z(driver)  # nothing left to undo on this page: said, nothing changed
        assert bar.text.startswith("Nothing to undo") and _snapshot(driver, data) == kept
        assert _console_errors(driver) == []
    finally:
        driver.quit()


def test_a_clip_from_the_corrections_file_says_where_it_is_kept(site, chromium, tmp_path):
    """A clip loaded with --corrections is "from the corrections file" until an edit
    stores it in the browser ("kept in this browser"); selecting a box changes nothing, and
    undoing the first edit makes it the file's again."""
    out, _ = site
    ed = _benchmark("editor_driver")
    copy = tmp_path / "site"
    shutil.copytree(out, copy)
    clip = json.loads((out / "clips.json").read_text())[0]["clip"]
    driver = ed.chrome(str(tmp_path), *chromium)
    try:
        data = ed.open_clip(driver, str(copy), clip)
        frames = data["frame_indices"]
        box = [round(v, 6) for v in _source_box(data, [40, 40, 160, 160])]
        (copy / "assets" / "corrections-data.js").write_text(stabn_tf.report.pages
                                                             .corrections_script(
            {clip: {"frames": {str(frames[1]): [box]}, "active_frames": [frames[1]]}}))
        driver.refresh()
        file_label = "1 box on 1 frame, 1 action frame (from the corrections file"
        assert _status(driver).startswith(file_label)
        assert "kept in this browser" not in _status(driver)
        assert _snapshot(driver, data) is None
        driver.execute_script("document.getElementById('editor-status').scrollIntoView();")
        driver.save_screenshot(str(tmp_path / "from_file.png"))
        # A click selects the file's box: nothing changes, nothing is stored.
        ed.drag(driver, ed.frame_canvas(driver, data, frames[1]), (100, 100), (100, 100))
        assert driver.find_element(By.ID, "delete-box").is_enabled()
        assert _snapshot(driver, data) is None and _status(driver).startswith(file_label)
        ed.mark_active(driver, data, [frames[2]])
        assert _status(driver) == "1 box on 1 frame, 2 action frames (kept in this browser)"
        assert json.loads(_snapshot(driver, data))["frames"] == {str(frames[1]): [box]}
        _ctrl_z(driver)
        assert _snapshot(driver, data) is None and _status(driver).startswith(file_label)
        driver.find_element(By.ID, "clear-clip").click()
        assert _status(driver) == "0 boxes on 0 frames, 0 action frames (kept in this browser)"
        driver.find_element(By.ID, "undo").click()
        assert _snapshot(driver, data) is None and _status(driver).startswith(file_label)
        driver.get((copy / "corrections.html").as_uri())
        cells = driver.find_elements(By.CSS_SELECTOR,
                                     f'#corrections tbody tr[data-clip="{clip}"] td')
        assert cells[-2].text == "corrections file"
        assert _console_errors(driver) == []
    finally:
        driver.quit()


NASTY = ("<script>alert(1)</script>", "\"quote'</b>", "line\u2028sep</script>&amp;")


@pytest.fixture(scope="module")
def nasty_site(tiny_tfrecords, tmp_path_factory, named_clips):
    """A site whose class names and clip ids hold markup, quotes and U+2028."""
    root = tmp_path_factory.mktemp("nasty")
    named_clips(root / "validation-00000-of-00001.tfrecord", NASTY)
    names = list(NASTY) + [f"class {i}" for i in range(len(NASTY), 6)]
    keras.utils.set_random_seed(1)
    model = stabn_tf.build_stabn(num_classes=6, num_frames=4, image_size=32, depth=18,
                                 width_multiplier=0.125, class_names=names)
    model.save(root / "nasty.keras")
    corrections = root / "corrections.json"
    corrections.write_text(json.dumps({NASTY[2]: {"frames": {"0": [[0.1, 0.1, 0.5, 0.5]]}},
                                       "</script><script>alert(3)</script>": {"frames": {}}}))
    out = root / "site"
    build_report(checkpoint=str(root / "nasty.keras"), output_dir=str(out),
                 files=str(root / "validation-*.tfrecord"), tables=[], progress=False,
                 log=lambda text: None, corrections=str(corrections))
    return out


@pytest.mark.filterwarnings("ignore:Glyph 8232")  # matplotlib has no U+2028 to draw
def test_markup_in_names_is_shown_as_text(nasty_site, chromium):
    out = nasty_site
    driver = _browser(chromium)
    try:
        driver.get((out / "gallery.html").as_uri())
        names = [e.get_attribute("title") for e in
                 driver.find_elements(By.CSS_SELECTOR, "#grid .card .name")]
        assert sorted(names) == sorted(NASTY)
        options = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#class-filter option")]
        assert NASTY[0] in options and NASTY[1] in options
        for stem in (c["stem"] for c in json.loads((out / "clips.json").read_text())):
            driver.get((out / "clips" / f"{stem}.html").as_uri())
            clip = json.loads((out / "clips.json").read_text())
            clip = next(c for c in clip if c["stem"] == stem)
            assert driver.find_element(By.TAG_NAME, "h1").get_attribute(
                "textContent") == clip["clip"]
            data = json.loads(driver.find_element(By.ID, "editor-data")
                              .get_attribute("textContent"))
            assert data["clip"] == clip["clip"]
            assert driver.execute_script("return typeof window.STABN_STORE") == "object"
        driver.get((out / "corrections.html").as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "#corrections tbody tr")
        assert [r.get_attribute("data-clip") for r in rows] == [NASTY[2]]
        driver.get((out / "index.html").as_uri())
        cells = [c.get_attribute("textContent") for c in driver.find_elements(By.TAG_NAME, "td")]
        assert NASTY[0] in cells and NASTY[1] in cells
        # Nothing ran: no alert is open, no script error was logged.
        assert driver.execute_script("return 1") == 1
        assert _console_errors(driver) == []
    finally:
        driver.quit()
    for page in [out / "index.html", out / "gallery.html", out / "corrections.html",
                 *(out / "clips").glob("*.html")]:
        text = page.read_text()
        assert "<script>alert" not in text and "\"quote'</b>" not in text
    gallery = (out / "gallery.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in gallery and "&#34;quote&#39;" in gallery
    assert "<" not in (out / "assets" / "corrections-data.js").read_text().split("=", 1)[1]


def test_a_large_gallery_draws_only_the_cards_in_view(chromium, tmp_path):
    """3,000 cards: a few dozen in the page at a time; filters, sorts and scrolling reach
    every card, each a link to its clip page."""
    bench = _benchmark("scale_report")
    entries = bench.generated_entries(3000, thumbs=False)
    errors = sorted(e["stem"] for e in entries
                    if e["records"][0]["predicted"] != e["true_label"])
    page = bench.write_gallery(tmp_path, entries)
    driver = _browser(chromium)
    try:
        driver.get(page.as_uri())
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
        assert 0 < len(cards) < 200
        assert driver.find_element(By.ID, "shown").text == "3000 of 3000 clips"
        confidences = [float(c.get_attribute("data-confidence")) for c in cards]
        lowest = sorted(e["records"][0]["confidence"] for e in entries)[:len(cards)]
        assert confidences == lowest  # least confident first
        assert cards[0].get_attribute("href").endswith(
            f"/clips/{cards[0].get_attribute('data-name')}.html")
        driver.find_element(By.ID, "errors-only").click()
        assert driver.find_element(By.ID, "shown").text == f"{len(errors)} of 3000 clips"
        Select(driver.find_element(By.ID, "sort")).select_by_value("name:asc")
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
        assert [c.get_attribute("data-name") for c in cards] == errors[:len(cards)]
        assert all(c.get_attribute("data-error") == "1" for c in cards)
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")
        driver.execute_script("return new Promise(function (done) {"
                              " requestAnimationFrame(function () { setTimeout(done, 0); }); });")
        cards = driver.find_elements(By.CSS_SELECTOR, "#grid .card")
        assert 0 < len(cards) < 200 and cards[-1].get_attribute("data-name") == errors[-1]
        assert cards[-1].is_displayed()
        cls = entries[0]["true_label"]
        Select(driver.find_element(By.ID, "class-filter")).select_by_value(str(cls))
        wanted = [e["stem"] for e in entries if e["stem"] in set(errors)
                  and e["true_label"] == cls]
        assert driver.find_element(By.ID, "shown").text == f"{len(wanted)} of 3000 clips"
        assert _console_errors(driver) == []
    finally:
        driver.quit()


def _tree(folder: pathlib.Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_any_number_of_workers_draws_the_same_site(checkpoint, tiny_tfrecords, tmp_path):
    """One drawing process or two: the same files, byte for byte; by default no GIF and
    no Grad-CAM panel, `animations=True` adds the GIFs."""
    sites = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        result = build_report(checkpoint=checkpoint, output_dir=str(out),
                              files=_val(tiny_tfrecords), max_clips=3, tables=[],
                              precision="float32", workers=workers, progress=False,
                              log=lambda text: None)
        assert result["clips"] == result["rendered"] == 3 and result["failed"] == 0
        sites[workers] = _tree(out)
    assert sites[1] == sites[2]
    assert not [n for n in sites[1] if n.endswith(".gif") or "gradcam" in n]
    assert len([n for n in sites[1] if n.endswith(".png")]) == 3 + 1  # + confusion matrix
    build_report(checkpoint=checkpoint, output_dir=str(tmp_path / "w1"),
                 files=_val(tiny_tfrecords), max_clips=3, tables=[], precision="float32",
                 animations=True, workers=1, progress=False, log=lambda text: None)
    assert len(list((tmp_path / "w1" / "media").rglob("*.gif"))) == 3


@pytest.mark.slow
def test_sample_and_errors_only_choose_the_clips(site, checkpoint, tiny_tfrecords, tmp_path):
    def clips(**kwargs) -> list[str]:
        out = tmp_path / "_".join(f"{k}{v}" for k, v in kwargs.items())
        build_report(checkpoint=checkpoint, output_dir=str(out), files=_val(tiny_tfrecords),
                     tables=[], precision="float32", workers=1, progress=False,
                     log=lambda text: None, **kwargs)
        return [c["clip"] for c in json.loads((out / "clips.json").read_text())]

    every = [c for c, _ in stabn_tf.report.site.clip_labels(
        _val(tiny_tfrecords), [stabn_tf.report.models.open_model(
            checkpoint, gradcam=False, gradcam_layer=None, log=lambda text: None)])]
    first = clips(sample=4, seed=0)
    assert len(first) == 4 and set(first) < set(every)
    assert set(first) == set(stabn_tf.report.site.sample_clips(every, 4, 0))
    assert clips(sample=4, seed=0) == first
    assert set(clips(sample=4, seed=1)) != set(first)
    assert clips(sample=4, seed=0, max_clips=2) == first[:2]
    # Only the misclassified clips: those of the full site (the first 5 clips).
    wrong = [c["clip"] for c in json.loads((site[0] / "clips.json").read_text())
             if c["predicted"][0] != c["true_label"]]
    assert clips(errors_only=True, max_clips=CLIPS) == wrong


@pytest.mark.slow
def test_a_clip_that_cannot_be_drawn_is_one_line(checkpoint, tiny_tfrecords, tmp_path):
    """A clip whose picture cannot be written: one line naming it, the other clips kept."""
    out = tmp_path / "site"
    names = [c.name for c in tfrecord_clips(_val(tiny_tfrecords),
                                            load_checkpoint(checkpoint).preprocessor,
                                            max_clips=3)]
    blocked = out / "media" / stabn_tf.report.checkpoint_key(checkpoint) / f"{names[1]}.png"
    blocked.mkdir(parents=True)  # a folder where its Figure 3 goes
    said = []
    result = build_report(checkpoint=checkpoint, output_dir=str(out),
                          files=_val(tiny_tfrecords), max_clips=3, tables=[],
                          precision="float32", workers=2, progress=False, log=said.append)
    assert result["clips"] == 2 and result["failed"] == 1
    lines = [line for line in said if names[1] in line]
    assert len(lines) == 1 and lines[0].startswith(f"clip {names[1]!r}: cannot draw it (")
    assert lines[0].endswith("; left out") and "\n" not in lines[0]
    kept = [c["clip"] for c in json.loads((out / "clips.json").read_text())]
    assert kept == [names[0], names[2]]
