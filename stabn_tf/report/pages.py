"""The report's pages: Jinja2 templates (`templates/`, autoescaped) filled from the clips'
records and the evaluation's results, and the site's CSS and JavaScript (`static/`)
copied beside them; no framework, no CDN, every link relative."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Sequence
from importlib import resources

import jinja2
import markupsafe
import numpy as np

from stabn_tf.disk import write_atomic
from stabn_tf.evaluate.tables import Table, number, percent
from stabn_tf.explain.figures import OVERLAY_ALPHA, SPATIAL_CMAP, colormap_stops, grid_size
from stabn_tf.report import charts
from stabn_tf.report.clips import THUMB_SUFFIX
from stabn_tf.report.models import ReportModel

#: The site's own scripts and style sheet, copied into `assets/`.
STATIC_FILES = ("report.css", "gallery.js", "corrections-store.js", "undo.js", "editor.js",
                "corrections.js")
#: Side of a frame in the clip page's editor, in CSS pixels.
EDITOR_DISPLAY = 224
TABLE_TITLES = {"table1": "Table 1: accuracy", "table2": "Table 2: attention inversion",
                "explanation": "Explanation quality against ground truth"}


def script_json(value) -> str:
    """JSON that is safe inside a `<script>` element and an HTML attribute: `<`, `>`, `&`,
    `'` and the JavaScript line separators U+2028/2029 are written as `\\u` escapes, so
    no string in the data can end the element or the statement."""
    text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("'", "\\u0027")):
        text = text.replace(char, escape)
    return text


def _inline_code(text: str) -> markupsafe.Markup:
    """Escaped text with Markdown's `code` spans as <code> (the tables' notes use them)."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


