"""Community Forensics (Park and Owens, CVPR 2025; JeongsooP/Community-Forensics): local copies of its
evaluation data, in the folder format its ``dataset_folder_based`` loader reads::

    ROOT/<generator_or_dataset_name>/real/*.{jpg,png,...}
    ROOT/<generator_or_dataset_name>/fake/*
    ROOT/index.csv                               written by the official loader; ignored here

One test split per generator folder, its ``real/`` against its ``fake/`` (label names ``real:0,fake:1``,
the loader's default). Reals may also sit in folders of their own, as the README's local-data example shows
(``ROOT/ImageNet/real``, ``ROOT/LAION/real``): they are pooled and paired with every generator folder that
holds only ``fake/``; with no such generator, each is read as a real-only split (its false-positive rate).
The Hugging Face release (``OwensLab/CommunityForensics-Eval``) is parquet: export
it to this tree (one folder per ``model_name``, images under ``real``/``fake`` by ``label``) to read it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sidbench.api import DataError, DatasetSpec, hookimpl
from sidbench.data.layout import files_in
from sidbench.data.trees import SetsRead, children, find_dir, note, subdirs

GROUP = "community_forensics"


def label_folders(folder: Path) -> tuple[list[Path], list[Path]]:
    """(reals, fakes) of one generator folder: ``real/`` and ``fake/``, spelled in any case."""
    kids = children(folder)
    get = lambda name: files_in(kids[name], drop_metadata=True) if name in kids else []  # noqa: E731
    return get("real"), get("fake")


def is_generator(folder: Path) -> bool:
    return "fake" in children(folder)


def is_root(folder: Path) -> bool:
    return any(is_generator(d) for d in subdirs(folder))


class CommunityForensicsLayout:
    """``<generator>/real`` against ``<generator>/fake``, one split per generator folder."""

    name = "community_forensics"
    roles = ("test", "train", "val")

    def root_of(self, root: Path) -> Path | None:
        return find_dir(Path(root), is_root, depth=1)

    def matches(self, root: Path) -> bool:
        return self.root_of(root) is not None

    def claims(self, root: Path) -> list[Path]:
        base = self.root_of(root)
        return [d for d in subdirs(base) if {"real", "fake"} & set(children(d))] if base else []

    def records(self, root: Path, role: str = "test", **options: Any) -> list:
        base = self.root_of(root)
        if base is None:
            raise DataError(f"{root}: no Community Forensics folders (<generator>/real/, <generator>/fake/)")
        folders = {f.name: label_folders(f) for f in self.claims(root)}
        if role != "test":  # training data: each folder as it is (one class is fine)
            read = SetsRead()
            for name, (reals, fakes) in folders.items():
                read.add(name, GROUP, reals, fakes, need_both=False)
            return read.finish(base, "Community Forensics", [], "no Community Forensics folder holds images")
        return self.test_sets(base, folders).finish(
            base, "Community Forensics", [],
            "no Community Forensics generator folder has fake/ images with reals to pair")

    @staticmethod
    def test_sets(base: Path, folders: dict[str, tuple[list[Path], list[Path]]]) -> SetsRead:
        """Each folder with real/ and fake/ as one split; reals that sit in their own source folders
        (``ImageNet/real``, ``LAION/real``) are pooled and paired with every generator folder holding only
        fakes; without such generators each source is a real-only split (its false-positive rate)."""
        read = SetsRead()
        sources = {n: r for n, (r, f) in folders.items() if r and not f}
        lone = [n for n, (r, f) in folders.items() if f and not r]
        pooled = [p for reals in sources.values() for p in reals]
        for name, (reals, fakes) in folders.items():
            if reals and fakes:
                read.add(name, GROUP, reals, fakes)
            elif fakes:
                read.add(name, GROUP, pooled, fakes)
            elif reals and not lone:
                read.add(name, GROUP, reals, [], need_both=False)
        if sources and lone:
            note(f"{base}: the reals of {', '.join(sources)} are paired with each generator folder holding only "
                 f"fakes: {', '.join(lone)}")
        return read


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="community_forensics",
            factory="sidbench.datasets.community_forensics:CommunityForensicsLayout",
            description="Community Forensics evaluation copies: <generator>/{real,fake}/, one split per generator",
            priority=40,
        )
    ]
