"""Drives the explanation browser's box editor in a real browser (Selenium), the way a
person does: drag to draw each box, pick its role, tick the action frames, export from the
Corrections page. The report's tests use it, and a benchmark can draw the synthetic
ground truth of many clips through the editor with one call:

    driver = editor_driver.chrome(download_dir)
    path = editor_driver.draw_corrections(driver, "runs/demo/report",
                                          {"12": {3: [[0.2, 0.3, 0.6, 0.7]]}},
                                          active={"12": [3, 5]})

Boxes are given as the box file holds them (normalised `[ymin, xmin, ymax, xmax]` of the
full source frame, or `{"box": [...], "role": "hand"}`), keyed by source frame index; the
driver places them on the page's canvas through the model's centre crop, as a person
would see them, so what comes back is the editor's own export.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

#: Seconds to wait for the exported file to appear in the download folder.
DOWNLOAD_WAIT_S = 10.0


def chrome(download_dir: str, binary: str | None = None, driver_path: str | None = None,
           window: tuple[int, int] = (1280, 900)) -> webdriver.Chrome:
    """Headless Chromium whose downloads (the editor's export) land in `download_dir`."""
    options = webdriver.ChromeOptions()
    if binary:
        options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={window[0]},{window[1]}"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": os.path.abspath(download_dir),
        "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(driver_path) if driver_path else Service()
    driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {
        "behavior": "allow", "downloadPath": os.path.abspath(download_dir)})
    return driver


def clip_pages(site_dir: str) -> dict[str, str]:
    """Video id → the file of its clip page in the site."""
    with open(os.path.join(site_dir, "clips.json"), encoding="utf-8") as f:
        return {c["clip"]: os.path.join(site_dir, "clips", f"{c['stem']}.html")
                for c in json.load(f)}


def open_clip(driver, site_dir: str, clip: str) -> dict:
    """Opens `clip`'s page; returns its editor data (frame indices, crop, display size)."""
    driver.get("file://" + os.path.abspath(clip_pages(site_dir)[clip]))
    return json.loads(driver.find_element(By.ID, "editor-data").get_attribute("textContent"))


def frame_canvas(driver, data: dict, frame: int):
    """The canvas of source frame `frame` (one of the model's sampled frames)."""
    if frame not in data["frame_indices"]:
        raise ValueError(f"clip {data['clip']!r}: frame {frame} is not one of the shown "
                         f"frames {data['frame_indices']}")
    t = data["frame_indices"].index(frame)
    canvas = driver.find_element(By.CSS_SELECTOR, f'#frames canvas[data-t="{t}"]')
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", canvas)
    return canvas


def to_canvas(data: dict, box: Sequence[float]) -> list[float]:
    """A source-normalised box → canvas pixels `[y0, x0, y1, x1]` of the shown crop."""
    y, x, h, w = data["crop"]
    d = data["display"]
    return [(box[0] - y) / h * d, (box[1] - x) / w * d, (box[2] - y) / h * d,
            (box[3] - x) / w * d]


