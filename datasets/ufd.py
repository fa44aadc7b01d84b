"""The UniversalFakeDetect test tree: CNNDetection's 12 GAN/low-level sets + the 8 diffusion sets.

Layout::

    test/progan/<category>/{0_real,1_fake}/     class level: progan, stylegan, stylegan2, cyclegan (merged)
    test/biggan/{0_real,1_fake}/                flat: biggan, stargan, gaugan, deepfake, seeingdark, san, crn, imle
    diffusion_datasets/imagenet/0_real/         reals of guided
    diffusion_datasets/laion/0_real/            reals of ldm_*, glide_*, dalle
    diffusion_datasets/<set>/1_fake/            fakes of each diffusion set

``diffusion_datasets/`` may sit inside ``test/`` or anywhere else: UniversalFakeDetect's README unpacks the
CNNDetection sets into ``datasets/test`` and the diffusion sets into ``./diffusion_datasets`` beside
``datasets/``. ``--data ROOT`` may name a folder holding both (they are found up to three levels down), the
``test/`` folder, the ``diffusion_datasets/`` folder, or two roots given together (``--data datasets/test
--data diffusion_datasets``): each diffusion set is always paired with the reals UFD pairs it with, and
the sets one root holds are not reported missing when another root of the same command holds them.

The pairings are those of UniversalFakeDetect's ``dataset_paths.py`` and RINE's ``EvaluationDataset``. Whether a
set has a class level is read from the tree (label folders directly under the set folder or not), as the
official loaders do. Any other set folder (CNNDetection's whichfaceisreal, one you add) becomes a split of
group ``other``, named in one line; suites keep the published 20 (``published``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from sidbench.data.layout import files_in, within
from sidbench.data.trees import SetsRead, child, companion_roots, find_dir, read_sets, subdirs
from sidbench.api import DataError, DatasetSpec, hookimpl

NESTED = ("progan", "stylegan", "stylegan2", "cyclegan")
FLAT = ("biggan", "stargan", "gaugan", "deepfake", "seeingdark", "san", "crn", "imle")
DIFFUSION = {  # fake set -> the folder under diffusion_datasets/ holding its reals
    "guided": "imagenet",
    "ldm_200": "laion", "ldm_200_cfg": "laion", "ldm_100": "laion",
    "glide_100_27": "laion", "glide_50_27": "laion", "glide_100_10": "laion",
    "dalle": "laion",
}
GROUPS = {
    **{s: "gan" for s in ("progan", "stylegan", "stylegan2", "biggan", "cyclegan", "stargan", "gaugan")},
    "deepfake": "deepfake", "seeingdark": "low_level", "san": "low_level", "crn": "perceptual", "imle": "perceptual",
    **{s: "diffusion" for s in DIFFUSION},
}
SPLITS = (*NESTED[:3], "biggan", "cyclegan", *FLAT[1:], *DIFFUSION)  # the paper's column order, 20 sets
TOP = {s: (s, GROUPS[s]) for s in (*NESTED, *FLAT)}  # the sets directly under test/
DIFFUSION_DIR = "diffusion_datasets"
TITLE = "UniversalFakeDetect"


def _known_sets(folder: Path) -> int:
    """How many CNNDetection set folders ``folder`` holds directly."""
    return len({d.name.lower() for d in subdirs(folder)} & set(TOP))


def is_diffusion_root(folder: Path) -> bool:
    """A ``diffusion_datasets`` folder: one of the diffusion fake sets, and either that name or the reals
    folder (``imagenet/0_real`` or ``laion/0_real``); a folder of your own named ``dalle/`` is not enough."""
    kids = {d.name.lower(): d for d in subdirs(folder)}
    if not set(kids) & set(DIFFUSION):
        return False
    return folder.name.lower() == DIFFUSION_DIR or any(
        (kids[r] / "0_real").is_dir() for r in set(DIFFUSION.values()) if r in kids)


def cnn_root(root: Path, least: int = 1) -> Path | None:
    """The folder holding the CNNDetection sets (``test/``), at most three levels below ``root``."""
    return find_dir(Path(root), lambda d: _known_sets(d) >= least)


def diffusion_root(root: Path, test: Path | None) -> Path | None:
    """The ``diffusion_datasets`` folder: inside ``test/`` (CNNDetection + UFD merged), else anywhere under ``root``."""
    inside = child(test, DIFFUSION_DIR) if test is not None else None
    if inside is not None:
        return inside
    found = find_dir(Path(root), is_diffusion_root)
    return found if found is not None and (test is None or not within(found, test)) else None


def sets_of(root: Path) -> set[str]:
    """The UFD set names a root holds, from folder names only (no file listed)."""
    test, diff = UFDLayout.roots(root)
    have = {d.name.lower() for d in subdirs(test)} & set(TOP) if test is not None else set()
    have |= {d.name.lower() for d in subdirs(diff)} & set(DIFFUSION) if diff is not None else set()
    return have


class UFDLayout:
    """The 20 UniversalFakeDetect test sets; class-level sets are merged into one split each; any other
    set folder in the tree is read too, as group ``other`` (whichfaceisreal, a set you added)."""

    name = "ufd"
    roles = ("test",)
    published = SPLITS

    @staticmethod
    def roots(root: Path) -> tuple[Path | None, Path | None]:
        """(CNNDetection ``test/`` folder: ``root/test``, ``root`` or one up to three levels below;
        ``diffusion_datasets/`` folder) under ``root``; either may be None."""
        test = cnn_root(root)
        return test, diffusion_root(root, test)

    def matches(self, root: Path) -> bool:
        return cnn_root(root, least=2) is not None or diffusion_root(root, None) is not None

    def claims(self, root: Path) -> list[Path]:
        test, diff = self.roots(root)
        out = [test] if test is not None else []
        return out + ([diff] if diff is not None and not (test is not None and within(diff, test)) else [])

    def records(self, root: Path, splits: Iterable[str] | None = None, **options: Any) -> list:
        test, diff = self.roots(root)
        if test is None and diff is None:
            raise DataError(f"{root}: no UniversalFakeDetect test tree (expected test/progan, test/biggan, "
                            "diffusion_datasets/...); see docs/datasets.md")
        read = read_sets(test, TOP, skip=(DIFFUSION_DIR,)) if test is not None else SetsRead()
        self.diffusion(diff, read)
        wanted = list(splits) if splits else None
        if wanted:
            unknown = [s for s in wanted if s not in GROUPS and s not in read.present]
            if unknown:
                raise DataError(f"unknown UniversalFakeDetect set(s) {unknown}; known: {', '.join(SPLITS)}; "
                                f"present: {', '.join(read.present)}")
            read = SetsRead([r for r in read.records if r.split in wanted], [s for s in read.present if s in wanted],
                            [s for s in read.unknown if s in wanted], [s for s in read.incomplete if s in wanted])
        elsewhere = set().union(*(sets_of(Path(c)) for c in companion_roots() if not _same(Path(c), root)))
        expected = [s for s in (wanted or SPLITS) if s not in elsewhere]
        where = test if diff is None else diff if test is None else Path(root)
        return read.finish(where, TITLE, expected,
                           "none of the UniversalFakeDetect sets has both 0_real and 1_fake images")

    @staticmethod
    def diffusion(base: Path | None, read: SetsRead) -> None:
        """The diffusion sets: fakes of each set against the reals UFD pairs it with (imagenet or laion);
        any other folder there with its own 0_real and 1_fake is read as group ``other``."""
        if base is None:
            return
        for split, real_dir in DIFFUSION.items():
            reals = child(base, real_dir)
            fakes = child(base, split)
            real = files_in(reals / "0_real", drop_metadata=True) if reals is not None else []
            fake = files_in(fakes / "1_fake", drop_metadata=True) if fakes is not None else []
            if fakes is not None or fake:
                read.add(split, GROUPS[split], real, fake)
        read.extend(read_sets(base, {}, skip=(*DIFFUSION, *set(DIFFUSION.values()))))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == Path(b).resolve()
    except OSError:
        return False


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="ufd",
            factory="sidbench.datasets.ufd:UFDLayout",
            description="UniversalFakeDetect test tree: CNNDetection's test/ + diffusion_datasets/ (20 sets)",
            priority=50,
        )
    ]
