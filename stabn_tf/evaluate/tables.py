"""The results as Markdown, laid out like the paper: Table 1 (accuracy), Table 2 (attention
inversion) and the explanation-quality table."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from stabn_tf.layers.attention import INVERSIONS
from stabn_tf.outputs import ATTENTION, PERCEPTION


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal; "—" where there is no value."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{100 * value:.1f}"


def number(value: float | None) -> str:
    """A score with three decimals; "—" where there is no value."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def frames_label(num_frames: int, num_clips: int) -> str:
    """"32" for one clip, "32+32" for two (the paper's notation), "32×3" beyond."""
    if num_clips <= 2:
        return "+".join([str(num_frames)] * num_clips)
    return f"{num_frames}×{num_clips}"


@dataclasses.dataclass
class Table:
    """One table as data: column headings, rows of cells (text as shown) and the notes
    under it; `markdown()` writes it for the `.md` files, the report draws it in HTML."""

    header: list[str]
    rows: list[list[str]]
    notes: list[str] = dataclasses.field(default_factory=list)

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.header) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += ["", *self.notes]
        return "\n".join(lines)


def table1(entries: Sequence[tuple[str, int, dict]]) -> Table:
    """Table 1 layout: model | frames | top-1 | top-5 (perception, the prediction), plus
    the attention branch's own head. `entries`: (label, frames per clip,
    `evaluate_accuracy` result), baseline first; rows grouped by clip count like the paper."""
    rows = []
    counts = sorted({int(n) for _, _, r in entries for n in r if n.isdigit()})
    for n in counts:
        for label, num_frames, results in entries:
            if str(n) not in results:
                continue
            r = results[str(n)]
            att = (f"{percent(r[ATTENTION]['top1'])} / {percent(r[ATTENTION]['top5'])}"
                   if ATTENTION in r else "—")
            rows.append([label, frames_label(num_frames, n), percent(r[PERCEPTION]['top1']),
                         percent(r[PERCEPTION]['top5']), att])
    return Table(["Model", "Frames", "top-1 (%)", "top-5 (%)",
                  "attention branch top-1 / top-5 (%)"], rows)


def table1_markdown(entries: Sequence[tuple[str, int, dict]]) -> str:
    return table1(entries).markdown()


def table2(results: dict) -> Table:
    """Table 2 layout: inversion setting | top-1 | top-5, then the ordering check."""
    names = {"none": "none (ST-ABN)", "spatial": "spatial inverted (1−Ms)",
             "temporal": "temporal inverted (1−Mt)", "both": "both inverted"}
    rows = [[names[mode], percent(results[mode]['top1']), percent(results[mode]['top5']),
             number(results[mode].get('true_class_probability'))]
            for mode in INVERSIONS if mode in results]
    notes = []
    order = results.get("ordering", {})
    if order:
        marks = ", ".join(f"{k}: {'yes' if v else 'no' if v is not None else '—'}"
                          for k, v in order.items() if k != "reproduced")
        notes.append(f"Paper's ordering (top-1) reproduced: "
                     f"{'yes' if order.get('reproduced') else 'no'} ({marks}).")
    return Table(["Attention", "top-1 (%)", "top-5 (%)", "mean p(true class)"], rows, notes)


def table2_markdown(results: dict) -> str:
    return table2(results).markdown()


def explanation(quality: dict) -> Table:
    """method × metric table of `explanation_quality`'s result."""
    rows = [[row['method'], row['model'], number(row['pointing_game']),
             number(row['mass_in_box']),
             f"{number(row['temporal_auroc'])} / {number(row['temporal_auroc_pooled'])}",
             number(row['frame_deletion_auc']), number(row['region_deletion_auc'])]
            for row in quality["methods"]]
    size = quality["image_size"]
    h, w = quality["map_size"]
    notes = [f"{quality['videos']} videos, {quality['num_frames']} frames at {size}×{size} "
             f"(Ms and the reference maps: {h}×{w} per frame). Spatial metrics on active "
             "frames with the object visible; pointing tolerance "
             f"{quality['pointing_tolerance'] * size:.1f} px; maps are bilinearly upsampled "
             "to the frame. Temporal AUROC: active vs static frames. "
             f"Deletion replaces frames / {quality['deletion_grid']}×"
             f"{quality['deletion_grid']} cells per frame with the mean colour, most important "
             "first, and integrates the true-class probability of the row's model (lower = "
             "more faithful; compare with the random row of the same model). Grad-CAM "
             "explains the true class; on ST-ABN its last stage (res5) is the perception "
             "branch. Centre prior: a fixed central Gaussian (no temporal part)."]
    if not quality["ground_truth"]:
        notes.append("The records carry no ground truth (`clip/gt/*`): only deletion is "
                     "scored.")
    return Table(["Method", "Model", "Pointing game ↑", "Mass in box ↑",
                  "Temporal AUROC ↑ (per clip / pooled)", "Frame deletion AUC ↓",
                  "Region deletion AUC ↓"], rows, notes)


def explanation_markdown(quality: dict) -> str:
    return explanation(quality).markdown()


def results_tables(results: dict) -> dict[str, Table]:
    """The tables of a `results.json` (what `stabn_tf.evaluate.run` writes) by table name,
    laid out as its Markdown files are."""
    out = {}
    if "table1" in results:
        out["table1"] = table1([(label, r["frames"], r) for label, r in
                                results["table1"].items()])
    if "table2" in results:
        out["table2"] = table2(results["table2"])
    if "explanation" in results:
        out["explanation"] = explanation(results["explanation"])
    return out
