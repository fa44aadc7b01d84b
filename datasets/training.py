"""Training-set layouts: CNNDetection's ProGAN set (with class selection) and the latent-diffusion set.

ProGAN (Wang et al. 2020; UnivFD, RINE 1/2/4-class)::

    ROOT/[train/][progan/]<class>/{0_real,1_fake}/*.png     split = class (airplane ... tvmonitor)

Latent-diffusion training set (Corvi et al. 2023, grip-unina DMimageDetection; RINE's ``LDM`` model),
read as RINE's ``TrainingDatasetLDM`` does::

    ROOT/latent_diffusion_trainingset/<part>/<fake folder>/*      fakes (part: train, valid)
    ROOT/latent_diffusion_trainingset/<part>/real_lsun.txt        '<class>_<file>' -> ROOT/train/<class>/0_real/<file>
    ROOT/latent_diffusion_trainingset/<part>/real_coco.txt        '<id>.jpg' -> ROOT/coco/{train2014,val2014}/COCO_<set>_<id>.jpg
                                                                  (or ROOT/coco/train2017/<id>.jpg)

Both serve ``--train`` and ``--val`` (``--val ROOT`` reads ``ROOT/val/`` and ``valid/``); found beside test sets
under a ``--data`` root they are named and left out. Any other folder with ``0_real``/``1_fake`` in its paths is
the generic ``folder`` layout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from sidbench.data.layout import LABEL_DIRS, files_in
from sidbench.api import DataError, DatasetSpec, FAKE, REAL, Record, hookimpl

LSUN_CLASSES = ("airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
                "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


class ProGANTrainLayout:
    """``<class>/{0_real,1_fake}`` folders of LSUN class names; ``classes`` picks some (RINE's 1/2/4-class).
    Given a root holding ``train/`` and ``val/``, ``--train`` reads ``train/`` and ``--val`` reads ``val/``."""

    name = "progan_train"
    roles = ("train", "val")
    CANDIDATES = {"train": ("train/progan", "train", "progan", "."), "val": ("val/progan", "val", "progan", ".")}

    @staticmethod
    def is_class_root(cand: Path) -> bool:
        if not cand.is_dir():
            return False
        labelled = [d.name for d in cand.iterdir() if (d / "0_real").is_dir() and (d / "1_fake").is_dir()]
        # every labelled folder must be an LSUN class: "train/" and "test/" splits are not the class "train"
        return bool(labelled) and all(n in LSUN_CLASSES for n in labelled) and (len(labelled) >= 2 or cand.name == "progan")

    @classmethod
    def class_root(cls, root: Path, role: str = "train") -> Path | None:
        cands = cls.CANDIDATES["val" if role == "val" else "train"]
        return next((root / c for c in cands if cls.is_class_root(root / c)), None)

    def matches(self, root: Path) -> bool:
        return bool(self.claims(root))

    def claims(self, root: Path) -> list[Path]:
        """The class roots of the training and the validation part."""
        found = {self.class_root(Path(root), role) for role in ("train", "val")}
        return sorted(p for p in found if p is not None)

    def records(self, root: Path, classes: Iterable[str] | str | None = None, role: str = "train",
                **options: Any) -> list[Record]:
        base = self.class_root(Path(root), role)
        if base is None:
            raise DataError(f"{root}: no ProGAN training folders (<class>/0_real, <class>/1_fake with LSUN class names)")
        present = [c for c in LSUN_CLASSES if (base / c).is_dir()]
        if isinstance(classes, str):
            classes = [c.strip() for c in classes.split(",") if c.strip()]
        chosen = list(classes) if classes else present
        absent = [c for c in chosen if c not in present]
        if absent:
            raise DataError(f"{base}: no ProGAN class folder(s) {absent}; present: {', '.join(present)}")
        out = []
        for c in chosen:
            for sub, label in LABEL_DIRS.items():
                out += [Record(str(p), label, c, "progan", "progan" if label == FAKE else "")
                        for p in files_in(base / c / sub, drop_metadata=True)]
        return out


class LDMTrainLayout:
    """The latent-diffusion training set, reals resolved from the lists as RINE's loader does."""

    name = "ldm_train"
    roles = ("train", "val")

    def matches(self, root: Path) -> bool:
        return (Path(root) / "latent_diffusion_trainingset").is_dir()

    def claims(self, root: Path) -> list[Path]:
        return [Path(root) / "latent_diffusion_trainingset"]

    def records(self, root: Path, part: str | None = None, role: str = "train", **options: Any) -> list[Record]:
        root = Path(root)
        part = part or ("valid" if role == "val" else "train")
        base = root / "latent_diffusion_trainingset" / part
        if not base.is_dir():
            have = sorted(p.name for p in (root / "latent_diffusion_trainingset").glob("*") if p.is_dir())
            raise DataError(f"{base}: no such part of the latent-diffusion training set; present: {have}")
        reals = [root / "train" / c / "0_real" / f for c, f in (_split_lsun(x) for x in _lines(base / "real_lsun.txt"))]
        reals += [_coco(root, x) for x in _lines(base / "real_coco.txt")]
        fakes = [p for d in sorted(base.iterdir()) if d.is_dir() for p in files_in(d, drop_metadata=True)]
        if not reals or not fakes:
            raise DataError(f"{base}: needs real_lsun.txt / real_coco.txt and fake image folders")
        # Listed reals that are absent stay in: the loader reports them in skipped.csv.
        return ([Record(str(p), REAL, part, "ldm", "") for p in reals]
                + [Record(str(p), FAKE, part, "ldm", "ldm") for p in fakes])


def _lines(path: Path) -> list[str]:
    return [x.strip() for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def _split_lsun(entry: str) -> tuple[str, str]:
    cls, _, name = entry.partition("_")
    return cls, name


def _coco(root: Path, entry: str) -> Path:
    for sub, prefix in (("train2014", "COCO_train2014_"), ("val2014", "COCO_val2014_"), ("train2017", "")):
        p = root / "coco" / sub / f"{prefix}{entry}"
        if p.exists():
            return p
    return root / "coco" / "train2014" / f"COCO_train2014_{entry}"


@hookimpl
def sidbench_datasets():
    return [
        DatasetSpec("progan_train", "sidbench.datasets.training:ProGANTrainLayout",
                    "CNNDetection ProGAN training set: <class>/{0_real,1_fake}, split = LSUN class; option classes", 30),
        DatasetSpec("ldm_train", "sidbench.datasets.training:LDMTrainLayout",
                    "latent-diffusion training set (grip-unina DMimageDetection, RINE's LDM model); option part", 35),
    ]
