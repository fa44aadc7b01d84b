"""The documentation holds together: the README stays short, every relative link and anchor in README.md
and docs/ resolves, and the generated detector cards and table are current (`python -m sidbench.registry.cards`)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    out = set()
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    for line in text.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [a or b for a, b in LINK.findall(text)]


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 400


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_anchors_resolve(page):
    bad = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.is_file() and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(REPO)}")
    assert not bad, bad


def test_generated_detector_cards_are_current():
    from sidbench.registry.cards import stale_files

    stale = stale_files(REPO)
    assert not stale, f"run `python -m sidbench.registry.cards` to regenerate: {[str(p.relative_to(REPO)) for p in stale]}"


def test_every_builtin_detector_has_a_card_with_its_paper_and_licence():
    from sidbench.registry.cards import builtin_plugins, families

    for family, specs in families(builtin_plugins()).items():
        card = (REPO / "docs" / "detectors" / f"{family}.md").read_text()
        assert specs[0].paper and specs[0].paper.split(",")[0] in card, family
        assert "**Licence**" in card and all(f"`{s.name}`" in card for s in specs)
