"""Chameleon (Yan et al., "A Sanity Check for AI-generated Image Detection", ICLR 2025; shilinyan99/AIDE):
hard real and AI-made images from the web, a test set only. As ``Chameleon.zip`` unpacks::

    Chameleon/test/0_real/<uuid>.jpg
    Chameleon/test/1_fake/<uuid>.jpg

One split, ``Chameleon``. A ``0_real``/``1_fake`` pair is any folder's layout, so the tree is recognised
by Chameleon's own file names (UUIDs, in both classes); a copy named otherwise is read with
``--dataset chameleon``.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from sidbench.api import DataError, DatasetSpec, hookimpl
from sidbench.data.layout import files_in, iter_files
from sidbench.data.trees import find_dir, paired

SPLIT = "Chameleon"
GROUP = "chameleon"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
SAMPLE = 5  # names looked at per class


def uuid_named(folder: Path) -> bool:
    """The first few files of ``folder`` all have UUID names (there is at least one)."""
    names = [p.stem for p in itertools.islice(iter_files(folder), SAMPLE)]
    return bool(names) and all(UUID.match(n) for n in names)


def is_test(folder: Path) -> bool:
    return all((folder / d).is_dir() and uuid_named(folder / d) for d in ("0_real", "1_fake"))


class ChameleonLayout:
    """``test/0_real`` against ``test/1_fake``: the one Chameleon split."""

    name = "chameleon"
    roles = ("test",)
    published = (SPLIT,)

    @staticmethod
    def test_folder(root: Path, forced: bool = False) -> Path | None:
        test = lambda d: (d / "0_real").is_dir() and (d / "1_fake").is_dir() and (forced or is_test(d))  # noqa: E731
        return find_dir(Path(root), test)

    def matches(self, root: Path) -> bool:
        return self.test_folder(root) is not None

    def claims(self, root: Path) -> list[Path]:
        found = self.test_folder(root)
        return [found] if found else []

    def records(self, root: Path, **options: Any) -> list:
        test = self.test_folder(root) or self.test_folder(root, forced=True)
        if test is None:
            raise DataError(f"{root}: no Chameleon test folder (Chameleon/test/0_real and 1_fake)")
        reals = files_in(test / "0_real", drop_metadata=True)
        fakes = files_in(test / "1_fake", drop_metadata=True)
        if not reals or not fakes:
            raise DataError(f"{test}: Chameleon needs images in both 0_real/ and 1_fake/")
        return paired(SPLIT, GROUP, reals, fakes, generator="")


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="chameleon",
            factory="sidbench.datasets.chameleon:ChameleonLayout",
            description="Chameleon (AIDE): Chameleon/test/{0_real,1_fake} with UUID file names, one split",
            priority=45,
        )
    ]
