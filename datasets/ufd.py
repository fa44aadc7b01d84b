"""The UniversalFakeDetect test tree: CNNDetection's 12 GAN/low-level sets + the 8 diffusion sets.

Layout (``--data ROOT`` names the folder holding ``test/`` or ``test/`` itself)::

    test/progan/<category>/{0_real,1_fake}/     class level: progan, stylegan, stylegan2, cyclegan (merged)
    test/biggan/{0_real,1_fake}/                flat: biggan, stargan, gaugan, deepfake, seeingdark, san, crn, imle
    test/diffusion_datasets/imagenet/0_real/    reals of guided
    test/diffusion_datasets/laion/0_real/       reals of ldm_*, glide_*, dalle
    test/diffusion_datasets/<set>/1_fake/       fakes of each diffusion set

The pairings are those of UniversalFakeDetect's ``dataset_paths.py`` and RINE's ``EvaluationDataset``. Whether a
set has a class level is read from the tree (label folders directly under the set folder or not), as the
official loaders do. Any other set folder (CNNDetection's whichfaceisreal, one you add) becomes a split of
group ``other``, named in one line; suites keep the published 20 (``published``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from sidbench.data.layout import files_in
from sidbench.data.trees import SetsRead, child, find_dir, read_sets, subdirs
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
    names = {d.name.lower() for d in subdirs(folder)}
    return len(names & set(TOP)) + (DIFFUSION_DIR in names)


class UFDLayout:
    """The 20 UniversalFakeDetect test sets; class-level sets are merged into one split each; any other
    set folder in the tree is read too, as group ``other`` (whichfaceisreal, a set you added)."""

    name = "ufd"
    roles = ("test",)
    published = SPLITS

    @staticmethod
    def test_root(root: Path) -> Path | None:
        """The folder holding the sets: ``root/test``, ``root`` or one a level or two below (an archive's top folder)."""
        return find_dir(Path(root), lambda d: _known_sets(d) >= 1)

    def matches(self, root: Path) -> bool:
        test = find_dir(Path(root), lambda d: _known_sets(d) >= 2 or (
            _known_sets(d) == 1 and any((d / DIFFUSION_DIR / s).is_dir() for s in DIFFUSION)))
        return test is not None

    def claims(self, root: Path) -> list[Path]:
        test = self.test_root(root)
        return [test] if test is not None else []

    def records(self, root: Path, splits: Iterable[str] | None = None, **options: Any) -> list:
        test = self.test_root(root)
        if test is None:
            raise DataError(f"{root}: no UniversalFakeDetect test tree (expected test/progan, test/biggan, "
                            "test/diffusion_datasets/...); see the README's benchmarks section")
        read = read_sets(test, TOP, skip=(DIFFUSION_DIR,))
        self.diffusion(child(test, DIFFUSION_DIR), read)
        wanted = list(splits) if splits else None
        if wanted:
            unknown = [s for s in wanted if s not in GROUPS and s not in read.present]
            if unknown:
                raise DataError(f"unknown UniversalFakeDetect set(s) {unknown}; known: {', '.join(SPLITS)}; "
                                f"present: {', '.join(read.present)}")
            read = SetsRead([r for r in read.records if r.split in wanted], [s for s in read.present if s in wanted],
                            [s for s in read.unknown if s in wanted], [s for s in read.incomplete if s in wanted])
        return read.finish(test, TITLE, wanted or SPLITS, "none of the UniversalFakeDetect sets has both 0_real and 1_fake images")

    @staticmethod
    def diffusion(base: Path | None, read: SetsRead) -> None:
        """The diffusion sets: fakes of each set against the reals UFD pairs it with (imagenet or laion);
        any other folder there with its own 0_real and 1_fake is read as group ``other``."""
        if base is None:
            return
        for split, real_dir in DIFFUSION.items():
            real = files_in(base / real_dir / "0_real", drop_metadata=True)
            fake = files_in(base / split / "1_fake", drop_metadata=True)
            if (base / split).is_dir() or fake:
                read.add(split, GROUPS[split], real, fake)
        read.extend(read_sets(base, {}, skip=(*DIFFUSION, *set(DIFFUSION.values()))))


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
