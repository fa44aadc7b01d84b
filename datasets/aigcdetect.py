"""The AIGCDetectBenchmark test set (Zhong et al., PatchCraft, arXiv:2311.12397; Ekko-zn/AIGCDetectBenchmark):
CNNDetection's eight GAN sets and eight GenImage generators, each with its own reals::

    test/progan/<class>/{0_real,1_fake}/    class level: progan, stylegan, stylegan2, cyclegan (merged)
    test/biggan/{0_real,1_fake}/            flat: biggan, stargan, gaugan, whichfaceisreal, ADM, Glide,
                                            Midjourney, stable_diffusion_v_1_4, stable_diffusion_v_1_5,
                                            VQDM, wukong, DALLE2

The 16 names and their spelling are those of the official ``eval_config.py``; the class level is read from
the tree as its ``loadpathslist`` does. The SDXL set added in 2024 (``sd_xl`` in third-party configs) is
read when present; any other set folder becomes a split of group ``other``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sidbench.api import DataError, DatasetSpec, hookimpl
from sidbench.data.trees import children, find_dir, has_labels, read_sets

GAN = ("progan", "stylegan", "biggan", "cyclegan", "stargan", "gaugan", "stylegan2", "whichfaceisreal")
DIFFUSION = ("ADM", "Glide", "Midjourney", "stable_diffusion_v_1_4", "stable_diffusion_v_1_5", "VQDM", "wukong", "DALLE2")
SPLITS = (*GAN, *DIFFUSION)  # eval_config.py's order
EXTRA = ("sd_xl",)  # added 2024-03-08, not in eval_config.py; its folder name is not confirmed officially
KNOWN = {s.lower(): (s, "gan" if s in GAN else "diffusion") for s in (*SPLITS, *EXTRA)}
MARKERS = {s.lower() for s in DIFFUSION}  # the sets that tell this tree from CNNDetection's


def is_test_root(folder: Path) -> bool:
    """Holds at least one of the GenImage-derived sets with its own 0_real/1_fake, and no UFD diffusion tree."""
    kids = children(folder)
    return "diffusion_datasets" not in kids and any(has_labels(kids[m]) for m in MARKERS if m in kids)


class AIGCDetectLayout:
    """The 16 AIGCDetectBenchmark test sets (each against its own reals), plus any others in the tree."""

    name = "aigcdetect"
    roles = ("test",)
    published = SPLITS

    def test_root(self, root: Path) -> Path | None:
        return find_dir(Path(root), is_test_root)

    def matches(self, root: Path) -> bool:
        return self.test_root(root) is not None

    def claims(self, root: Path) -> list[Path]:
        test = self.test_root(root)
        return [test] if test else []

    def records(self, root: Path, **options: Any) -> list:
        test = self.test_root(root)
        if test is None:
            raise DataError(f"{root}: no AIGCDetectBenchmark test tree (test/ADM/0_real, test/progan/<class>/1_fake, ...)")
        return read_sets(test, KNOWN).finish(test, "AIGCDetectBenchmark", SPLITS,
                                             "none of the AIGCDetectBenchmark sets has both 0_real and 1_fake images")


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="aigcdetect",
            factory="sidbench.datasets.aigcdetect:AIGCDetectLayout",
            description="AIGCDetectBenchmark test set: test/<set>/{0_real,1_fake} (progan, stylegan, stylegan2, "
                        "cyclegan with a class level), 16 sets: 8 GAN + 8 GenImage generators",
            priority=55,
        )
    ]
