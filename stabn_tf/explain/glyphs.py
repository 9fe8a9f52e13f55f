"""Names drawn as they are written. Video and class names may hold `$`, `%`, `\\`, CJK or
right-to-left text: matplotlib would read `$...$` as math (or fail on it) and draw glyphs
its default font lacks as empty boxes, warning once per figure.

`name_style(*texts)` gives the text properties that draw names literally, in the default
font followed by installed fonts that have the missing glyphs (matplotlib falls back
through the list glyph by glyph). What no installed font can draw is said once per
process in one line on stderr, and only once across the report's drawing processes (they
inherit the glyphs already named through the environment); `quiet_glyph_warnings` then
silences matplotlib's own per-figure warnings.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Iterable, Iterator

from matplotlib import font_manager, ft2font
from PIL import ImageFont

#: Glyphs already named in the one-line note (set here, read by forked drawing processes).
NOTED_ENV = "STABN_TF_GLYPHS_NOTED"
#: Fonts that "have" every glyph only as a placeholder picture, which is no fallback.
PLACEHOLDER_FONTS = ("Last Resort",)


@functools.cache
def _charmap(path: str) -> frozenset[int]:
    try:
        return frozenset(ft2font.FT2Font(path).get_charmap())
    except (OSError, RuntimeError):
        return frozenset()


@functools.cache
def _default(family: str) -> tuple[str, str]:
    """(family name, file) of the font matplotlib picks for a generic family."""
    path = font_manager.findfont(font_manager.FontProperties(family=[family]))
    return font_manager.get_font(path).family_name, path


def _drawable(char: str) -> bool:
    return char.isprintable() and not char.isspace()


@functools.lru_cache(maxsize=256)
def _fallbacks(chars: frozenset[str], family: str) -> tuple[tuple[str, str], ...]:
    """(family name, file) of the default font, then of each installed font covering some
    glyph the earlier ones lack; the glyphs none covers are noted."""
    chosen = [_default(family)]
    missing = {c for c in chars if ord(c) not in _charmap(chosen[0][1])}
    candidates = sorted(font_manager.fontManager.ttflist, key=lambda f: (f.name, f.fname))
    for entry in candidates:
        if not missing:
            break
        if entry.name.startswith(PLACEHOLDER_FONTS) or any(entry.name == n for n, _ in chosen):
            continue
        covered = {c for c in missing if ord(c) in _charmap(entry.fname)}
        if covered:
            chosen.append((entry.name, entry.fname))
            missing -= covered
    if missing:
        note_missing(missing)
    return tuple(chosen)


def _chars(texts: Iterable[str]) -> frozenset[str]:
    return frozenset(c for text in texts for c in str(text) if _drawable(c))


def name_style(*texts: str, family: str = "sans-serif") -> dict:
    """Text properties for drawing `texts` (names) literally: no math parsing, and a font
    list that covers their glyphs where the installed fonts allow."""
    names = [name for name, _ in _fallbacks(_chars(texts), family)]
    return {"parse_math": False, "fontfamily": names}


def check_names(names: Iterable[str]) -> None:
    """Names the glyphs of `names` that no installed font has, in one line, before any of
    them is drawn (the figures drawn later then add no line for these)."""
    _fallbacks(_chars(names), "sans-serif")


def pil_font(text: str, size: int, default: ImageFont.ImageFont) -> ImageFont.ImageFont:
    """`default` for ASCII text; otherwise the installed font (at `size`) that covers the
    most of the text's glyphs (Pillow draws each text in one font)."""
    if text.isascii():
        return default
    chars = _chars([text])
    fonts = _fallbacks(chars, "sans-serif")
    _, path = max(fonts, key=lambda f: sum(ord(c) in _charmap(f[1]) for c in chars))
    try:
        return ImageFont.truetype(path, size)
    except OSError:
        return default


def note_missing(chars: Iterable[str]) -> None:
    """Says once which glyphs no installed font has (each glyph named at most once)."""
    noted = set(os.environ.get(NOTED_ENV, ""))
    new = sorted(set(chars) - noted)
    if not new:
        return
    print(f"note: no installed font has the glyphs {''.join(new)!r} of these names; they "
          "are drawn as empty boxes (a font with them, e.g. Debian's fonts-noto-cjk, "
          "draws them)", file=sys.stderr, flush=True)
    os.environ[NOTED_ENV] = "".join(sorted(noted | set(new)))


@contextlib.contextmanager
def quiet_glyph_warnings() -> Iterator[None]:
    """Silences matplotlib's "Glyph ... missing from font(s)" warnings while a figure is
    drawn: the missing glyphs were named once already (`note_missing`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
        yield
