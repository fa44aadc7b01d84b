"""WildRF (Cavia et al., "Real-Time Deepfake Detection in the Real-World", arXiv:2406.09398;
barcavia/RealTime-DeepfakeDetection-in-the-RealWorld): real and fake images collected from social
platforms. As its README shows the unzipped tree::

    WildRF/train/{0_real,1_fake}/                      --train WildRF (or WildRF/train)
    WildRF/val/{0_real,1_fake}/                        --val WildRF (or WildRF/val)
    WildRF/test/{reddit,twitter,facebook}/{0_real,1_fake}/    test splits, one per platform

Test splits are the platforms of ``test/`` (official ``test_config.py``: reddit, twitter, facebook, no
class level); ``train/`` and ``val/`` are never test splits. Another platform folder in ``test/`` is read
as a split of group ``other``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sidbench.api import DataError, DatasetSpec, hookimpl
from sidbench.data.trees import SetsRead, child, children, find_dir, has_labels, labelled_set, read_sets

PLATFORMS = ("reddit", "twitter", "facebook")
GROUP = "wildrf"
KNOWN = {p: (p, GROUP) for p in PLATFORMS}


def is_test(folder: Path) -> bool:
    """The platforms' folder: one of the three platforms in it, with its own 0_real/1_fake."""
    kids = children(folder)
    return any(has_labels(kids[p]) for p in PLATFORMS if p in kids)


class WildRFLayout:
    """``test/<platform>`` as test splits; ``train/`` and ``val/`` as the training and validation data."""

    name = "wildrf"
    roles = ("test", "train", "val")
    published = PLATFORMS

    @staticmethod
    def folders(root: Path) -> tuple[Path | None, Path | None]:
        """(the WildRF folder holding train/val/test or None, the platforms' folder or None)."""
        test = find_dir(Path(root), is_test)
        if test is None:
            return None, None
        top = test.parent if test != Path(root) and test.name.lower() == "test" else None
        return top, test

    def matches(self, root: Path) -> bool:
        return self.folders(root)[1] is not None

    def claims(self, root: Path) -> list[Path]:
        top, test = self.folders(root)
        return [p for p in (top or test,) if p is not None]

    def records(self, root: Path, role: str = "test", **options: Any) -> list:
        top, test = self.folders(root)
        if test is None:
            raise DataError(f"{root}: no WildRF tree (test/{{reddit,twitter,facebook}}/{{0_real,1_fake}})")
        if role == "test":
            return read_sets(test, KNOWN).finish(test, "WildRF", PLATFORMS, "no WildRF platform has both 0_real and 1_fake images")
        part = child(top, role) if top is not None else None
        if part is None or not has_labels(part):
            raise DataError(f"{root}: no WildRF {role}/ folder with 0_real/ and 1_fake/ beside test/")
        read = SetsRead()
        read.add(role, GROUP, *labelled_set(part), need_both=False, generator="")
        return read.finish(part, "WildRF", [], f"no images in {role}/0_real or {role}/1_fake")


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="wildrf",
            factory="sidbench.datasets.wildrf:WildRFLayout",
            description="WildRF: test/{reddit,twitter,facebook}/{0_real,1_fake} as 3 test splits; "
                        "--train/--val WildRF read its train/ and val/",
            priority=50,
        )
    ]
