"""The explanation browser: generated for a tiny model on a few clips, opened in headless
Chromium (Debian's chromium + chromium-driver, which .ci/run installs: no skip when they
are missing), re-run without drawing anything, a TFLite model beside the Keras one, and
the one-line errors."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

import stabn_tf
from stabn_tf.data import read_labels
from stabn_tf.deploy import openvino, tflite
from stabn_tf.evaluate import EvaluationError, load_checkpoint
from stabn_tf.inference import tfrecord_clips
from stabn_tf.report import build_report

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CLIPS = 5
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _val(tiny_tfrecords) -> str:
    return os.path.join(tiny_tfrecords, "validation-*.tfrecord")


@pytest.fixture(scope="module")
def checkpoint(tiny_tfrecords, tmp_path_factory):
    """A tiny ST-ABN whose perception head favours the second clip's class, so the report
    has both right and wrong clips."""
    keras.utils.set_random_seed(3)
    model = stabn_tf.build_stabn(
        num_classes=12, num_frames=4, image_size=32, depth=18, width_multiplier=0.125,
        class_names=read_labels(os.path.join(tiny_tfrecords, "labels.txt")))
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


def _browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images).filter(function (i) {"
        " return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src; });")


def test_report_in_headless_chromium(site, tmp_path):
    out, result = site
    assert result["clips"] == CLIPS and result["rendered"] == CLIPS
    clips = json.loads((out / "clips.json").read_text())
    truth = {c["stem"]: c for c in clips}
    misclassified = {c["stem"] for c in clips if c["predicted"][0] != c["true_label"]}
    assert 0 < len(misclassified) < CLIPS
    driver = _browser()
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
        driver.find_element(By.ID, "errors-only").click()
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


def test_tflite_model_beside_the_keras_one(checkpoint, tiny_tfrecords, tmp_path):
    lite = tmp_path / "stabn.tflite"
    tflite.export_tflite(load_checkpoint(checkpoint), str(lite))
    result = build_report(checkpoint=checkpoint, compare_checkpoint=str(lite),
                          output_dir=str(tmp_path / "site"), files=_val(tiny_tfrecords),
                          max_clips=2, tables=[], progress=False, log=lambda text: None)
    clips = json.loads((tmp_path / "site" / "clips.json").read_text())
    assert result["clips"] == 2 and all(len(c["predicted"]) == 2 for c in clips)
    for c in clips:  # the float export explains like the Keras model
        assert c["comparison"]["agree"]
        assert c["comparison"]["mt_correlation"] > 0.99
    page = (tmp_path / "site" / "index.html").read_text()
    assert "TFLite" in page and "Mt correlation" in page


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


def test_bad_inputs_fail_in_one_line(checkpoint, tiny_tfrecords, tmp_path):
    def report(**kwargs):
        settings = dict(checkpoint=checkpoint, output_dir=str(tmp_path / "out"),
                        files=_val(tiny_tfrecords), tables=[], progress=False,
                        log=lambda text: None)
        build_report(**{**settings, **kwargs})

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(EvaluationError, match="is a file"):
        report(output_dir=str(a_file))
    with pytest.raises(EvaluationError, match="not writable"):
        report(output_dir=str(a_file / "inside"))
    empty = tmp_path / "validation-empty.tfrecord"
    empty.write_bytes(b"")
    with pytest.raises(EvaluationError, match="validation split is empty"):
        report(files=str(empty))
    keras.utils.set_random_seed(0)
    small = stabn_tf.build_stabn(num_classes=3, num_frames=4, image_size=32, depth=18,
                                 width_multiplier=0.125)
    small.save(tmp_path / "three.keras")
    with pytest.raises(EvaluationError, match="do not match"):
        report(checkpoint=str(tmp_path / "three.keras"))
    other = stabn_tf.build_stabn(num_classes=12, num_frames=8, image_size=32, depth=18,
                                 width_multiplier=0.125)
    other.save(tmp_path / "eight.keras")
    with pytest.raises(EvaluationError, match="different clips"):
        report(compare_checkpoint=str(tmp_path / "eight.keras"))
    # The command: one line, status 2.
    done = subprocess.run([sys.executable, "-m", "stabn_tf.report", f"--checkpoint={checkpoint}",
                           f"--output_dir={a_file}", f"--files={_val(tiny_tfrecords)}"],
                          capture_output=True, text=True, env=ENV, timeout=120,
                          cwd=pathlib.Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"stabn_tf.report: error: --output_dir: output directory "
                      f"{str(a_file)!r} is a file, not a directory"]
