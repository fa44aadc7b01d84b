"""DRCT-2M (Chen et al., "DRCT: Diffusion Reconstruction Contrastive Training towards Universal Detection of
Diffusion Generated Images", ICML 2024; beibuwandeluori/DRCT): sixteen Stable-Diffusion-family generators
prompted with MS-COCO captions. The official loader (``load_DRCT_2M``) reads two roots::

    MSCOCO/val2017/*.jpg                    the reals, shared by every generator (COCO 2017 val)
    DRCT-2M/<generator>/val2017/*           that generator's test fakes (train2017/: its training fakes)

Test split = one generator's ``val2017`` fakes against all COCO ``val2017`` reals (the official pairing:
``scripts/test_DRCT-2M.sh`` runs each generator index against the same reals). ``--data`` names a folder
holding both roots, or ``DRCT-2M/`` with the COCO folder (any folder whose name contains ``coco``) beside it.
A generator folder the official list does not name is read as a split of group ``other``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sidbench.api import DataError, DatasetSpec, hookimpl
from sidbench.data.layout import files_in
from sidbench.data.trees import OTHER, SetsRead, child, children, find_dir, subdirs

GENERATORS = (  # data/dataset.py CLASS2LABEL_MAPPING, labels 1..16
    "ldm-text2im-large-256", "stable-diffusion-v1-4", "stable-diffusion-v1-5", "stable-diffusion-2-1",
    "stable-diffusion-xl-base-1.0", "stable-diffusion-xl-refiner-1.0", "sd-turbo", "sdxl-turbo", "lcm-lora-sdv1-5",
    "lcm-lora-sdxl", "sd-controlnet-canny", "sd21-controlnet-canny", "controlnet-canny-sdxl-1.0",
    "stable-diffusion-inpainting", "stable-diffusion-2-inpainting", "stable-diffusion-xl-1.0-inpainting-0.1",
)
KNOWN = {g.lower(): g for g in GENERATORS}
GROUP = "drct"
TEST_PART = "val2017"
PARTS = ("val2017", "train2017")


def has_parts(folder: Path) -> bool:
    return bool(set(PARTS) & set(children(folder)))


def is_coco(folder: Path) -> bool:
    return "coco" in folder.name.lower() and has_parts(folder)


def is_generator(folder: Path) -> bool:
    return not is_coco(folder) and has_parts(folder)


def is_fake_root(folder: Path) -> bool:
    return any(is_generator(d) for d in subdirs(folder))


class DRCTLayout:
    """Each generator's ``val2017`` fakes against all MS-COCO ``val2017`` reals."""

    name = "drct"
    roles = ("test",)
    published = GENERATORS

    @staticmethod
    def folders(root: Path) -> tuple[Path | None, Path | None]:
        """(the generators' folder, the COCO folder), each None when not found."""
        fakes = find_dir(Path(root), is_fake_root)
        if fakes is None:
            return None, None
        places = (fakes, fakes.parent, Path(root))
        coco = next((d for base in places for d in subdirs(base) if is_coco(d)), None)
        return fakes, coco

    def matches(self, root: Path) -> bool:
        """Generator folders with val2017/train2017, and either the COCO reals or a generator the official list names."""
        fakes, coco = self.folders(root)
        return fakes is not None and (coco is not None or any(d.name.lower() in KNOWN for d in subdirs(fakes)))

    def claims(self, root: Path) -> list[Path]:
        return [p for p in self.folders(root) if p is not None]

    def records(self, root: Path, **options: Any) -> list:
        fakes, coco = self.folders(root)
        if fakes is None:
            raise DataError(f"{root}: no DRCT-2M tree (DRCT-2M/<generator>/val2017/)")
        reals_dir = child(coco, TEST_PART) if coco is not None else None
        if reals_dir is None:
            raise DataError(f"{fakes}: DRCT-2M pairs every generator with the MS-COCO val2017 reals; put them in "
                            f"{fakes.parent / 'MSCOCO' / TEST_PART}/ (any folder whose name contains 'coco', beside "
                            f"{fakes.name}/ or inside --data)")
        reals = files_in(reals_dir, drop_metadata=True)
        read = SetsRead()
        for gen in (d for d in subdirs(fakes) if is_generator(d)):
            split = KNOWN.get(gen.name.lower(), gen.name)
            group = GROUP if gen.name.lower() in KNOWN else OTHER
            part = child(gen, TEST_PART)
            read.add(split, group, reals, files_in(part, drop_metadata=True) if part else [])
        return read.finish(fakes, "DRCT-2M", GENERATORS, f"no DRCT-2M generator has val2017 fakes (or {reals_dir} holds no reals)")


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec(
            name="drct",
            factory="sidbench.datasets.drct:DRCTLayout",
            description="DRCT-2M: DRCT-2M/<generator>/val2017 fakes, each against all MSCOCO/val2017 reals (16 splits)",
            priority=50,
        )
    ]
