"""Community Forensics (Park and Owens, CVPR 2025; JeongsooP/Community-Forensics): local copies of its
evaluation data, in the folder format its ``dataset_folder_based`` loader reads::

    ROOT/<generator_or_dataset_name>/real/*.{jpg,png,...}
    ROOT/<generator_or_dataset_name>/fake/*
    ROOT/index.csv                               written by the official loader; ignored here

One test split per generator folder, its ``real/`` against its ``fake/`` (label names ``real:0,fake:1``,
the loader's default). The Hugging Face release (``OwensLab/CommunityForensics-Eval``) is parquet: export
it to this tree (one folder per ``model_name``, images under ``real``/``fake`` by ``label``) to read it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sidbench.api import DataError, DatasetSpec, hookimpl
from sidbench.data.layout import files_in
from sidbench.data.trees import SetsRead, children, find_dir, subdirs

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
        read = SetsRead()
        for folder in self.claims(root):
            read.add(folder.name, GROUP, *label_folders(folder), need_both=role == "test")
        return read.finish(base, "Community Forensics", [], "no Community Forensics generator folder has both real/ and fake/ images")


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