def drag(driver, canvas, start: Sequence[float], end: Sequence[float],
         pointer: str = "mouse") -> None:
    """Presses at canvas pixel `start` (y, x), moves to `end` and releases, with a mouse,
    a finger (`pointer="touch"`) or a pen (`"pen"`): WebDriver's own input, which the page
    sees as Pointer Events of that pointerType."""
    size = canvas.size
    y0, x0 = round(start[0]), round(start[1])
    y1, x1 = round(end[0]), round(end[1])
    if pointer == "mouse":
        (ActionChains(driver)
         .move_to_element_with_offset(canvas, x0 - size["width"] // 2,
                                      y0 - size["height"] // 2)
         .click_and_hold().move_by_offset((x1 - x0) // 2, (y1 - y0) // 2)
         .move_by_offset(x1 - x0 - (x1 - x0) // 2, y1 - y0 - (y1 - y0) // 2)
         .release().perform())
        return
    kinds = {"touch": interaction.POINTER_TOUCH, "pen": interaction.POINTER_PEN}
    if pointer not in kinds:
        raise ValueError(f"pointer {pointer!r} is not one of mouse, touch, pen")
    actions = ActionBuilder(driver, mouse=PointerInput(kinds[pointer], pointer))
    centre = size["height"] // 2, size["width"] // 2
    (actions.pointer_action
     .move_to(canvas, x0 - centre[1], y0 - centre[0]).pointer_down()
     .move_to(canvas, (x0 + x1) // 2 - centre[1], (y0 + y1) // 2 - centre[0])
     .move_to(canvas, x1 - centre[1], y1 - centre[0]).pointer_up())
    actions.perform()


def draw_box(driver, data: dict, frame: int, box, role: str | None = None) -> list[int]:
    """Drags out one box (file format, see the module doc) on source frame `frame` and
    sets its role; returns the canvas pixels it was drawn at `[y0, x0, y1, x1]`. A box
    reaching beyond the shown crop is drawn up to its edge, as a person can only draw
    what the page shows."""
    if isinstance(box, Mapping):
        box, role = box["box"], role or box.get("role", "object")
    last = data["display"] - 1
    pixels = [min(max(round(v), 0), last) for v in to_canvas(data, box)]
    # Esc unselects: a press on the selected box would move it instead of drawing.
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    drag(driver, frame_canvas(driver, data, frame), pixels[:2], pixels[2:])
    Select(driver.find_element(By.ID, "box-role")).select_by_value(role or "object")
    return pixels


def mark_active(driver, data: dict, frames: Sequence[int]) -> None:
    """Ticks "action" on the given source frames (each one of the shown frames)."""
    for frame in frames:
        frame_canvas(driver, data, frame)
        t = data["frame_indices"].index(frame)
        tick = driver.find_element(By.CSS_SELECTOR, f'#frames input.active[data-t="{t}"]')
        if not tick.is_selected():
            tick.click()


def export(driver, site_dir: str, output: str, download_dir: str | None = None) -> str:
    """Opens the Corrections page and clicks Export; writes the exported JSON to `output`
    (the downloaded file when `download_dir` is Chrome's download folder, else the text
    the page shows of the same Blob) and returns `output`."""
    driver.get("file://" + os.path.abspath(os.path.join(site_dir, "corrections.html")))
    before = set(os.listdir(download_dir)) if download_dir else set()
    driver.find_element(By.ID, "export").click()
    text = None
    if download_dir:
        deadline = time.monotonic() + DOWNLOAD_WAIT_S
        while text is None and time.monotonic() < deadline:
            new = [n for n in set(os.listdir(download_dir)) - before
                   if n.endswith(".json")]
            if new:
                with open(os.path.join(download_dir, new[0]), encoding="utf-8") as f:
                    text = f.read()
            else:
                time.sleep(0.1)
        if text is None:
            raise RuntimeError(f"the export did not arrive in {download_dir} within "
                               f"{DOWNLOAD_WAIT_S:.0f} s")
    else:
        text = driver.find_element(By.ID, "export-preview").get_attribute("textContent")
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    return output


def draw_corrections(driver, site_dir: str,
                     clip_boxes: Mapping[str, Mapping[int, Sequence]],
                     active: Mapping[str, Sequence[int]] | None = None, *,
                     output: str | None = None, download_dir: str | None = None) -> str:
    """Draws corrections for many clips through the editor and exports them.

    Args:
      driver: a Selenium WebDriver (e.g. `chrome(download_dir)`).
      site_dir: the report's folder (`python -m stabn_tf.report --output_dir`).
      clip_boxes: video id (the converter's, as `clips.json` lists it) → {source frame
        index (one of the model's sampled frames of that clip) → [box, ...]}, each box
        normalised `[ymin, xmin, ymax, xmax]` of the full source frame or
        `{"box": [...], "role": "hand" | "object"}`.
      active: video id → source frame indices (sampled ones) to tick as "action".
      output: where to write the exported JSON (default `<site_dir>/corrections.json`).
      download_dir: Chrome's download folder, to take the downloaded file itself.

    Returns:
      The path of the exported box file (docs/boxes.md format with `active_frames`).
    """
    active = active or {}
    for clip in sorted(set(clip_boxes) | set(active)):
        data = open_clip(driver, site_dir, clip)
        for frame, boxes in sorted(clip_boxes.get(clip, {}).items()):
            for box in boxes:
                draw_box(driver, data, int(frame), box)
        mark_active(driver, data, [int(f) for f in active.get(clip, ())])
    return export(driver, site_dir, output or os.path.join(site_dir, "corrections.json"),
                  download_dir)
