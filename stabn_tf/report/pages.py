"""The report's HTML: summary, gallery and clip pages, with their CSS and the gallery's
small JavaScript, all written here (no framework, no CDN), every link relative."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Sequence

import numpy as np

from stabn_tf.disk import write_atomic
from stabn_tf.evaluate.tables import number, percent
from stabn_tf.report import charts
from stabn_tf.report.models import ReportModel

CSS = """
:root { --fg: #1f2933; --muted: #66788a; --line: #d9e2ec; --ok: #2f855a; --err: #c53030; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); margin: 0; background: #f7f9fb; }
header { background: #243b53; color: #fff; padding: 10px 20px; display: flex; gap: 18px;
         align-items: baseline; flex-wrap: wrap; }
header a { color: #d9e8f5; text-decoration: none; } header a:hover { text-decoration: underline; }
header .brand { font-weight: 600; color: #fff; }
main { padding: 16px 20px; max-width: 1400px; }
h1 { font-size: 20px; margin: 4px 0 12px; } h2 { font-size: 17px; margin: 22px 0 8px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
table { border-collapse: collapse; background: #fff; margin: 6px 0 10px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; }
th { background: #eef2f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.note { color: var(--muted); max-width: 1000px; }
.side { display: flex; gap: 18px; flex-wrap: wrap; align-items: flex-start; }
.side > div { min-width: 0; }
img.figure { max-width: 100%; height: auto; background: #fff; border: 1px solid var(--line); }
.controls { display: flex; gap: 14px; flex-wrap: wrap; align-items: center; background: #fff;
            border: 1px solid var(--line); padding: 8px 12px; margin-bottom: 12px; }
.controls input[type=number] { width: 5em; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(168px, 1fr)); gap: 10px; }
.card { display: block; background: #fff; border: 1px solid var(--line); border-top: 4px solid
        var(--ok); padding: 8px; color: inherit; text-decoration: none; font-size: 12px; }
.card.err { border-top-color: var(--err); }
.card[hidden] { display: none; }
.card:hover { box-shadow: 0 2px 8px rgba(0,0,0,.15); }
.card img { width: 100%; height: auto; display: block; background: #eee; }
.card .name { font-weight: 600; margin-top: 4px; overflow: hidden; text-overflow: ellipsis;
              white-space: nowrap; }
.card .wrong { color: var(--err); } .card .right { color: var(--ok); }
.card .other { color: var(--muted); }
svg.spark { display: block; margin-top: 3px; }
.tag { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px;
       background: #eef2f6; }
.tag.err { background: #fde2e2; color: var(--err); }
.tag.ok { background: #def7ec; color: var(--ok); }
"""

GALLERY_JS = """
(function () {
  'use strict';
  var grid = document.getElementById('grid');
  var cards = Array.prototype.slice.call(grid.querySelectorAll('.card'));
  var control = function (id) { return document.getElementById(id); };
  var errorsOnly = control('errors-only'), disagreeOnly = control('disagree-only');
  var classFilter = control('class-filter'), sortBy = control('sort');
  var low = control('conf-min'), high = control('conf-max'), shown = control('shown');
  function number(input, fallback) {
    var value = parseFloat(input.value);
    return isNaN(value) ? fallback : value;
  }
  function apply() {
    var min = number(low, 0), max = number(high, 1), wanted = classFilter.value, count = 0;
    cards.forEach(function (card) {
      var d = card.dataset, confidence = parseFloat(d.confidence);
      var visible = (!errorsOnly.checked || d.error === '1') &&
        (!disagreeOnly || !disagreeOnly.checked || d.disagree === '1') &&
        (wanted === '' || d.trueClass === wanted ||
         (d.trueClass === '' && d.predicted === wanted)) &&
        confidence >= min - 1e-9 && confidence <= max + 1e-9;
      card.hidden = !visible;
      if (visible) { count += 1; }
    });
    shown.textContent = count + ' of ' + cards.length + ' clips';
    var parts = sortBy.value.split(':'), key = parts[0], sign = parts[1] === 'asc' ? 1 : -1;
    cards.slice().sort(function (a, b) {
      if (key === 'name') { return sign * a.dataset.name.localeCompare(b.dataset.name); }
      return sign * (parseFloat(a.dataset[key]) - parseFloat(b.dataset[key])) ||
        a.dataset.name.localeCompare(b.dataset.name);
    }).forEach(function (card) { grid.appendChild(card); });
  }
  [errorsOnly, disagreeOnly, classFilter, sortBy, low, high].forEach(function (input) {
    if (input) { input.addEventListener('input', apply); input.addEventListener('change', apply); }
  });
  apply();
}());
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    text = percent(value)
    return text if text == "—" else f"{text}%"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _inline(text: str) -> str:
    """Escaped text with Markdown's `code` and **bold** (all the tables use)."""
    text = esc(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_html(text: str) -> str:
    """The evaluation's Markdown (headings, pipe tables, paragraphs) as HTML."""
    out, rows = [], []

    def flush():
        if not rows:
            return
        cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
        body = [r for r in cells[1:] if not all(set(c) <= set("-: ") for c in r)]
        out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
                   + "</tr></thead><tbody>" + "".join(
                       "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>"
                       for r in body) + "</tbody></table>")
        rows.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            rows.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 4)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f'<p class="note">{_inline(line.strip())}</p>')
    flush()
    return "\n".join(out)


def page(title: str, body: str, *, depth: int = 0, script: str = "") -> str:
    """A whole HTML document with the site's header; `depth` folders below the root."""
    up = "../" * depth
    tail = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title>'
            f'<link rel="stylesheet" href="{up}assets/report.css"></head><body>'
            f'<header><span class="brand">ST-ABN explanations</span>'
            f'<a href="{up}index.html">Summary</a><a href="{up}gallery.html">Gallery</a>'
            f"</header><main>{body}</main>{tail}</body></html>\n")


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
        with open(path, "wb") as f:
            f.write(png)
    return _media(model, name)


def _model_rows(models: Sequence[ReportModel], entries: Sequence[dict]) -> str:
    head = ("<tr><th>Model</th><th>Kind</th><th>Content key</th><th>Clips</th><th>top-1</th>"
            "<th>Mean confidence</th><th>Pointing game ↑</th><th>Mass in box ↑</th>"
            "<th>Temporal AUROC ↑</th></tr>")
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
            rows.append(
                f"<tr><td>{esc(model.label + label)}</td><td>{esc(model.kind)}</td>"
                f"<td><code>{esc(model.key)}</code></td><td class=num>{len(records)}</td>"
                f"<td class=num>{_pct(top1) if first else ''}</td><td class=num>"
                f"{number(_mean([r['confidence'] for r in records])) if first else ''}</td>"
                + "".join(f"<td class=num>{number(_mean([s[k] for s in scores]))}</td>"
                          for k in ("pointing_game", "mass_in_box", "temporal_auroc"))
                + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _per_class(models: Sequence[ReportModel], entries: Sequence[dict]) -> str:
    names = models[0].runner.class_names
    head = "<tr><th>Class</th><th>Clips</th>" + "".join(
        f"<th>top-1 {esc(m.label)}</th>" for m in models) + "</tr>"
    rows = []
    for k, name in enumerate(names):
        chosen = [e for e in entries if e["true_label"] == k]
        if not chosen:
            continue
        cells = "".join(
            f"<td class=num>{_pct(_mean([0.0 if _is_error(e, e['records'][i]) else 1.0 for e in chosen]))}</td>"  # noqa: E501
            for i in range(len(models)))
        rows.append(f"<tr><td>{esc(name)}</td><td class=num>{len(chosen)}</td>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>" if rows else \
        '<p class="note">The clips carry no labels.</p>'


def summary_page(output_dir: str, models: Sequence[ReportModel], entries: Sequence[dict],
                 markdown: Sequence[dict[str, str]]) -> str:
    parts = [f"<h1>Summary: {len(entries)} validation clips</h1>",
             "<h2>Models</h2>", _model_rows(models, entries),
             '<p class="note">Scores per clip, averaged over the clips shown here: pointing '
             "game and mass in box over active frames with the object visible, temporal AUROC "
             "of active vs static frames (— where the data has no ground truth).</p>"]
    if len(models) == 2:
        comparisons = [e["comparison"] for e in entries]
        parts.append(
            f"<h2>{esc(models[0].label)} vs {esc(models[1].label)}</h2><table><tr><th>Same "
            "prediction</th><th>Mt correlation</th><th>Ms correlation</th></tr><tr>"
            f"<td class=num>{_pct(_mean([1.0 if c['agree'] else 0.0 for c in comparisons]))}"
            f"</td><td class=num>{number(_mean([c['mt_correlation'] for c in comparisons]))}</td>"
            f"<td class=num>{number(_mean([c['ms_correlation'] for c in comparisons]))}</td>"
            "</tr></table><p class=\"note\">Pearson correlation of the two models' temporal "
            "weights, and of their spatial maps frame by frame, averaged over clips.</p>")
    tables = [(m, md) for m, md in zip(models, markdown) if md]
    if tables:
        parts.append("<h2>Evaluation tables</h2>")
        titles = {"table1": "Table 1: accuracy", "table2": "Table 2: attention inversion",
                  "explanation": "Explanation quality against ground truth"}
        blocks = []
        for model, md in tables:
            body = "".join(f"<h3>{titles[k]}</h3>{markdown_html(v)}" for k, v in md.items())
            blocks.append(f"<div><h3>{esc(model.label)}</h3>{body}</div>")
        parts.append(f'<div class="side">{"".join(blocks)}</div>')
    parts += ["<h2>top-1 per class</h2>", _per_class(models, entries)]
    pictures = [(m, _confusion(output_dir, m, entries, i)) for i, m in enumerate(models)]
    pictures = [(m, p) for m, p in pictures if p]
    if pictures:
        parts.append("<h2>Confusion matrix</h2><div class=\"side\">" + "".join(
            f'<div><img class="figure" src="{esc(p)}" alt="confusion matrix of '
            f'{esc(m.label)}"></div>' for m, p in pictures) + "</div>")
    return page("ST-ABN report: summary", "".join(parts))


def _card(models: Sequence[ReportModel], entry: dict, names: Sequence[str]) -> str:
    first = entry["records"][0]
    error = _is_error(entry, first)
    true = entry["true_label"]
    comparison = entry.get("comparison")
    data = {"name": entry["stem"], "true-class": "" if true is None else true,
            "predicted": first["predicted"], "confidence": f"{first['confidence']:.6f}",
            "spread": f"{first['mt_spread']:.6f}", "error": int(error),
            "disagree": int(bool(comparison) and not comparison["agree"])}
    attributes = " ".join(f'data-{k}="{esc(v)}"' for k, v in data.items())
    thumb = first["files"].get("thumb")
    picture = (f'<img src="{esc(_media(models[0], thumb))}" alt="" loading="lazy" '
               f'width="144" height="144">' if thumb else "")
    verdict = "wrong" if error else "right"
    lines = [f'<div class="name" title="{esc(entry["clip"])}">{esc(entry["clip"])}</div>']
    if true is not None:
        lines.append(f"<div>true: {esc(names[true])}</div>")
    lines.append(f'<div class="{verdict}">predicted: {esc(names[first["predicted"]])} '
                 f'<b>{first["confidence"]:.0%}</b></div>')
    lines.append(charts.sparkline_svg(first["temporal"]))
    for model, record in zip(models[1:], entry["records"][1:]):
        lines.append(f'<div class="other">{esc(model.label)}: '
                     f'{esc(names[record["predicted"]])} {record["confidence"]:.0%}</div>')
    return (f'<a class="card{" err" if error else ""}" href="clips/{esc(entry["stem"])}.html" '
            f'{attributes}>{picture}{"".join(lines)}</a>')


def gallery_page(models: Sequence[ReportModel], entries: Sequence[dict]) -> str:
    names = models[0].runner.class_names
    present = sorted({e["true_label"] if e["true_label"] is not None
                      else e["records"][0]["predicted"] for e in entries})
    options = "".join(f'<option value="{k}">{esc(names[k])}</option>' for k in present)
    errors = sum(_is_error(e, e["records"][0]) for e in entries)
    disagree = ('<label><input type="checkbox" id="disagree-only"> models disagree</label>'
                if len(models) == 2 else "")
    controls = (
        '<div class="controls">'
        f'<label><input type="checkbox" id="errors-only"> errors only ({errors})</label>'
        f'{disagree}<label>class <select id="class-filter"><option value="">all classes'
        f"</option>{options}</select></label>"
        '<label>confidence <input type="number" id="conf-min" min="0" max="1" step="0.05" '
        'value="0"> to <input type="number" id="conf-max" min="0" max="1" step="0.05" '
        'value="1"></label>'
        '<label>sort <select id="sort">'
        '<option value="confidence:asc" selected>confidence, lowest first</option>'
        '<option value="name:asc">clip id</option>'
        '<option value="confidence:desc">confidence, highest first</option>'
        '<option value="spread:desc">Mt spread, largest first</option>'
        '<option value="spread:asc">Mt spread, smallest first</option></select></label>'
        f'<span id="shown">{len(entries)} clips</span></div>')
    # Least confident first, as the default sort shows them (and without JavaScript too).
    ordered = sorted(entries, key=lambda e: (e["records"][0]["confidence"], e["stem"]))
    cards = "\n".join(_card(models, e, names) for e in ordered)
    label = models[0].label
    body = (f"<h1>Gallery: {esc(label)}</h1><p class=\"note\">Thumbnail: the frame with the "
            "highest temporal weight, spatial map overlaid. Curve: the weight of each frame "
            f"(Mt). Red top border: misclassified by {esc(label)}. Least confident first.</p>"
            f'{controls}<div id="grid">{cards}</div>')
    return page("ST-ABN report: gallery", body, script=GALLERY_JS)


def _top5(record: dict) -> str:
    rows = "".join(f"<tr><td>{rank}</td><td>{esc(name)}</td><td class=num>{p:.1%}</td></tr>"
                   for rank, (_, name, p) in enumerate(record["top5"], 1))
    return f"<table><tr><th>#</th><th>Class</th><th>p</th></tr>{rows}</table>"


def _scores(record: dict, has_boxes: bool) -> str:
    if not has_boxes:
        return '<p class="note">No ground truth for this clip.</p>'
    s = record["scores"]
    return ("<table><tr><th>Pointing game</th><th>Mass in box</th><th>Temporal AUROC</th>"
            f"<th>Frames scored</th></tr><tr><td class=num>{number(s['pointing_game'])}</td>"
            f"<td class=num>{number(s['mass_in_box'])}</td><td class=num>"
            f"{number(s['temporal_auroc'])}</td><td class=num>{s['frames_scored']}</td></tr>"
            "</table>")


def _explanation(model: ReportModel, record: dict, files: dict, heading: str,
                 has_boxes: bool) -> str:
    gif = files.get("animation") or files.get("gradcam_animation")
    png = files.get("png") or files.get("gradcam_png")
    return (f"<h3>{esc(heading)}</h3>{_scores(record, has_boxes)}"
            f'<div class="side"><div>'
            + (f'<img class="figure" src="{esc(_media(model, gif, 1))}" alt="animated '
               f'overlay" width="224">' if gif else "")
            + "</div><div>"
            + (f'<img class="figure" src="{esc(_media(model, png, 1))}" alt="Figure 3">'
               if png else "")
            + "</div></div>")


def clip_page(models: Sequence[ReportModel], entries: Sequence[dict], index: int) -> str:
    entry = entries[index]
    names = models[0].runner.class_names
    links = []
    if index > 0:
        links.append(f'<a href="{esc(entries[index - 1]["stem"])}.html">← previous</a>')
    links.append('<a href="../gallery.html">gallery</a>')
    if index + 1 < len(entries):
        links.append(f'<a href="{esc(entries[index + 1]["stem"])}.html">next →</a>')
    true = entry["true_label"]
    parts = [f"<p>{' · '.join(links)}</p><h1>{esc(entry['clip'])}</h1>",
             f"<p>true class: <b>{esc(names[true]) if true is not None else 'unknown'}</b>"
             f" · frames {esc(entry['records'][0]['frame_indices'][0])}</p>"]
    comparison = entry.get("comparison")
    if comparison:
        parts.append(f"<p>{esc(models[0].label)} vs {esc(models[1].label)}: "
                     f"{'same prediction' if comparison['agree'] else 'different predictions'}"
                     f", Mt correlation {number(comparison['mt_correlation'])}, Ms correlation "
                     f"{number(comparison['ms_correlation'])}</p>")
    has_boxes = bool(entry["records"][0].get("has_boxes"))
    for model, record in zip(models, entry["records"]):
        error = _is_error(entry, record)
        verdict = ("" if true is None else
                   f' <span class="tag {"err" if error else "ok"}">'
                   f'{"wrong" if error else "right"}</span>')
        method = "attention (Ms, Mt)" if record["method"] == "attention" else "Grad-CAM"
        parts.append(f"<h2>{esc(model.label)}{verdict}</h2>"
                     f'<div class="side"><div>{_top5(record)}</div></div>')
        parts.append(_explanation(model, record, record["files"], method, has_boxes))
        if "gradcam" in record:
            cam = {k[len("gradcam_"):]: v for k, v in record["files"].items()
                   if k.startswith("gradcam_")}
            parts.append(_explanation(model, record["gradcam"], cam,
                                      "3D Grad-CAM (predicted class)", has_boxes))
    return page(f"{entry['clip']}: ST-ABN explanation", "".join(parts), depth=1)


def _write(path: str, text: str) -> None:
    """Whole or not at all, and readable by a web server running as another user."""
    write_atomic(path, text)
    os.chmod(path, 0o644)


def write_site(output_dir: str, models: Sequence[ReportModel], entries: Sequence[dict],
               markdown: Sequence[dict[str, str]]) -> dict[str, str]:
    """Writes every page (cheap: the pictures are already on disk); returns the paths of
    the summary and the gallery."""
    os.makedirs(os.path.join(output_dir, "assets"), exist_ok=True)
    os.makedirs(os.path.join(output_dir, "clips"), exist_ok=True)
    _write(os.path.join(output_dir, "assets", "report.css"), CSS.lstrip())
    for i, entry in enumerate(entries):
        _write(os.path.join(output_dir, "clips", f"{entry['stem']}.html"),
                     clip_page(models, entries, i))
    paths = {"index": os.path.join(output_dir, "index.html"),
             "gallery": os.path.join(output_dir, "gallery.html")}
    _write(paths["gallery"], gallery_page(models, entries))
    _write(paths["index"], summary_page(output_dir, models, entries, markdown))
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
