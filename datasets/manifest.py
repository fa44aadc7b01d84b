"""CSV lists of images (``--data list.csv``): sidbench's own columns, and the lists published sets ship.

Paths are relative to the CSV's folder (absolute paths are kept), as every official reader below does.
The columns say which list it is:

=========================  ==============================================================================
header                     read as
=========================  ==============================================================================
``path,label[,split,       sidbench's manifest: label ``0``/``1`` or ``real``/``fake``; ``split`` (default:
generator,group]``         the CSV's name), ``generator`` (default: the split, for fakes), ``group``
                           (default ``csv``). A real listed under several splits is shared by them.
``filename,typ[,url]``     grip-unina lists (SynthWildX ``list.csv``, ``commercial_tools.csv``): ``typ`` is
                           ``real`` or the generator; one split per generator, all reals shared by each
                           (the per-``typ`` metrics of ``compute_metrics.py``).
``image,class[,split]``    SPAI's CSVs: ``class`` 0/1; ``split`` (train/val/test) picks the rows of the
                           role (``--data``: test); the split is the CSV's name.
``filename,label[,...]``   B-Free's lists: label ``0``/``1`` or ``REAL``/``FAKE``; the split is the CSV's name.
=========================  ==============================================================================
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sidbench.api import FAKE, REAL, DataError, DatasetSpec, Record, hookimpl

GROUP = "csv"
LABELS = {"0": REAL, "real": REAL, "1": FAKE, "fake": FAKE}


@dataclass(frozen=True)
class Dialect:
    """One kind of list: the columns that identify it and how a row becomes (path, label, split, generator, group)."""

    name: str
    needs: tuple[str, ...]
    row: Callable[[dict, str, int], tuple[str, int, str, str, str]]


def _label(value: str, line: int) -> int:
    label = LABELS.get(value.strip().lower())
    if label is None:
        raise DataError(f"line {line}: label {value!r} is neither 0/1 nor real/fake")
    return label


def _native(row: dict, stem: str, line: int) -> tuple:
    label = _label(row["label"], line)
    split = row.get("split") or stem
    return row["path"], label, split, (row.get("generator") or (split if label else "")), row.get("group") or GROUP


def _typ(row: dict, stem: str, line: int) -> tuple:
    typ = row["typ"].strip()
    return (row["filename"], REAL, "", "", GROUP) if typ.lower() == "real" else (row["filename"], FAKE, typ, typ, GROUP)


def _spai(row: dict, stem: str, line: int) -> tuple:
    if row["class"].strip() not in ("0", "1"):
        raise DataError(f"line {line}: class {row['class']!r} is neither 0 nor 1")
    return row["image"], int(row["class"]), stem, "", GROUP


def _bfree(row: dict, stem: str, line: int) -> tuple:
    label = _label(row["label"], line)
    return row["filename"], label, stem, "", GROUP


DIALECTS = (
    Dialect("sidbench", ("path", "label"), _native),
    Dialect("grip", ("filename", "typ"), _typ),
    Dialect("spai", ("image", "class"), _spai),
    Dialect("bfree", ("filename", "label"), _bfree),
)
ROLE_COLUMN = {"spai": "split"}  # lists whose split column says train/val/test rather than naming a test split


def dialect_of(columns: list[str]) -> Dialect | None:
    return next((d for d in DIALECTS if set(d.needs) <= set(columns)), None)


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The lower-cased header and the non-blank rows (line number, values stripped) of a CSV file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            columns = [c.strip().lower() for c in next(reader, [])]
            rows = [(reader.line_num, dict(zip(columns, [v.strip() for v in r] + [""] * len(columns))))
                    for r in reader if any(v.strip() for v in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV list ({exc})") from None
    return columns, rows


class ManifestLayout:
    """A CSV file listing images and labels (see the module docstring for the columns it reads)."""

    name = "csv"
    roles = ("test", "train", "val")

    def matches(self, root: Path) -> bool:
        return Path(root).is_file() and Path(root).suffix.lower() == ".csv"

    def claims(self, root: Path) -> list[Path]:
        return [Path(root)]

    def records(self, root: Path, role: str = "test", **options: Any) -> list:
        path = Path(root)
        columns, rows = read_rows(path)
        dialect = dialect_of(columns)
        if dialect is None:
            raise DataError(f"{path}: unknown CSV columns {columns}; give path,label[,split,generator,group] "
                            "(label 0/1 or real/fake; paths relative to the CSV)")
        role_col = ROLE_COLUMN.get(dialect.name)
        if role_col in columns:
            present = sorted({r.get(role_col, "") for _, r in rows})
            rows = [(n, r) for n, r in rows if r.get(role_col, "").lower() == role]
            if not rows:
                raise DataError(f"{path}: no rows with {role_col} = {role} (present: {', '.join(present)})")
        base, stem, out = path.parent, path.stem, []
        seen: dict[str, list[tuple[int, int, str]]] = {}  # image -> (line, label, split) of the rows listing it
        for line, row in rows:
            try:
                file, label, split, generator, group = dialect.row(row, stem, line)
            except DataError as exc:
                raise DataError(f"{path}: {exc}") from None
            if not file:
                raise DataError(f"{path}: line {line}: empty {dialect.needs[0]}")
            full = os.path.join(base, file)
            check_labels(path, seen.setdefault(os.path.normpath(full), []), line, label, split, file)
            out.append(Record(full, label, split, group, generator))
        if not out:
            raise DataError(f"{path}: the CSV list has no rows")
        return shared_reals(out, stem) if dialect.name == "grip" else out


def check_labels(path: Path, earlier: list[tuple[int, int, str]], line: int, label: int, split: str, file: str) -> None:
    """Refuse an image listed with both labels in one split (a split "" is every split: a grip list's reals),
    naming both lines; then remember this row."""
    for other_line, other_label, other_split in earlier:
        if other_label != label and (other_split == split or "" in (other_split, split)):
            where = f" in split {split!r}" if split else ""
            raise DataError(f"{path}: lines {other_line} and {line} give {file!r} both labels{where} "
                            f"({'real' if other_label == REAL else 'fake'} and {'real' if label == REAL else 'fake'}); "
                            "keep the right one")
    earlier.append((line, label, split))


def shared_reals(records: list[Record], stem: str) -> list[Record]:
    """A grip-unina list: every real in the split of every generator (the split left empty for reals)."""
    fakes = [r for r in records if r.label == FAKE]
    splits = sorted({r.split for r in fakes}) or [stem]
    reals = [r for r in records if r.label == REAL]
    return [Record(r.path, r.label, s, r.group, r.generator) for s in splits for r in reals] + fakes


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="csv",
            factory="sidbench.datasets.manifest:ManifestLayout",
            description="a CSV list (--data list.csv): path,label[,split,generator,group], paths relative to the "
                        "CSV; also SynthWildX (filename,typ), SPAI (image,class,split) and B-Free (filename,label) lists",
            priority=60,
        )
    ]
