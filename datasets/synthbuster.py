"""Synthbuster (Bammey 2023), and the extended set (FLUX, SD 3.5): every generator against ALL RAISE-1k reals.

Layouts (``--data ROOT``), as distributed::

    ROOT/synthbuster/<generator>/*.png      fakes; prompts.csv and other non-image files are ignored
    ROOT/synthbuster/real_RAISE_1k/*.png    the 1000 RAISE-1k reals as GRIP distributes them (real_RAISE_1k.zip)
    ROOT/RAISEpng/*.png                     ... or beside synthbuster/, as RINE's loader reads them

``ROOT`` may also be the ``synthbuster/`` folder itself (reals inside it or beside it), or a folder of
generator folders next to ``real_RAISE_1k/`` (the extended set: ``flux/``, ``sd3_large/``). The reals are
the reals of every generator split (RINE's and Bammey's protocol); a real folder is never a generator
split; every other folder with images is a generator, its folder name the split name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from sidbench.data.layout import files_in
from sidbench.data.trees import paired, subdirs, warn
from sidbench.api import DataError, DatasetSpec, Record, hookimpl

GENERATORS = ("dalle2", "dalle3", "firefly", "glide", "midjourney-v5", "stable-diffusion-1-3",
              "stable-diffusion-1-4", "stable-diffusion-2", "stable-diffusion-xl")
EXTENDED = ("flux", "sd3_large")  # B-Free's extended Synthbuster (sd3_flux.zip; folder names as reported)
REAL_INSIDE = ("real_RAISE_1k",)  # inside synthbuster/ (GRIP's real_RAISE_1k.zip)
REAL_BESIDE = ("RAISEpng", "real_RAISE_1k", "RAISE", "raise")  # next to synthbuster/ (RINE: data/RAISEpng)
REAL_NAMES = {n.lower() for n in (*REAL_INSIDE, *REAL_BESIDE, "RAISE-1k", "RAISE_1k", "real")}
GROUP = "synthbuster"


def is_real_folder(folder: Path) -> bool:
    """A folder of reals by its name: never scored as a generator."""
    return folder.name.lower() in REAL_NAMES


class SynthbusterLayout:
    """Every generator folder against all RAISE reals."""

    name = "synthbuster"

    @staticmethod
    def folders(root: Path) -> tuple[Path | None, Path | None]:
        """(the generators' folder, the reals' folder), each None when not found."""
        gen = SynthbusterLayout.generators_folder(Path(root))
        return gen, next(iter(SynthbusterLayout.real_folders(Path(root), gen)), None)

    @staticmethod
    def generators_folder(root: Path) -> Path | None:
        if (root / "synthbuster").is_dir():
            return root / "synthbuster"
        return root if any((root / g).is_dir() for g in (*GENERATORS, *EXTENDED)) else None

    @staticmethod
    def real_folders(root: Path, gen: Path | None) -> list[Path]:
        """Folders of RAISE reals that exist, in order of preference: inside the generators' folder first."""
        candidates = [gen / d for d in REAL_INSIDE] if gen is not None else []
        for base in dict.fromkeys(filter(None, (root, gen.parent if gen is not None else None))):
            candidates += [base / d for d in REAL_BESIDE]
        return [c for c in dict.fromkeys(candidates) if c.is_dir() and c != gen]

    def matches(self, root: Path) -> bool:
        gen, reals = self.folders(root)
        return gen is not None and reals is not None

    def records(self, root: Path, splits: Iterable[str] | None = None, **options: Any) -> list[Record]:
        gen, reals = self.folders(root)
        if gen is None:
            raise DataError(f"{root}: no synthbuster/ folder with generator folders ({', '.join(GENERATORS)})")
        if reals is None:
            raise DataError(f"{root}: Synthbuster needs the RAISE-1k reals in {gen}/real_RAISE_1k/ or "
                            f"{gen.parent}/RAISEpng/ (every generator is scored against all of them)")
        others = self.real_folders(Path(root), gen)[1:]
        if others:
            warn(f"Synthbuster reals: using {reals}, not {', '.join(map(str, others))}")
        real = files_in(reals, drop_metadata=True)
        if not real:
            raise DataError(f"{reals}: no real images")
        wanted = set(splits) if splits else None
        out = []
        for folder in self.generator_folders(gen):
            if wanted is not None and folder.name not in wanted:
                continue
            fake = files_in(folder, drop_metadata=True)
            if fake:
                out += paired(folder.name, GROUP, real, fake)
        self._warn_missing(gen, wanted, {r.split for r in out})
        if not out:
            raise DataError(f"{gen}: no generator folder with images")
        return out

    @staticmethod
    def generator_folders(gen: Path) -> list[Path]:
        """Every visible sub-folder that is not a folder of reals."""
        return [p for p in subdirs(gen) if not is_real_folder(p)]

    @staticmethod
    def _warn_missing(gen: Path, wanted: set[str] | None, found: set[str]) -> None:
        """Name the generators asked for (or, for the original set, the nine) that are missing."""
        expected = wanted if wanted is not None else (set(GENERATORS) if found & set(GENERATORS) else set())
        missing = sorted(expected - found)
        if missing:
            warn(f"{gen}: Synthbuster generator folder(s) missing or empty, left out: {', '.join(missing)}")


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="synthbuster",
            factory="sidbench.datasets.synthbuster:SynthbusterLayout",
            description="Synthbuster (+ extended: flux, sd3_large): synthbuster/<generator>/ fakes, each against "
                        "all RAISE-1k reals (synthbuster/real_RAISE_1k/ or a sibling RAISEpng/)",
            priority=50,
        )
    ]
