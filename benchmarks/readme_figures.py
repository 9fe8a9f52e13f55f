"""Redraws the README's pictures of explanations from the demo models:

    python benchmarks/readme_figures.py --checkpoint=runs/demo/checkpoints/final.keras \\
        --corrected=/tmp/correction_loop/finetune/checkpoints/final.keras

- `docs/explanation_example.png`: Figure 3 of one validation clip (`--clip`), the demo
  model above, the model fine-tuned from 20 corrected clips (`--corrected`, written by
  `benchmarks/correction_loop.py`) below;
- `docs/report_gallery.png` and `docs/editor.png`: the explanation browser over the demo
  model's validation clips (`--report_dir`), its gallery and one clip's editor with boxes
  drawn on the first frames, "Start from the model" on the others, the action ticked and
  the Ms overlay on, in headless Chromium.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

from absl import app, flags
from PIL import Image, ImageDraw

from stabn_tf.explain.figures import _font, figure_png
from stabn_tf.explain.render import prediction_figure
from stabn_tf.inference import open_runner
from stabn_tf.inference.inputs import tfrecord_clips
from stabn_tf.runs import RunDirectory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "runs/demo/checkpoints/final.keras", "The demo model.")
flags.DEFINE_string("corrected", "", "The demo model after the correction loop's fine-tune.")
flags.DEFINE_string("clip", "1351", "The validation clip of Figure 3 and the editor.")
flags.DEFINE_string("report_dir", "/tmp/readme_report", "Where the browser is built.")
flags.DEFINE_integer("max_clips", 0, "Validation clips in the browser (0: all).")
flags.DEFINE_bool("browser", True, "Redraw the gallery and editor pictures.")
flags.DEFINE_string("docs", os.path.join(REPO, "docs"), "Where the pictures go.")


def _panel(checkpoint: str, pattern: str, heading: str) -> Image.Image:
    runner = open_runner(checkpoint, precision="float32")
    clip, = tfrecord_clips(pattern, runner.preprocessor, clip_ids=[FLAGS.clip])
    with Image.open(io.BytesIO(figure_png(prediction_figure(runner.predict(clip))))) as im:
        figure = im.convert("RGB")
    header = Image.new("RGB", (figure.width, 32), "#e6e9f0")
    ImageDraw.Draw(header).text((10, 16), heading, fill="black", font=_font(18), anchor="lm")
    panel = Image.new("RGB", (figure.width, figure.height + 32), "white")
    panel.paste(header, (0, 0))
    panel.paste(figure, (0, 32))
    return panel


def explanation_example(pattern: str) -> None:
    panels = [_panel(FLAGS.checkpoint, pattern,
                     "Unsupervised (the paper's recipe, configs/demo.flags)"),
              _panel(FLAGS.corrected, pattern, "Fine-tuned from 20 corrected clips "
                     "(configs/correction_finetune.flags)")]
    width = max(p.width for p in panels)
    out = Image.new("RGB", (width, sum(p.height for p in panels)), "white")
    y = 0
    for panel in panels:
        out.paste(panel, (0, y))
        y += panel.height
    out.save(os.path.join(FLAGS.docs, "explanation_example.png"), optimize=True)


def browser_pictures(pattern: str) -> None:
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import editor_driver
    from selenium.webdriver.common.by import By

    site = FLAGS.report_dir
    subprocess.check_call([sys.executable, "-m", "stabn_tf.report",
                           f"--checkpoint={FLAGS.checkpoint}", f"--files={pattern}",
                           f"--output_dir={site}", "--tables=none", "--precision=float32",
                           f"--max_clips={FLAGS.max_clips}"],
                          cwd=REPO)
    pages = editor_driver.clip_pages(site)
    clip = FLAGS.clip if FLAGS.clip in pages else sorted(pages)[0]
    raw = os.path.join(os.path.dirname(os.path.dirname(pattern)), "raw")
    with open(os.path.join(raw, "something-something-v2-groundtruth.json")) as f:
        truth = json.load(f)[clip]
    downloads = os.path.join(site, "downloads")
    os.makedirs(downloads, exist_ok=True)
    driver = editor_driver.chrome(downloads, shutil.which("chromium"),
                                  shutil.which("chromedriver"), window=(900, 640))
    try:
        driver.get("file://" + os.path.abspath(os.path.join(site, "gallery.html")))
        driver.save_screenshot(os.path.join(FLAGS.docs, "report_gallery.png"))
        driver.set_window_size(1240, 1000)
        data = editor_driver.open_clip(driver, site, clip)
        shown = data["frame_indices"]
        for frame in shown[:5]:
            editor_driver.draw_box(driver, data, frame, truth["box"][frame])
        editor_driver.mark_active(driver, data, [i for i in shown if truth["active"][i]])
        driver.find_element(By.ID, "propose").click()
        driver.find_element(By.ID, "overlay").click()
        editor = driver.find_element(By.ID, "editor")
        driver.execute_script("arguments[0].scrollIntoView();", editor)
        with Image.open(io.BytesIO(editor.screenshot_as_png)) as picture:
            picture.save(os.path.join(FLAGS.docs, "editor.png"), optimize=True)
    finally:
        driver.quit()


def main(argv) -> None:
    del argv
    _, pattern = RunDirectory.of_checkpoint(FLAGS.checkpoint).data_patterns()
    if FLAGS.corrected:
        explanation_example(pattern)
    if FLAGS.browser:
        browser_pictures(pattern)


if __name__ == "__main__":
    app.run(main)
