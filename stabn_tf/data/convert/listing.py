"""The layouts behind one call: read the annotations, reject duplicates, attach boxes
(no decoding)."""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Sequence

from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data.convert.folder import list_folder
from stabn_tf.data.convert.items import KNOWN_SPLITS, Listing, UsageError, VideoItem
from stabn_tf.data.convert.ssv1 import list_ssv1
from stabn_tf.data.convert.ssv2 import list_ssv2

DATASETS = ("ssv2", "ssv1", "folder")


def list_dataset(dataset: str, input_dir: str, splits: Sequence[str], *,
                 video_dir: str | None = None, validation_fraction: float = 0.0) -> Listing:
    """Reads a layout's annotation files (no decoding). See the module doc for layouts."""
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if not os.path.isdir(input_dir):
        raise UsageError(f"input_dir {input_dir} is not a directory")
    for split in splits:
        if split not in KNOWN_SPLITS:
            raise UsageError(f"unknown split {split!r}; expected some of {KNOWN_SPLITS}")
    if dataset == "ssv2":
        listing = list_ssv2(input_dir, splits, video_dir)
    elif dataset == "ssv1":
        listing = list_ssv1(input_dir, splits, video_dir)
    else:
        listing = list_folder(video_dir or input_dir, splits, validation_fraction)
    # Every failure line says its split, whichever reader rejected it.
    listing.rejected = {split: [{"split": split, **r} for r in rs]
                        for split, rs in listing.rejected.items()}
    _reject_duplicates(listing)
    return listing


def _reject_duplicates(listing: Listing) -> None:
    """Moves videos listed more than once (same source file) to the failures.

    Written twice they would count twice in training, or leak from train into validation;
    which copy is right cannot be guessed. Same split and same label: kept once, the
    repeats are failures. Different labels, or both train and validation: every entry is
    a failure, so the user fixes the annotation files. The unlabelled test split is only
    checked against itself (a test id may also be annotated elsewhere).
    """
    by_source: dict[tuple[str, bool], list[VideoItem]] = collections.defaultdict(list)
    for split, split_items in listing.items.items():
        for item in split_items:
            by_source[os.path.normpath(item.source), split == "test"].append(item)
    drop: dict[int, str] = {}
    for group in by_source.values():
        if len(group) < 2:
            continue
        cid = group[0].clip_id
        splits = sorted({it.split for it in group}, key=KNOWN_SPLITS.index)
        labels = sorted({it.label_text for it in group})
        if len(splits) > 1:
            reason = (f"id {cid!r} is in both {' and '.join(splits)}: a video may be in one "
                      "split only (fix the annotation files)")
            drop.update((id(it), reason) for it in group)
        elif len(labels) > 1:
            reason = (f"id {cid!r} is listed {len(group)} times in {splits[0]} with different "
                      f"labels {labels}: fix the annotation file")
            drop.update((id(it), reason) for it in group)
        else:
            reason = (f"duplicate entry for id {cid!r} in {splits[0]} (same label): written "
                      "once")
            drop.update((id(it), reason) for it in group[1:])
    # Different files under one id (a folder dataset's train/ and val/ holding the same
    # relative path): records, box files and metrics key by id, so none is written.
    by_id: dict[tuple[str, bool], list[VideoItem]] = collections.defaultdict(list)
    for split, split_items in listing.items.items():
        for item in split_items:
            if id(item) not in drop:
                by_id[item.clip_id, split == "test"].append(item)
    for cid, _ in by_id:
        group = by_id[cid, _]
        sources = sorted({os.path.normpath(it.source) for it in group})
        if len(sources) > 1:
            splits = sorted({it.split for it in group}, key=KNOWN_SPLITS.index)
            reason = (f"id {cid!r} is used by {len(sources)} different videos "
                      f"({', '.join(sources)}) in {' and '.join(splits)}: an id names one "
                      "video (rename or move one of them)")
            drop.update((id(it), reason) for it in group)
    if not drop:
        return
    for split, split_items in listing.items.items():
        listing.items[split] = [it for it in split_items if id(it) not in drop]
        listing.rejected[split] += [
            {"split": split, "id": it.clip_id, "source": it.source, "reason": drop[id(it)]}
            for it in split_items if id(it) in drop]


def attach_boxes(listing: Listing, files: Sequence[str], categories: str,
                 workers: int | None = None) -> list[dict]:
    """Reads the box files once (several at once in up to `workers` processes, as
    `load_box_files`) and gives each listed video its boxes (in place).

    Returns the problems found before decoding (malformed entries, videos the files name
    that are not in the converted splits), as `box_problems.jsonl` rows (split None).
    Raises UsageError for a file that cannot be read at all: nothing in it can be used.
    """
    if not files:
        return []
    known = {it.clip_id for items in listing.items.values() for it in items}
    # A rejected entry (bad video id, duplicate) is a failure already, not "no such video".
    known |= {str(r["id"]) for rs in listing.rejected.values() for r in rs}
    try:  # only the converted videos' boxes are kept: memory follows them, not the files
        table, problems = boxes_lib.load_box_files(files, categories, known=known,
                                                    workers=workers)
    except ValueError as e:
        raise UsageError(str(e)) from None
    for split, items in listing.items.items():
        listing.items[split] = [dataclasses.replace(it, boxes=table[it.clip_id])
                                if it.clip_id in table else it for it in items]
    return [{"split": None, **p.to_json()} for p in problems]
