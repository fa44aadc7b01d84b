"""Synthbuster (Bammey 2023): nine text-to-image generators, each paired with ALL RAISE-1k reals.

Layout (``--data ROOT``)::

    ROOT/synthbuster/<generator>/*.png     fakes; prompts.csv and other non-image files are ignored
    ROOT/RAISEpng/*.png                    the 1000 RAISE-1k reals (PNG), shared by every generator

``ROOT`` may also be the ``synthbuster/`` folder itself with ``RAISEpng/`` beside it. Split names are
the generator folder names; the same real image belongs to every split (RINE's and Bammey's protocol).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from sidbench.data.layout import files_in
from sidbench.api import DataError, DatasetSpec, FAKE, REAL, Record, hookimpl

GENERATORS = ("dalle2", "dalle3", "firefly", "glide", "midjourney-v5", "stable-diffusion-1-3",
              "stable-diffusion-1-4", "stable-diffusion-2", "stable-diffusion-xl")
REAL_DIRS = ("RAISEpng", "RAISE", "raise")
GROUP = "synthbuster"


class SynthbusterLayout:
    """Every generator folder of ``synthbuster/`` against all RAISE reals."""

    name = "synthbuster"

    @staticmethod
    def folders(root: Path) -> tuple[Path | None, Path | None]:
        """(the generators' folder, the reals' folder), each None when not found."""
        root = Path(root)
        gen = root / "synthbuster" if (root / "synthbuster").is_dir() else None
        if gen is None and any((root / g).is_dir() for g in GENERATORS):
            gen = root
        reals = None
        for base in filter(None, (root, gen.parent if gen is not None else None)):
            reals = reals or next((base / d for d in REAL_DIRS if (base / d).is_dir()), None)
        return gen, reals

    def matches(self, root: Path) -> bool:
        gen, reals = self.folders(root)
        return gen is not None and reals is not None

    def records(self, root: Path, splits: Iterable[str] | None = None, **options: Any) -> list[Record]:
        gen, reals = self.folders(root)
        if gen is None:
            raise DataError(f"{root}: no synthbuster/ folder with generator folders ({', '.join(GENERATORS)})")
        if reals is None:
            raise DataError(f"{root}: Synthbuster needs the RAISE-1k reals in {root}/RAISEpng/ "
                            "(every generator is scored against all of them)")
        real = files_in(reals, drop_metadata=True)
        if not real:
            raise DataError(f"{reals}: no real images")
        wanted = set(splits) if splits else None
        out = []
        for folder in sorted(p for p in gen.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if wanted is not None and folder.name not in wanted:
                continue
            fake = files_in(folder, drop_metadata=True)
            if not fake:
                continue
            split = folder.name
            out += [Record(str(p), REAL, split, GROUP, "") for p in real]
            out += [Record(str(p), FAKE, split, GROUP, split) for p in fake]
        missing = sorted((wanted or set(GENERATORS)) - {r.split for r in out})
        if missing:
            from sidbench.datasets.ufd import warn

            warn(f"{gen}: Synthbuster generator folder(s) missing or empty, left out: {', '.join(missing)}")
        if not out:
            raise DataError(f"{gen}: no generator folder with images")
        return out


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="synthbuster",
            factory="sidbench.datasets.synthbuster:SynthbusterLayout",
            description="Synthbuster: synthbuster/<generator>/ fakes, each against all RAISEpng/ reals",
            priority=50,
        )
    ]
