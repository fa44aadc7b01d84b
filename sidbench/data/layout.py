"""Turning a folder into records: the generic ``0_real``/``1_fake`` layout and layout recognition."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Protocol

from ..api.errors import DataError
from ..api.records import FAKE, REAL, Record

log = logging.getLogger(__name__)
LABEL_DIRS = {"0_real": REAL, "1_fake": FAKE}
# Files next to images that are never images: listed as skipped without being opened.
SIDECAR_SUFFIXES = {".txt", ".csv", ".json", ".md", ".yaml", ".yml", ".xml", ".html", ".py", ".zip", ".tar", ".gz",
                    ".pdf", ".ipynb"}


class Layout(Protocol):
    """What a dataset plugin's factory returns. Optional attributes, read with defaults:

    - ``roles``: which of ``test``, ``train``, ``val`` it serves (default ``("test",)``); ``records`` gets
      ``role=`` and a layout serving several reads the matching part of its tree;
    - ``claims(root)``: the folders under ``root`` it reads (default: derived from its records), so a
      root holding several layouts reads each once and the generic ``folder`` layout only what none claimed;
    - ``published``: the test splits of its paper, which suites keep (default: every split it reads).
    """

    name: str

    def matches(self, root: Path) -> bool:
        """True if ``root`` has this layout."""

    def records(self, root: Path, **options: Any) -> list[Record]:
        """The records under ``root``, sorted; unreadable files are still listed (the loader skips them)."""


def iter_files(root: Path) -> Iterable[Path]:
    """Every non-hidden file below ``root``, in a stable order.

    Symbolic links to folders are followed, but each real folder is walked once: a link back up the tree
    (``x -> ..``) or a second link to the same folder is not followed again, so a walk always ends and never
    invents copies. Files that are not regular (FIFOs, sockets, devices) are listed like any file: the image
    reader refuses them with a reason without opening them. Hidden files and folders (name starting with
    ``.``), links not followed again and folders that cannot be read are skipped and named in one warning."""
    root = Path(root)
    if not root.is_dir():  # a file (a CSV list, a stray image) holds no files below it: nothing to say
        return
    notes: dict[str, list[str]] = {"hidden": [], "linked": [], "unreadable": []}
    for dirpath, _, filenames in walk_folders(root, notes):
        for name in sorted(filenames):
            if name.startswith("."):
                notes["hidden"].append(os.path.relpath(os.path.join(dirpath, name), root))
            else:
                yield Path(dirpath) / name
    _report_skips(root, notes)


def walk_folders(root: Path, notes: dict[str, list[str]] | None = None) -> Iterable[tuple[str, list[str], list[str]]]:
    """``os.walk`` of ``root`` following links to folders, each real folder once (a link loop ends), hidden
    folders left out, sorted; what it left out is added to ``notes`` (hidden, linked, unreadable)."""
    notes = notes if notes is not None else {"hidden": [], "linked": [], "unreadable": []}
    seen = {_identity(root)}

    def unreadable(exc: OSError) -> None:
        notes["unreadable"].append(f"{exc.filename} ({exc.strerror})")

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            ident = _identity(Path(full))
            if d.startswith("."):
                notes["hidden"].append(os.path.relpath(full, root) + "/")
            elif ident is None or ident in seen:
                notes["linked"].append(f"{os.path.relpath(full, root)} -> {os.path.realpath(full)}")
            else:
                seen.add(ident)
                keep.append(d)
        dirnames[:] = keep
        yield dirpath, dirnames, filenames


def _identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of the real folder behind ``folder`` (None when it cannot be read)."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


_REPORTED: set[str] = set()  # one warning per distinct message and process (layouts walk a folder more than once)
_SKIP_TEXT = {
    "hidden": "ignored {n} hidden file(s) or folder(s) (names starting with '.')",
    "linked": "did not follow {n} link(s) to a folder already walked (a loop or a second link)",
    "unreadable": "could not read {n} folder(s)",
}


def _report_skips(root: Path, notes: dict[str, list[str]]) -> None:
    from ..api.escape import one_line

    for what, names in notes.items():
        if not names:
            continue
        shown = ", ".join(one_line(n) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        message = f"{one_line(root)}: {_SKIP_TEXT[what].format(n=len(names))}: {shown}"
        if message not in _REPORTED:
            _REPORTED.add(message)
            log.warning(message)


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
    """Any folder with ``0_real``/``1_fake`` somewhere in its paths; the folder above them names the split.
    The fallback: beside recognised layouts it reads only the folders none of them claimed."""

    name = "folder"
    roles = ("test", "train", "val")
    fallback = True

    def matches(self, root: Path) -> bool:
        for path in iter_files(root):
            if label_of(path, root) is not None:
                return True
        return False

    def records(self, root: Path, group: str = "", **options: Any) -> list[Record]:
        out = self.outside(Path(root), (), group)
        if not out:
            raise DataError(f"{root}: {no_labelled_files(root)}")
        return out

    def outside(self, root: Path, claimed: Iterable[Path], group: str = "") -> list[Record]:
        """Records of the labelled files below ``root`` that are in none of the ``claimed`` folders."""
        out = []
        for folder in unclaimed(root, [Path(c) for c in claimed]):
            for path in iter_files(folder):
                found = label_of(path, root)
                if found is None:
                    continue
                label, label_dir = found
                split = label_dir.parent.name
                generator = split if label == FAKE else ""
                out.append(Record(str(path), label, split, group or "folder", generator))
        return out

def empty_label_dirs(root: Path) -> list[Path]:
    """The ``0_real``/``1_fake`` folders below ``root`` that hold no file."""
    found = []
    for dirpath, dirnames, _ in walk_folders(Path(root)):  # loop-safe: a link back up the tree ends the walk
        found += [Path(dirpath) / d for d in dirnames if d in LABEL_DIRS and not any(iter_files(Path(dirpath) / d))]
    return found


def no_labelled_files(root: Path) -> str:
    """Why ``root`` gave no records: its 0_real/1_fake folders are empty, or it has none."""
    empty = empty_label_dirs(root)
    if empty:
        shown = ", ".join(str(p.relative_to(root)) + "/" for p in empty[:4]) + (" ..." if len(empty) > 4 else "")
        return f"the 0_real/1_fake folder(s) {shown} are empty; put the images in them"
    return "found no files under a 0_real or 1_fake folder; see the README's data layout section"



def within(path: Path, folder: Path) -> bool:
    """True if ``path`` is ``folder`` or below it (no symlinks resolved: the paths as given)."""
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents


def unclaimed(root: Path, claimed: list[Path]) -> list[Path]:
    """The largest folders below ``root`` that overlap no claimed folder (``[root]`` when none is below it)."""
    if any(within(root, c) for c in claimed):
        return []
    if not any(within(c, root) for c in claimed):
        return [root]
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [f for d in subs for f in unclaimed(d, claimed)]


def resolve_records(root: str | Path, plugins: Any, dataset: str | None = None, role: str = "test", *,
                    flag: str = "--data", **options: Any) -> list[Record]:
    """Records of ``root`` in ``role`` (test, train or val): with the named dataset layout, or with every
    layout recognised there (see :func:`sidbench.data.resolve.recognised_records`); ``flag`` names the
    option that gave ``root`` in errors (``--data``, ``--train``, ``--val``)."""
    from .resolve import recognised_records

    return recognised_records(Path(root).expanduser(), plugins, dataset, role, flag=flag, **options)
