"""What the dataset layouts share: finding a layout's folder at whatever depth an archive unpacked it,
children matched without regard to case, test sets whose class level is detected rather than assumed,
and the one-line notes a layout prints about what it read and what it left out."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..api.errors import DataError
from ..api.escape import one_line
from ..api.log import note as api_note
from ..api.records import FAKE, REAL, Record
from .layout import SIDECAR_SUFFIXES, files_in, iter_files

OTHER = "other"  # the group of a set a layout does not know
# The other roots of the same command (``--data A --data B``), so a layout split over two roots (UFD's
# ``datasets/test`` and ``diffusion_datasets``) does not call the sets of the other root missing.
_COMPANIONS: ContextVar[tuple[str, ...]] = ContextVar("sidbench_companion_roots", default=())
MAX_FANOUT = 256  # a folder with more sub-folders than this is data, not a benchmark root: not searched below
# Folders that hold images of one class: never searched for a layout below them.
CLASS_FOLDERS = {"0_real", "1_fake", "ai", "nature", "real", "fake"}


def companion_roots() -> tuple[str, ...]:
    """Every data root of the command being read (empty outside :func:`reading_roots`)."""
    return _COMPANIONS.get()


@contextmanager
def reading_roots(roots: Iterable[str | Path]) -> Iterator[None]:
    """Layouts read inside this block know the command's other roots (:func:`companion_roots`)."""
    token = _COMPANIONS.set(tuple(str(r) for r in roots))
    try:
        yield
    finally:
        _COMPANIONS.reset(token)


def note(message: str) -> None:
    """One line about what a layout read or left out (not an error; :func:`sidbench.api.note`); control
    characters in folder names are escaped."""
    api_note(one_line(message))


def warn(message: str) -> None:
    """A warning about what a layout read (shown with ``--quiet`` too)."""
    logging.getLogger("sidbench.data").warning("%s", message)


def subdirs(folder: Path) -> list[Path]:
    """The non-hidden sub-folders of ``folder`` (symlinks to folders included), sorted; [] if it is not a folder."""
    try:
        with os.scandir(folder) as it:
            return sorted(Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir())
    except (NotADirectoryError, FileNotFoundError, PermissionError):
        return []


def children(folder: Path) -> dict[str, Path]:
    """The sub-folders of ``folder`` by lower-case name (one listing)."""
    return {d.name.lower(): d for d in reversed(subdirs(folder))}


