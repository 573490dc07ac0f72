"""Every relative link of README.md and docs/*.md leads somewhere: the file exists and, when the
link names an #anchor, that file has a heading with that anchor (as GitHub makes them)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target), not an image; the target up to the first space or closing parenthesis.
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def without_code(markdown: str) -> str:
    """The Markdown outside fenced blocks and inline code spans."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", markdown)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings (outside code blocks), a repeated one with
    `-1`, `-2`, ... after it."""
    found: set[str] = set()
    for line in re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            candidate, n = slug, 0
            while candidate in found:
                n += 1
                candidate = f"{slug}-{n}"
            found.add(candidate)
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(without_code(page.read_text()))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)
    ]


def test_there_are_pages_and_links_to_check():
    assert len(PAGES) > 2
    assert any(relative_links(page) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_exists(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, broken
