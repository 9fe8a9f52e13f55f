"""The README and the docs/ pages hold together: every relative link and `#anchor` resolves
(anchors by GitHub's heading slugs), every page is linked from the README, and the README
stays a guide of at most 300 lines."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$", re.M)


def _prose(text: str) -> str:
    """`text` without fenced blocks and code spans, where brackets are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lower-cased, every character but
    letters, digits, `_`, `-` and spaces dropped, each space a `-` (`_` emphasis is not
    undone: the pages write emphasis with `*`)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link is its text
    text = re.sub(r"[`*]", "", text)  # code and emphasis marks
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: pathlib.Path) -> set[str]:
    """Every heading's anchor on `page`, repeats numbered `-1`, `-2`, ... as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for _, heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: pathlib.Path) -> list[str]:
    """The targets of `page`'s inline links and pictures, web addresses left out."""
    return [t for t in _LINK.findall(_prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]


def test_slug_follows_github():
    assert slug("TFLite (phones, boards)") == "tflite-phones-boards"
    assert slug("OpenVINO (Intel/AMD servers)") == "openvino-intelamd-servers"
    assert slug("2. Why 2D operations only") == "2-why-2d-operations-only"
    assert slug("Use it from `Keras` and **more**") == "use-it-from-keras-and-more"
    assert slug("Attention supervision, measured") == "attention-supervision-measured"
    assert slug("--max_clips and `runs/<name>/`") == "--max_clips-and-runsname"


def test_repeated_headings_are_numbered(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n## Notes\n```\n## not a heading\n```\n## Notes\n")
    assert anchors(page) == {"title", "notes", "notes-1"}


def test_links_skip_code_and_web_addresses(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[a](docs/a.md#x) ![p](p.png) `[b](b.md)` [w](https://x.org/y)\n"
                    "```\n[c](c.md)\n```\n")
    assert links(page) == ["docs/a.md#x", "p.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"


def test_the_readme_is_a_guide_of_at_most_300_lines():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines"
