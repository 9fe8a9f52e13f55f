"""Class lists: `labels.txt`, the Something-Something label files, and the flip table.

Every reader here fails loudly with a `LabelFileError` that names the file (and the
line where one is known): a wrong label file silently shifts every class index, which
is far worse than a crash.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence

from stabn_tf.disk import write_atomic
from stabn_tf.errors import StabnError


class LabelFileError(ValueError, StabnError):
    """A label or annotation file is malformed; the message names the file and line."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
        where = f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)
        super().__init__(f"{where}: {message}")
        self.path = os.fspath(path)
        self.line = line


def _check_unique(path, names: Sequence[str], lines: Sequence[int] | None = None) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        line = lines[i] if lines is not None else None
        if not name:
            raise LabelFileError(path, "empty class name", line)
        if name in seen:
            raise LabelFileError(path, f"duplicate class name {name!r} (also entry {seen[name]})",
                                 line)
        seen[name] = i


def _read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Non-empty (line number, stripped text) pairs; blank lines only allowed at the end."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise LabelFileError(path, f"not UTF-8 text ({e.reason})") from e
    while raw and not raw[-1].strip():
        raw.pop()
    out = []
    for i, text in enumerate(raw, start=1):
        if not text.strip():
            raise LabelFileError(path, "blank line inside the class list", i)
        out.append((i, text.strip()))
    if not out:
        raise LabelFileError(path, "no classes in file")
    return out


def read_labels(path: str | os.PathLike) -> list[str]:
    """Reads `labels.txt`: one class name per line, line order = class index."""
    rows = _read_lines(path)
    names = [t for _, t in rows]
    _check_unique(path, names, [i for i, _ in rows])
    return names


def write_labels(path: str | os.PathLike, labels: Sequence[str]) -> None:
    """Writes `labels.txt` (see `read_labels`)."""
    _check_unique(path, list(labels))
    for name in labels:
        if "\n" in name or name != name.strip():
            raise ValueError(f"{os.fspath(path)}: class name {name!r} has surrounding "
                             "whitespace or a newline")
    write_atomic(path, "".join(f"{name}\n" for name in labels))


def load_json(path: str | os.PathLike):
    """`json.load` whose errors name the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise LabelFileError(path, f"invalid JSON: {e.msg} (column {e.colno})", e.lineno) from e
    except UnicodeDecodeError as e:
        raise LabelFileError(path, f"not UTF-8 text ({e.reason})") from e


def load_ssv2_labels(path: str | os.PathLike) -> list[str]:
    """SSv2 `something-something-v2-labels.json`: `{"class name": "index", ...}` → names.

    The indices must be exactly 0..K-1 (as strings or ints), each used once.
    """
    data = load_json(path)
    if not isinstance(data, dict) or not data:
        raise LabelFileError(path, "expected a non-empty JSON object {class name: index}")
    by_index: dict[int, str] = {}
    for name, index in data.items():
        try:
            i = int(index)
            if str(i) != str(index).strip():
                raise ValueError
        except (TypeError, ValueError):
            raise LabelFileError(path, f"class {name!r}: index {index!r} is not an integer"
                                 ) from None
        if i in by_index:
            raise LabelFileError(path, f"index {i} used by both {by_index[i]!r} and {name!r}")
        by_index[i] = name
    k = len(by_index)
    if sorted(by_index) != list(range(k)):
        missing = sorted(set(range(k)) - set(by_index))
        raise LabelFileError(path, f"indices must be 0..{k - 1}; missing {missing[:5]}")
    names = [by_index[i].strip() for i in range(k)]
    _check_unique(path, names)
    return names


def ssv2_template_to_label(template: str) -> str:
    """SSv2 class name of a template: `"Holding [something] next to [something]"` →
    `"Holding something next to something"` (brackets removed, as in the labels file)."""
    return template.replace("[", "").replace("]", "").strip()


def load_ssv1_labels(path: str | os.PathLike) -> list[str]:
    """SSv1 `something-something-v1-labels.csv`: one class name per line, in index order."""
    return read_labels(path)


# --- horizontal flip --------------------------------------------------------------

_MIRROR_WORDS = {
    "left": "right",
    "right": "left",
    "leftwards": "rightwards",
    "rightwards": "leftwards",
    "clockwise": "counterclockwise",
    "counterclockwise": "clockwise",
    "anticlockwise": "clockwise",
    "counter-clockwise": "clockwise",
    "anti-clockwise": "clockwise",
}
_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)?")


def _mirror_name(name: str) -> tuple[str, bool]:
    """(name with left/right and clockwise/counterclockwise swapped, whether any was)."""
    found = False

    def swap(m: re.Match) -> str:
        nonlocal found
        word = m.group(0)
        repl = _MIRROR_WORDS.get(word.lower())
        if repl is None:
            return word
        found = True
        return repl.capitalize() if word[0].isupper() else repl

    return _WORD.sub(swap, name), found


def flip_class_map(labels: Sequence[str]) -> tuple[list[int], list[bool]]:
    """Label table for horizontal flips: `(flipped_index, flippable)` per class.

    Mirroring a video turns "from left to right" into "from right to left" and
    "clockwise" into "counterclockwise"; a blind flip would teach the wrong class. For each
    class whose name has such a word, the mirror class is found by swapping the words;
    if it exists, flipped clips take its index, and if it does not (e.g. "Pretending to move
    something from left to right" without a right-to-left twin) the class is marked not
    flippable and its clips are never flipped. Classes without direction words map to
    themselves. Example (SSv2): "Pushing something from left to right" ↔ "Pushing
    something from right to left"; "Turning the camera left while filming something" ↔
    "Turning the camera right while filming something".
    """
    index = {name: i for i, name in enumerate(labels)}
    lower = {name.lower(): i for i, name in enumerate(labels)}
    mapping, flippable = [], []
    for i, name in enumerate(labels):
        mirrored, directional = _mirror_name(name)
        if not directional:
            mapping.append(i)
            flippable.append(True)
            continue
        j = index.get(mirrored, lower.get(mirrored.lower()))
        mapping.append(i if j is None else j)
        flippable.append(j is not None)
    return mapping, flippable
