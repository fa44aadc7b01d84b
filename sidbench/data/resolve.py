"""Which data sets a ``--data`` root holds, and their records.

Every layout that recognises the root claims the folders it reads, in priority order; a layout whose
folders another already claimed is not read again (a specific layout wins over a general one that
matches its sub-tree). For test data every recognised test layout is read, and the generic ``folder``
layout reads only what none claimed; training layouts found beside test sets are named, not scored.
For training and validation data one training set is read. One line says what was read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.errors import DataError
from ..api.records import Record
from .layout import within
from .trees import note

ROLES = ("test", "train", "val")


@dataclass
class Part:
    """One recognised layout under the root: what it claims and, once read, its records."""

    name: str
    layout: Any
    claims: list[Path]
    records: list[Record] | None = field(default=None, repr=False)

    def serves(self, role: str) -> bool:
        return role in getattr(self.layout, "roles", ("test",))


def recognised_records(root: Path, plugins: Any, dataset: str | None, role: str, *, flag: str = "--data",
                       **options: Any) -> list[Record]:
    """The records of ``root`` in ``role``: the named layout's, or those of every layout recognised there
    (``flag`` names the option that gave ``root`` in errors)."""
    from ..api.specs import resolve_factory

    if role not in ROLES:
        raise DataError(f"unknown data role {role!r}; choose one of {', '.join(ROLES)}")
    if not root.exists():
        raise DataError(f"{flag} {root}: no such folder")
    if dataset:
        return resolve_factory(plugins.dataset(dataset).factory)().records(root, role=role, **options)
    specs = sorted(plugins.datasets.values(), key=lambda s: (-s.priority, s.name))
    layouts = [(s.name, resolve_factory(s.factory)()) for s in specs]
    parts = claim([(n, lay) for n, lay in layouts if not getattr(lay, "fallback", False)], root, role, options)
    read, left = choose(parts, role)
    for part in read:
        if part.records is None:
            part.records = part.layout.records(root, role=role, **options)
    if role == "test" or not read:
        claimed = [c for p in parts for c in p.claims]
        for name, lay in layouts:
            if getattr(lay, "fallback", False):
                recs = lay.outside(root, claimed, options.get("group", ""))
                if recs:
                    read.append(Part(name, lay, [root], recs))
    if not read:
        raise DataError(no_layout_message(root, flag))
    renamed = unique_splits(read)
    say(root, role, read, left, renamed)
    return [r for p in read for r in p.records]


def claim(layouts: list[tuple[str, Any]], root: Path, role: str, options: dict) -> list[Part]:
    """The recognised layouts whose folders do not overlap those of a layout tried before them."""
    parts: list[Part] = []
    for name, layout in layouts:
        if not layout.matches(root):
            continue
        records = None
        if hasattr(layout, "claims"):
            claims = [Path(c) for c in layout.claims(root)]
        else:  # a layout that does not say: the top folders its records lie in
            records = layout.records(root, role=role, **options)
            claims = derived_claims(root, records)
        if any(within(a, b) or within(b, a) for p in parts for a in p.claims for b in claims):
            continue
        parts.append(Part(name, layout, claims, records))
    return parts


def choose(parts: list[Part], role: str) -> tuple[list[Part], list[Part]]:
    """(parts to read, parts left out). Test data: every test layout. Training or validation data: the
    first training layout. A root holding no layout that serves the role is read as it is."""
    serving = [p for p in parts if p.serves(role)]
    others = [p for p in parts if not p.serves(role)]
    if not serving:
        serving, others = others, []
    if role != "test":
        return serving[:1], serving[1:] + others
    return serving, others


def derived_claims(root: Path, records: list[Record]) -> list[Path]:
    """The folders directly below ``root`` that hold ``records`` (``root`` for a file directly in it)."""
    out = set()
    for r in records:
        p = Path(r.path)
        if within(p, root):
            rel = Path(os.path.relpath(p, root)).parts
            out.add(root / rel[0] if len(rel) > 1 else root)
    return sorted(out)


def unique_splits(parts: list[Part]) -> list[str]:
    """Prefix a split name that an earlier part already has with this part's layout name."""
    seen: set[str] = set()
    renamed = []
    for part in parts:
        splits = {r.split for r in part.records}
        clash = splits & seen
        if clash:
            part.records = [Record(r.path, r.label, f"{part.name}/{r.split}", r.group, r.generator)
                            if r.split in clash else r for r in part.records]
            renamed += sorted(f"{part.name}/{s}" for s in clash)
        seen |= {r.split for r in part.records}
    return renamed


def say(root: Path, role: str, read: list[Part], left: list[Part], renamed: list[str]) -> None:
    """One line when the root held more than one data set, or one was left out."""
    if len(read) < 2 and not left and not renamed:
        return
    desc = lambda ps: ", ".join(f"{p.name} ({', '.join(where(root, c) for c in p.claims)})" for p in ps)  # noqa: E731
    if role == "test":
        line = f"read {len(read)} data set(s): {desc(read)}"
        if left:
            line += f"; training data, not read as test splits (give it with --train): {desc(left)}"
    else:
        line = f"read {desc(read)} as {role} data"
        if left:
            line += f"; also here, not read: {desc(left)}"
    if renamed:
        line += f"; split names two data sets share are prefixed with the data set: {', '.join(renamed)}"
    note(f"{root}: {line}")


def where(root: Path, folder: Path) -> str:
    return os.path.relpath(folder, root) if within(folder, root) else str(folder)


def no_layout_message(root: Path, flag: str = "--data") -> str:
    """Why nothing could be read from ``root``, and what to give instead."""
    from .layout import empty_label_dirs, no_labelled_files

    if root.is_file():
        score = f"; to score single images without labels: sidbench score {root}" if flag == "--data" else ""
        return (f"{flag} {root} is a file, not a folder, and no layout reads it; give a folder, or a CSV list of images "
                f"(.csv with columns path,label; see the README's CSV section){score}")
    if empty_label_dirs(root):
        return f"{flag} {root}: {no_labelled_files(root)}"
    lists = sorted(p.name for p in root.glob("*.csv")) if root.is_dir() else []
    hint = f" or give its CSV list ({flag} {root / lists[0]})" if lists else ""
    return (f"{flag} {root}: no known layout; put images under 0_real/ and 1_fake/ folders "
            f"(e.g. {root}/mysplit/0_real/*.png){hint} or name a dataset with --dataset")