@functools.cache  # one per process: Jinja2 compiles each template once per environment
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("stabn_tf.report", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["tojson"] = lambda value: markupsafe.Markup(script_json(value))
    env.filters["inline_code"] = _inline_code
    return env


def render(template: str, **context) -> str:
    """One page from its template; `depth` (folders below the site's root) sets `up`."""
    depth = context.pop("depth", 0)
    return _environment().get_template(template).render(up="../" * depth, **context)


def _pct(value: float | None) -> str:
    text = percent(value)
    return text if text == "—" else f"{text}%"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _is_error(entry: dict, record: dict) -> bool:
    return entry["true_label"] is not None and record["predicted"] != entry["true_label"]


def _media(model: ReportModel, name: str, depth: int = 0) -> str:
    return f"{'../' * depth}media/{model.key}/{name}"


def _confusion(output_dir: str, model: ReportModel, entries: Sequence[dict], index: int
               ) -> str | None:
    """The model's confusion matrix PNG, named by its counts (so it is drawn once)."""
    labelled = [e for e in entries if e["true_label"] is not None]
    if not labelled:
        return None
    names = model.runner.class_names
    counts = charts.confusion_counts([e["true_label"] for e in labelled],
                                     [e["records"][index]["predicted"] for e in labelled],
                                     len(names))
    digest = hashlib.sha256(counts.tobytes() + "\n".join(names).encode()).hexdigest()[:10]
    name = f"confusion-{digest}.png"
    path = os.path.join(output_dir, "media", model.key, name)
    if not os.path.exists(path):
        png = charts.confusion_png(counts, names, f"{model.label}: {len(labelled)} clips")
        write_atomic(path, png)
    return _media(model, name)


def _model_rows(models: Sequence[ReportModel], entries: Sequence[dict]) -> list[list[str]]:
    rows = []
    for i, model in enumerate(models):
        records = [e["records"][i] for e in entries]
        labelled = [(e, r) for e, r in zip(entries, records) if e["true_label"] is not None]
        top1 = (_mean([0.0 if _is_error(e, r) else 1.0 for e, r in labelled])
                if labelled else None)
        for label, part in (("", records),
                            (" — Grad-CAM", [r["gradcam"] for r in records if "gradcam" in r])):
            if not part:
                continue
            scores = [r["scores"] for r in part]
            first = label == ""
            rows.append([model.label + label, model.kind, markupsafe.Markup(
                "<code>{}</code>").format(model.key), str(len(records)),
                _pct(top1) if first else "",
                number(_mean([r["confidence"] for r in records])) if first else "",
                *(number(_mean([s[k] for s in scores]))
                  for k in ("pointing_game", "mass_in_box", "temporal_auroc"))])
    return rows


def _per_class(models: Sequence[ReportModel], entries: Sequence[dict]) -> list[list[str]]:
    rows = []
    for k, name in enumerate(models[0].runner.class_names):
        chosen = [e for e in entries if e["true_label"] == k]
        if chosen:
            rows.append([name, str(len(chosen)), *(
                _pct(_mean([0.0 if _is_error(e, e["records"][i]) else 1.0 for e in chosen]))
                for i in range(len(models)))])
    return rows


def summary_page(output_dir: str, models: Sequence[ReportModel], entries: Sequence[dict],
                 tables: Sequence[dict[str, Table]]) -> str:
    comparison = None
    if len(models) == 2:
        c = [e["comparison"] for e in entries]
        comparison = {"title": f"{models[0].label} vs {models[1].label}",
                      "row": [_pct(_mean([1.0 if x["agree"] else 0.0 for x in c])),
                              number(_mean([x["mt_correlation"] for x in c])),
                              number(_mean([x["ms_correlation"] for x in c]))]}
    evaluations = [(m.label, [(TABLE_TITLES[k], t) for k, t in ts.items()])
                   for m, ts in zip(models, tables) if ts]
    confusion = [(m.label, _confusion(output_dir, m, entries, i)) for i, m in enumerate(models)]
    return render("summary.html", clips=len(entries), model_rows=_model_rows(models, entries),
                  comparison=comparison, evaluations=evaluations,
                  per_class_header=["Class", "Clips", *(f"top-1 {m.label}" for m in models)],
                  per_class=_per_class(models, entries),
                  confusion=[(label, src) for label, src in confusion if src])


#: The columns of each card in the gallery's data (`gallery.js` reads them by name):
#: true is -1 where unknown, thumb 0/1, mt the per-frame temporal weights in percent.
CARD_FIELDS = ("stem", "clip", "true", "predicted", "confidence", "spread", "error",
               "disagree", "thumb", "mt", "others")


def _card(models: Sequence[ReportModel], entry: dict, names: Sequence[str]) -> list:
    first = entry["records"][0]
    comparison = entry.get("comparison")
    true = entry["true_label"]
    return [entry["stem"], entry["clip"], -1 if true is None else true, first["predicted"],
            first["confidence"], first["mt_spread"], int(_is_error(entry, first)),
            int(bool(comparison) and not comparison["agree"]),
            int("thumb" in first["files"]), [round(100 * v) for v in first["temporal"]],
            [f"{m.label}: {names[r['predicted']]} {r['confidence']:.0%}"
             for m, r in zip(models[1:], entry["records"][1:])]]


def gallery_data(models: Sequence[ReportModel], entries: Sequence[dict]) -> dict:
    """Every card as one compact array (sorted by clip id; the page sorts and filters it
    and draws only the cards in view), the class names and where the thumbnails are."""
    names = models[0].runner.class_names
    return {"media": _media(models[0], ""), "thumb_suffix": THUMB_SUFFIX,
            "classes": list(names), "fields": CARD_FIELDS,
            "cards": [_card(models, e, names) for e in sorted(entries, key=lambda e: e["stem"])]}


def map_scale(record: dict) -> dict | None:
    """The spatial map's colour scale as the HTML draws it (the editor's overlay, the
    gallery's legend): the colour map the record's pictures use, as colour stops from 0
    to 1 and a CSS gradient, the pictures' opacity and the map's grid size; None for a
    record without maps."""
    if not record.get("ms"):
        return None
    stops = colormap_stops(record.get("colormap", SPATIAL_CMAP))
    return {"colormap": record.get("colormap", SPATIAL_CMAP), "stops": stops,
            "gradient": f"linear-gradient(to right, {', '.join(stops)})", "alpha": OVERLAY_ALPHA,
            "grid": grid_size(np.asarray(record["ms"]))}


def gallery_page(models: Sequence[ReportModel], entries: Sequence[dict]) -> str:
    names = models[0].runner.class_names
    present = sorted({e["true_label"] if e["true_label"] is not None
                      else e["records"][0]["predicted"] for e in entries})
    return render("gallery.html", label=models[0].label,
                  errors=sum(_is_error(e, e["records"][0]) for e in entries),
                  compared=len(models) == 2, classes=[(k, names[k]) for k in present],
                  clips=len(entries), data=gallery_data(models, entries),
                  scale=next(filter(None, (map_scale(e["records"][0]) for e in entries)),
                             None))


def _explanation(model: ReportModel, record: dict, files: dict, heading: str,
                 has_boxes: bool) -> dict:
    gif = files.get("animation") or files.get("gradcam_animation")
    png = files.get("png") or files.get("gradcam_png")
    s = record["scores"]
    return {"heading": heading,
            "scores": [number(s["pointing_game"]), number(s["mass_in_box"]),
                       number(s["temporal_auroc"]), str(s["frames_scored"])]
            if has_boxes else None,
            "gif": _media(model, gif, 1) if gif else None,
            "png": _media(model, png, 1) if png else None}


def editor_data(model: ReportModel, entry: dict, depth: int = 1) -> dict | None:
    """What the clip page's editor needs (None for records without the editor's data):
    the clip's video id, the model's sampled source frames and its centre crop in them
    (boxes drawn on the shown crop are saved in the source frame's coordinates), the
    frames' picture strip (linked from a page `depth` folders below the site's root) and
    the per-frame Ms maps for "Start from the model"."""
    record = entry["records"][0]
    shown = record.get("editor")
    if shown is None or "frames" not in record["files"]:
        return None
    return {"checkpoint": model.key, "clip": entry["clip"], "stem": entry["stem"],
            "frame_indices": record["frame_indices"][0], "crop": shown["crop"],
            "frame_size": shown["frame_size"], "image_size": shown["image_size"],
            "strip": _media(model, record["files"]["frames"], depth), "ms": record.get("ms"),
            "scale": map_scale(record), "display": EDITOR_DISPLAY}


def clip_page(models: Sequence[ReportModel], entries: Sequence[dict], index: int) -> str:
    entry = entries[index]
    names = models[0].runner.class_names
    true = entry["true_label"]
    comparison = entry.get("comparison")
    has_boxes = bool(entry["records"][0].get("has_boxes"))
    shown = []
    for model, record in zip(models, entry["records"]):
        error = _is_error(entry, record)
        method = "attention (Ms, Mt)" if record["method"] == "attention" else "Grad-CAM"
        explanations = [_explanation(model, record, record["files"], method, has_boxes)]
        if "gradcam" in record:
            cam = {k[len("gradcam_"):]: v for k, v in record["files"].items()
                   if k.startswith("gradcam_")}
            explanations.append(_explanation(model, record["gradcam"], cam,
                                             "3D Grad-CAM (predicted class)", has_boxes))
        shown.append({"label": model.label,
                      "verdict": None if true is None else ("wrong" if error else "right"),
                      "top5": [[str(rank), name, f"{p:.1%}"]
                               for rank, (_, name, p) in enumerate(record["top5"], 1)],
                      "explanations": explanations})
    data = editor_data(models[0], entry)
    editor = None if data is None else {
        "data": data, "has_ms": data["ms"] is not None, "display": EDITOR_DISPLAY,
        "frames": data["frame_indices"]}
    return render(
        "clip.html", depth=1, clip=entry["clip"],
        previous=entries[index - 1]["stem"] if index > 0 else None,
        next=entries[index + 1]["stem"] if index + 1 < len(entries) else None,
        true_name=names[true] if true is not None else "unknown",
        first_frame=entry["records"][0]["frame_indices"][0],
        comparison=None if not comparison else (
            f"{models[0].label} vs {models[1].label}: "
            f"{'same prediction' if comparison['agree'] else 'different predictions'}, "
            f"Mt correlation {number(comparison['mt_correlation'])}, Ms correlation "
            f"{number(comparison['ms_correlation'])}"),
        models=shown, editor=editor, model_label=models[0].label)


def corrections_page(models: Sequence[ReportModel], entries: Sequence[dict],
                     loaded: str) -> str:
    clips = {}
    for entry in entries:
        data = editor_data(models[0], entry, depth=0)
        if data is not None:
            data.pop("ms")
            data.pop("scale")
            data["page"] = f"clips/{entry['stem']}.html"
            clips[entry["clip"]] = data
    return render("corrections.html", model_label=models[0].label, loaded=loaded,
                  clips={"checkpoint": models[0].key, "clips": clips})


def corrections_script(corrections: dict) -> str:
    """`assets/corrections-data.js`: a box file loaded with `--corrections`, as a global
    (a page opened from disk cannot fetch JSON)."""
    return ("// Corrections loaded with --corrections (the box format of docs/boxes.md).\n"
            f"window.STABN_CORRECTIONS_FILE = {script_json(corrections)};\n")


def _write(path: str, text: str) -> None:
    """Whole or not at all, and readable by a web server running as another user."""
    write_atomic(path, text)
    os.chmod(path, 0o644)


def write_site(output_dir: str, models: Sequence[ReportModel], entries: Sequence[dict],
               tables: Sequence[dict[str, Table]], corrections: dict | None = None,
               corrections_name: str = "") -> dict[str, str]:
    """Writes every page and asset (cheap: the pictures are already on disk); returns the
    paths of the summary, the gallery and the corrections page."""
    os.makedirs(os.path.join(output_dir, "assets"), exist_ok=True)
    os.makedirs(os.path.join(output_dir, "clips"), exist_ok=True)
    static = resources.files("stabn_tf.report") / "static"
    for name in STATIC_FILES:
        _write(os.path.join(output_dir, "assets", name), (static / name).read_text("utf-8"))
    _write(os.path.join(output_dir, "assets", "corrections-data.js"),
           corrections_script(corrections or {}))
    for i, entry in enumerate(entries):
        _write(os.path.join(output_dir, "clips", f"{entry['stem']}.html"),
               clip_page(models, entries, i))
    paths = {"index": os.path.join(output_dir, "index.html"),
             "gallery": os.path.join(output_dir, "gallery.html"),
             "corrections": os.path.join(output_dir, "corrections.html")}
    _write(paths["gallery"], gallery_page(models, entries))
    _write(paths["index"], summary_page(output_dir, models, entries, tables))
    _write(paths["corrections"], corrections_page(models, entries, corrections_name))
    _write(os.path.join(output_dir, "models.json"), json.dumps(
        [{"label": m.label, "path": m.path, "key": m.key, "kind": m.kind,
          "precision": m.runner.precision_choice.to_json()} for m in models], indent=1))
    _write(os.path.join(output_dir, "clips.json"), json.dumps(
        [{"clip": e["clip"], "stem": e["stem"], "true_label": e["true_label"],
          "predicted": [r["predicted"] for r in e["records"]],
          "confidence": [r["confidence"] for r in e["records"]],
          **({"comparison": e["comparison"]} if "comparison" in e else {})}
         for e in entries], indent=1))
    return paths
