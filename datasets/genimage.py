"""GenImage (Zhu et al., NeurIPS 2023 Datasets and Benchmarks; GenImage-Dataset/GenImage): eight generators,
each with its own ImageNet reals. As unpacked (the names of DRCT's ``GenImage_LIST``)::

    ROOT/<Generator>/<subfolder>/{train,val}/{ai,nature}/     ai = fake (PNG), nature = real (ImageNet JPEG)
    ADM/imagenet_ai_0508_adm    BigGAN/imagenet_ai_0419_biggan    glide/imagenet_glide
    Midjourney/imagenet_midjourney    stable_diffusion_v_1_4/imagenet_ai_0419_sdv4
    stable_diffusion_v_1_5/imagenet_ai_0424_sdv5    VQDM/imagenet_ai_0419_vqdm    wukong/imagenet_ai_0424_wukong

The README (GenImage-Dataset/GenImage) shows the generator folders as ``Midjourney``, ``Stable Diffusion V1.4``,
``Stable Diffusion V1.5``, ``ADM``, ``GLIDE``, ``Wukong``, ``VQDM``, ``BigGAN`` holding ``train/`` and ``val/``
directly; those names (any case, spaces or punctuation) give the same eight splits.

A generator's test split is its ``val/`` (nature against ai), named after the generator folder; ``--train``
reads ``train/`` (``--train ROOT/stable_diffusion_v_1_4``: the usual SD v1.4 protocol). The tree is found
from its ``{train,val}/{ai,nature}`` folders at any depth, so copies without the generator level, with
lower-case generator folders or an extra top folder work too; a subfolder it does not know is read as a
split of group ``other``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sidbench.api import DataError, DatasetSpec, hookimpl
from sidbench.data.layout import files_in
from sidbench.data.trees import OTHER, SetsRead, child, children, find_dirs, warn

GENERATORS = ("Midjourney", "stable_diffusion_v_1_4", "stable_diffusion_v_1_5", "ADM", "glide", "wukong", "VQDM",
              "BigGAN")  # the README's Table 3 column order
SUBFOLDERS = {
    "imagenet_ai_0508_adm": "ADM", "imagenet_ai_0419_biggan": "BigGAN", "imagenet_glide": "glide",
    "imagenet_midjourney": "Midjourney", "imagenet_ai_0419_sdv4": "stable_diffusion_v_1_4",
    "imagenet_ai_0424_sdv5": "stable_diffusion_v_1_5", "imagenet_ai_0419_vqdm": "VQDM",
    "imagenet_ai_0424_wukong": "wukong",
}


def folder_key(name: str) -> str:
    """A generator folder name without case, spaces or punctuation: the README's ``Stable Diffusion V1.4``,
    the archives' ``stable_diffusion_v_1_4`` and ``stable-diffusion-v1.4`` are one key."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Generator folder -> split: the archives' names and the README's ("Stable Diffusion V1.4", "GLIDE", "Wukong").
BY_FOLDER = {**{folder_key(g): g for g in GENERATORS},
             "sdv14": "stable_diffusion_v_1_4", "sdv15": "stable_diffusion_v_1_5"}
GROUP = "genimage"
PARTS = {"test": "val", "val": "val", "train": "train"}


def is_part(folder: Path) -> bool:
    """A ``train/`` or ``val/`` folder: it holds ``ai/`` or ``nature/``."""
    return bool({"ai", "nature"} & set(children(folder)))


def is_unit(folder: Path) -> bool:
    """One generator's subfolder: it holds ``train/`` or ``val/`` parts."""
    kids = children(folder)
    return any(is_part(kids[p]) for p in ("train", "val") if p in kids)


def generator_of(unit: Path) -> tuple[str, str]:
    """(split name, group) of a subfolder: the generator it belongs to, from its own name or its parent's."""
    for name in (unit.name, unit.parent.name):
        gen = SUBFOLDERS.get(name.lower()) or BY_FOLDER.get(folder_key(name))
        if gen:
            return gen, GROUP
    return unit.name, OTHER


class GenImageLayout:
    """Each generator's ``val/`` as one test split (its nature against its ai); ``train/`` for training."""

    name = "genimage"
    roles = ("test", "train", "val")
    published = GENERATORS

    @staticmethod
    def units(root: Path) -> list[Path]:
        """The subfolders holding train/val parts; ``root`` itself when it is a part (``.../val``)."""
        root = Path(root)
        return [root] if is_part(root) else find_dirs(root, is_unit, depth=3)

    def matches(self, root: Path) -> bool:
        return bool(self.units(root))

    def claims(self, root: Path) -> list[Path]:
        return self.units(root)

    def records(self, root: Path, role: str = "test", **options: Any) -> list:
        root, read = Path(root), SetsRead()
        units = self.units(root)
        if not units:
            raise DataError(f"{root}: no GenImage tree (<Generator>/<subfolder>/{{train,val}}/{{ai,nature}}/)")
        if units == [root] and is_part(root):  # a part given directly: read it as it is
            split, group = generator_of(root.parent)
            read.add(split, group, *self.part_files(root), need_both=role == "test")
        else:
            for unit in units:
                split, group = generator_of(unit)
                part = child(unit, PARTS[role])
                read.add(split, group, *(self.part_files(part) if part else ([], [])), need_both=role == "test")
        if role == "val":
            warn(f"{root}: GenImage has no validation split: --val reads val/, which is also its test split")
        expected = GENERATORS if role == "test" and len(units) > 1 else ()
        return read.finish(root, "GenImage", expected, f"no GenImage {PARTS[role]}/ folder with both nature/ and ai/ images")

    @staticmethod
    def part_files(part: Path) -> tuple[list[Path], list[Path]]:
        """(reals, fakes) of one part: ``nature/`` and ``ai/``, spelled in any case."""
        nature, ai = child(part, "nature"), child(part, "ai")
        return (files_in(nature, drop_metadata=True) if nature else [],
                files_in(ai, drop_metadata=True) if ai else [])


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="genimage",
            factory="sidbench.datasets.genimage:GenImageLayout",
            description="GenImage: <Generator>/<subfolder>/{train,val}/{ai,nature}; test = each generator's val/ "
                        "(8 splits); --train ROOT/<Generator> reads its train/",
            priority=50,
        )
    ]
