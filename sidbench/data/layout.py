"""Turning a folder into records: the generic ``0_real``/``1_fake`` layout and layout recognition."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Protocol

from ..api.errors import DataError
from ..api.records import FAKE, REAL, Record

LABEL_DIRS = {"0_real": REAL, "1_fake": FAKE}
# Files next to images that are never images: listed as skipped without being opened.
SIDECAR_SUFFIXES = {".txt", ".csv", ".json", ".md", ".yaml", ".yml", ".xml", ".html", ".py", ".zip", ".tar", ".gz",
                    ".pdf", ".ipynb"}


class Layout(Protocol):
    """What a dataset plugin's factory returns."""

    name: str

    def matches(self, root: Path) -> bool:
        """True if ``root`` has this layout."""

    def records(self, root: Path, **options: Any) -> list[Record]:
        """The records under ``root``, sorted; unreadable files are still listed (the loader skips them)."""


def iter_files(root: Path) -> Iterable[Path]:
    """Every regular, non-hidden file below ``root``, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def files_in(folder: Path, drop_metadata: bool = False) -> list[Path]:
    """Files below ``folder`` (none if it is missing). Layouts of published data sets drop the metadata
    files those sets ship (prompts.csv, README.txt: ``drop_metadata``); the generic layout keeps every
    file, so the loader reports a stray non-image in ``skipped.csv`` instead of dropping it silently."""
    if not folder.is_dir():
        return []
    return [p for p in iter_files(folder) if not (drop_metadata and p.suffix.lower() in SIDECAR_SUFFIXES)]


def label_of(path: Path, root: Path) -> tuple[int, Path] | None:
    """The label from the nearest ``0_real``/``1_fake`` folder in the path, and that folder."""
    rel = path.relative_to(root)
    for i in range(len(rel.parts) - 2, -1, -1):
        part = rel.parts[i]
        if part in LABEL_DIRS:
            return LABEL_DIRS[part], root.joinpath(*rel.parts[: i + 1])
    if root.name in LABEL_DIRS:
        return LABEL_DIRS[root.name], root
    return None


class FolderLayout:
    """Any folder with ``0_real``/``1_fake`` somewhere in its paths; the folder above them names the split."""

    name = "folder"

    def matches(self, root: Path) -> bool:
        for path in iter_files(root):
            if label_of(path, root) is not None:
                return True
        return False

    def records(self, root: Path, group: str = "", **options: Any) -> list[Record]:
        root = Path(root)
        out = []
        for path in iter_files(root):
            found = label_of(path, root)
            if found is None:
                continue
            label, label_dir = found
            split = label_dir.parent.name
            generator = split if label == FAKE else ""
            out.append(Record(str(path), label, split, group or "folder", generator))
        if not out:
            raise DataError(f"{root}: found no files under a 0_real or 1_fake folder; see the README's data layout section")
        return out


def resolve_records(root: str | Path, plugins: Any, dataset: str | None = None, **options: Any) -> list[Record]:
    """Records of ``root`` using the named dataset layout, or the first plugin layout that recognises it."""
    from ..api.specs import resolve_factory

    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"--data {root}: no such folder")
    if dataset:
        layout = resolve_factory(plugins.dataset(dataset).factory)()
        return layout.records(root, **options)
    specs = sorted(plugins.datasets.values(), key=lambda s: -s.priority)
    for spec in specs:
        layout = resolve_factory(spec.factory)()
        if layout.matches(root):
            return layout.records(root, **options)
    raise DataError(
        f"--data {root}: no known layout; put images under 0_real/ and 1_fake/ folders "
        f"(e.g. {root}/mysplit/0_real/*.png) or name a dataset with --dataset"
    )