def child(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name``, spelled in any case (the exact spelling first)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    return next((d for d in subdirs(folder) if d.name.lower() == name.lower()), None)


def find_dirs(root: Path, test: Callable[[Path], bool], depth: int = 3) -> list[Path]:
    """Folders at most ``depth`` levels below ``root`` (``root`` included) that pass ``test``, breadth first.
    The search does not go below a folder that passed, nor into class folders or very wide folders, so
    the extra top folder an archive adds (``Chameleon/``, ``CNN_synth_testset/``) costs a few listings."""
    found, level = [], [Path(root)]
    for _ in range(depth + 1):
        below = []
        for folder in level:
            if test(folder):
                found.append(folder)
            elif folder.name.lower() not in CLASS_FOLDERS:
                subs = subdirs(folder)
                below += subs if len(subs) <= MAX_FANOUT else []
        level = below
    return found


def find_dir(root: Path, test: Callable[[Path], bool], depth: int = 3) -> Path | None:
    """The first folder :func:`find_dirs` finds, or None."""
    found = find_dirs(root, test, depth)
    return found[0] if found else None


def has_labels(folder: Path) -> bool:
    """True if ``folder`` holds a ``0_real`` or ``1_fake`` folder directly."""
    return (folder / "0_real").is_dir() or (folder / "1_fake").is_dir()


def has_files(folder: Path) -> bool:
    """True if any file below ``folder`` could be an image (stops at the first)."""
    return any(p.suffix.lower() not in SIDECAR_SUFFIXES for p in iter_files(folder))


def labelled_set(folder: Path) -> tuple[list[Path], list[Path]]:
    """(reals, fakes) of one test set: its own ``0_real``/``1_fake``, or else those of each sub-folder merged
    (the object-class level of CNNDetection's progan, stylegan, stylegan2, cyclegan), as the official
    loaders decide it: by whether the label folders sit directly under the set folder."""
    if has_labels(folder):
        return files_in(folder / "0_real", drop_metadata=True), files_in(folder / "1_fake", drop_metadata=True)
    reals, fakes = [], []
    for sub in subdirs(folder):
        reals += files_in(sub / "0_real", drop_metadata=True)
        fakes += files_in(sub / "1_fake", drop_metadata=True)
    return reals, fakes


def paired(split: str, group: str, reals: Iterable[Path], fakes: Iterable[Path], generator: str | None = None) -> list[Record]:
    """Records of one split: its reals, then its fakes (``generator`` defaults to the split name)."""
    gen = split if generator is None else generator
    return ([Record(str(p), REAL, split, group, "") for p in reals]
            + [Record(str(p), FAKE, split, group, gen) for p in fakes])


@dataclass
class SetsRead:
    """What reading a folder of sets gave: records, and the names a layout reports in its notes."""

    records: list[Record] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # splits read
    unknown: list[str] = field(default_factory=list)  # read, but not among the layout's known sets (group other)
    incomplete: list[str] = field(default_factory=list)  # found without reals or without fakes: left out

    def extend(self, other: "SetsRead") -> None:
        self.records += other.records
        self.present += other.present
        self.unknown += other.unknown
        self.incomplete += other.incomplete

    def add(self, split: str, group: str, reals: list[Path], fakes: list[Path], need_both: bool = True,
            generator: str | None = None) -> None:
        """Keep a set that has images of both classes (or of either when ``need_both`` is False)."""
        if (reals and fakes) or (not need_both and (reals or fakes)):
            self.records += paired(split, group, reals, fakes, generator)
            self.present.append(split)
            if group == OTHER:
                self.unknown.append(split)
        else:
            self.incomplete.append(split)

    def finish(self, where: Path, title: str, expected: Iterable[str], empty: str) -> list[Record]:
        """The records, after the notes of :func:`report`; ``empty`` is the error when there are none."""
        report(where, title, self, expected)
        if not self.records:
            raise DataError(f"{where}: {empty}")
        return self.records


def read_sets(base: Path, known: dict[str, tuple[str, str]], skip: Iterable[str] = ()) -> SetsRead:
    """Every sub-folder of ``base`` as one split. ``known`` maps a lower-case folder name to its canonical
    split name and group; any other folder is read too, as group ``other`` (a tree never loses a set)."""
    out, skip = SetsRead(), {s.lower() for s in skip}
    for folder in subdirs(base):
        if folder.name.lower() in skip:
            continue
        name, group = known.get(folder.name.lower(), (folder.name, OTHER))
        reals, fakes = labelled_set(folder)
        if group == OTHER and not (reals or fakes) and not has_files(folder):
            continue  # a folder without images (docs, scripts) is not a set
        out.add(name, group, reals, fakes)
    return out


def report(where: Path, title: str, read: SetsRead, expected: Iterable[str]) -> None:
    """At most two lines: known sets missing (or without reals or fakes) and left out; sets read as ``other``."""
    expected = list(expected)
    missing = [s for s in expected if s not in read.present]
    extra = [s for s in read.incomplete if s not in expected]
    if missing or extra:
        parts = [f"{len(missing)} of the {len(expected)} {title} sets are missing or lack reals or fakes, "
                 f"left out: {', '.join(missing)}"] if missing else []
        parts += [f"left out for lacking reals or fakes: {', '.join(extra)}"] if extra else []
        warn(f"{where}: {'; '.join(parts)}")
    if read.unknown:
        note(f"{where}: {len(read.unknown)} set(s) that are not {title} sets, read as group '{OTHER}': "
             f"{', '.join(read.unknown)}")
