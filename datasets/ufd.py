"""The UniversalFakeDetect test tree: CNNDetection's 12 GAN/low-level sets + the 8 diffusion sets.

Layout (``--data ROOT`` names the folder holding ``test/`` or ``test/`` itself)::

    test/progan/<category>/{0_real,1_fake}/     nested: progan, stylegan, stylegan2, cyclegan
    test/biggan/{0_real,1_fake}/                flat: biggan, stargan, gaugan, deepfake, seeingdark, san, crn, imle
    test/diffusion_datasets/imagenet/0_real/    reals of guided
    test/diffusion_datasets/laion/0_real/       reals of ldm_*, glide_*, dalle
    test/diffusion_datasets/<set>/1_fake/       fakes of each diffusion set

The pairings are those of UniversalFakeDetect's ``dataset_paths.py`` and RINE's ``EvaluationDataset``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

from sidbench.data.layout import files_in
from sidbench.api import DataError, DatasetSpec, FAKE, REAL, Record, hookimpl

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


def warn(message: str) -> None:
    print(f"sidbench: warning: {message}", file=sys.stderr, flush=True)


class UFDLayout:
    """The 20 UniversalFakeDetect test sets; nested sets are merged into one split each."""

    name = "ufd"

    @staticmethod
    def test_root(root: Path) -> Path | None:
        """``root/test`` or ``root`` when it holds at least one of the 20 sets' folders."""
        for cand in (Path(root) / "test", Path(root)):
            if cand.is_dir() and any((cand / s).is_dir() for s in (*NESTED, *FLAT, "diffusion_datasets")):
                return cand
        return None

    def matches(self, root: Path) -> bool:
        test = self.test_root(root)
        if test is None:
            return False
        found = [s for s in (*NESTED, *FLAT) if (test / s).is_dir()]
        found += [s for s in DIFFUSION if (test / "diffusion_datasets" / s).is_dir()]
        return len(found) >= 2

    def records(self, root: Path, splits: Iterable[str] | None = None, **options: Any) -> list[Record]:
        test = self.test_root(root)
        if test is None:
            raise DataError(f"{root}: no UniversalFakeDetect test tree (expected test/progan, test/biggan, "
                            "test/diffusion_datasets/...); see the README's benchmarks section")
        wanted = list(splits or SPLITS)
        unknown = [s for s in wanted if s not in GROUPS]
        if unknown:
            raise DataError(f"unknown UniversalFakeDetect set(s) {unknown}; known: {', '.join(SPLITS)}")
        out, missing = [], []
        for split in wanted:
            recs = self.split_records(test, split)
            if recs:
                out += recs
            else:
                missing.append(split)
        if missing:
            warn(f"{test}: {len(missing)} of the {len(wanted)} UniversalFakeDetect sets are missing or "
                 f"lack reals or fakes, left out: {', '.join(missing)}")
        if not out:
            raise DataError(f"{test}: none of the UniversalFakeDetect sets has both 0_real and 1_fake images")
        return out

    @staticmethod
    def split_records(test: Path, split: str) -> list[Record]:
        """One set's records, or [] when its reals or fakes are missing."""
        if split in DIFFUSION:
            base = test / "diffusion_datasets"
            real = files_in(base / DIFFUSION[split] / "0_real", drop_metadata=True)
            fake = files_in(base / split / "1_fake", drop_metadata=True)
        elif split in NESTED:
            cats = sorted(p for p in (test / split).glob("*") if p.is_dir() and not p.name.startswith("."))
            real = [f for c in cats for f in files_in(c / "0_real", drop_metadata=True)]
            fake = [f for c in cats for f in files_in(c / "1_fake", drop_metadata=True)]
        else:
            real = files_in(test / split / "0_real", drop_metadata=True)
            fake = files_in(test / split / "1_fake", drop_metadata=True)
        if not real or not fake:
            return []
        group = GROUPS[split]
        return ([Record(str(p), REAL, split, group, "") for p in real]
                + [Record(str(p), FAKE, split, group, split) for p in fake])


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
