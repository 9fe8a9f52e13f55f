"""Names with `$`, `%`, `\\`, CJK and right-to-left text drawn as written, in one note."""

import warnings

import numpy as np
import pytest
from matplotlib import font_manager, ft2font

from stabn_tf.explain import figures, glyphs

NAMES = ("take $x_1_2$ b.webm", "price $5 or $6", "100% \\n back\\slash", "中文视频 移动",
         "שלום مرحبا")
CJK = "中文视频移动"


def _has_cjk_font() -> bool:
    """Independently of `glyphs`: does any real installed font draw '中'?"""
    for entry in font_manager.fontManager.ttflist:
        if entry.name.startswith("Last Resort"):
            continue
        try:
            if ord("中") in ft2font.FT2Font(entry.fname).get_charmap():
                return True
        except (OSError, RuntimeError):
            pass
    return False


@pytest.fixture
def fresh_notes(monkeypatch):
    monkeypatch.delenv(glyphs.NOTED_ENV, raising=False)
    glyphs._fallbacks.cache_clear()
    yield
    glyphs._fallbacks.cache_clear()


def test_names_are_drawn_literally_with_one_note(fresh_notes, capfd):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 24, 24, 3), dtype=np.uint8)
    spatial, temporal = rng.uniform(size=(2, 2, 2, 1)), rng.uniform(size=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in NAMES * 2:
            fig = figures.attention_figure(frames, spatial, temporal, title=name,
                                           top_k=[(n, 0.1) for n in NAMES])
            assert figures.figure_png(fig)[:4] == b"\x89PNG"
            assert fig._suptitle.get_text() == name  # not "price 5*or*6"
            pictures = figures.animation_frames(frames, spatial, temporal,
                                                caption=f"{name} (0.50)")
            assert len(pictures) == 2
    assert [str(w.message) for w in caught] == []  # no "Glyph ... missing" per figure
    notes = [line for line in capfd.readouterr().err.splitlines() if "font" in line]
    if _has_cjk_font():
        assert notes == []
        assert len(glyphs.name_style(CJK)["fontfamily"]) > 1  # a fallback that has them
    else:
        assert len(notes) == 1 and all(c in notes[0] for c in CJK), notes


def test_names_are_never_read_as_math():
    style = glyphs.name_style("$x$")
    assert style["parse_math"] is False and style["fontfamily"][0] == "DejaVu Sans"
