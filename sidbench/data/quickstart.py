"""The offline "quickstart" benchmark: small, synthetic, deterministic, generated on first use.

Its images (natural-looking reals; fakes of four generators, two seen in training and two not) are made by
:mod:`sidbench.data.quickstart_images`; this module lays them out, writes the manifest, and reads them back.

Layout (also readable by the generic ``0_real``/``1_fake`` layout)::

    ROOT/{train,val,test}/<gen>/{0_real,1_fake}/*.png
    ROOT/test_jpeg/<gen>_q75/{0_real,1_fake}/*.jpg
    ROOT/MANIFEST.json

Only numpy and Pillow are used, so generating the data never imports torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from ..api.errors import DataError
from ..api.records import FAKE, REAL, Record
from .quickstart_images import GENERATORS, MAKERS, SEED, SIZE, Array, natural_image

NAME = "sidbench-quickstart"
VERSION = 2
JPEG_QUALITY = 75
TRAINING_GENERATORS = ("gan_a", "diff_a")
# Images per class (real and fake each) per generator folder.
COUNTS: dict[str, int] = {"train": 100, "val": 30, "test": 50}
SPLIT_GENERATORS: dict[str, tuple[str, ...]] = {
    "train": TRAINING_GENERATORS,
    "val": TRAINING_GENERATORS,
    "test": GENERATORS,
}
SPLITS = ("train", "val", "test", "test_jpeg")
LABEL_DIRS = {REAL: "0_real", FAKE: "1_fake"}
MANIFEST = "MANIFEST.json"


def group_of(generator: str) -> str:
    """``gan`` or ``diffusion``."""
    return "gan" if generator.startswith("gan") else "diffusion"


def make_image(split: str, generator: str, label: int, index: int) -> Array:
    """One uint8 (SIZE, SIZE, 3) image; its seed depends on every argument, so no two images share content."""
    seq = np.random.SeedSequence([SEED, SPLITS.index(split), GENERATORS.index(generator), label, index])
    rng = np.random.default_rng(seq)
    img = MAKERS[generator](rng) if label == FAKE else natural_image(rng)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# -- writing the folder ---------------------------------------------------------------------------
def default_root() -> Path:
    """``sidbench.api.paths.cache_dir() / "quickstart-v2"`` (honours ``SIDBENCH_CACHE``)."""
    from ..api.paths import cache_dir

    return cache_dir() / f"quickstart-v{VERSION}"


def expected_files(counts: Mapping[str, int]) -> dict[str, int]:
    """Relative label folder -> number of images it must hold."""
    out = {}
    for split, gens in SPLIT_GENERATORS.items():
        for gen in gens:
            for label_dir in LABEL_DIRS.values():
                out[f"{split}/{gen}/{label_dir}"] = counts[split]
                if split == "test":
                    out[f"test_jpeg/{gen}_q{JPEG_QUALITY}/{label_dir}"] = counts[split]
    return out


def _write_image(arr: Array, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "PNG":
        Image.fromarray(arr).save(path, "PNG", compress_level=1)
    else:
        Image.fromarray(arr).save(path, "JPEG", quality=JPEG_QUALITY)


def _write_folder(out: Path, split: str, gen: str, label: int, n: int) -> None:
    """All images of one label folder (and their JPEG copies for the test split)."""
    kind = "real" if label == REAL else "fake"
    for i in range(n):
        arr = make_image(split, gen, label, i)
        stem = f"{split}-{gen}-{kind}-{i:04d}"
        _write_image(arr, out / split / gen / LABEL_DIRS[label] / f"{stem}.png", "PNG")
        if split == "test":
            jpeg_dir = out / "test_jpeg" / f"{gen}_q{JPEG_QUALITY}" / LABEL_DIRS[label]
            _write_image(arr, jpeg_dir / f"{stem}.jpg", "JPEG")


def content_hash(root: Path) -> str:
    """SHA-256 over every file's relative path and bytes (the manifest excluded), in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def generate_quickstart(out: Path, counts: Mapping[str, int] | None = None, workers: int = 1,
                        progress: bool = False) -> Path:
    """Write the whole benchmark and its MANIFEST.json into ``out`` (which should not exist yet); ``progress``
    shows a bar with an ETA (one step per generated folder)."""
    from tqdm.auto import tqdm

    counts = dict(COUNTS if counts is None else counts)
    jobs = [(split, gen, label, counts[split]) for split, gens in SPLIT_GENERATORS.items()
            for gen in gens for label in (REAL, FAKE)]
    out.mkdir(parents=True, exist_ok=False)
    bar = tqdm(total=len(jobs), desc="generating the quickstart data", unit="folder", leave=False, disable=not progress)
    with bar:
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                for _ in pool.map(_write_folder, [out] * len(jobs), *zip(*jobs)):
                    bar.update()
        else:
            for job in jobs:
                _write_folder(out, *job)
                bar.update()
    manifest = {
        "name": NAME, "version": VERSION, "seed": SEED, "size": SIZE, "jpeg_quality": JPEG_QUALITY,
        "counts": counts, "training_generators": list(TRAINING_GENERATORS),
        "files": expected_files(counts), "sha256": content_hash(out),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return out


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The quickstart manifest in ``root``, or None if there is none (or it is someone else's)."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("name") == NAME else None


def is_complete(root: Path, counts: Mapping[str, int] | None = None) -> bool:
    """True when ``root`` holds this version's manifest and every folder has its images."""
    counts = dict(COUNTS if counts is None else counts)
    manifest = read_manifest(root)
    if manifest is None or manifest.get("version") != VERSION or manifest.get("seed") != SEED:
        return False
    if manifest.get("counts") != counts:
        return False
    for rel, n in expected_files(counts).items():
        folder = Path(root) / rel
        if not folder.is_dir() or sum(1 for p in folder.iterdir() if p.is_file()) != n:
            return False
    return True


def ensure_quickstart(root: str | Path | None = None, counts: Mapping[str, int] | None = None,
                      workers: int | None = None, progress: bool = False) -> Path:
    """The quickstart folder, generated (atomically, via ``ROOT.tmp-<pid>``) only if missing or incomplete."""
    root = Path(root).expanduser() if root is not None else default_root()
    if is_complete(root, counts):
        return root
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate_quickstart(tmp, counts, workers, progress)
    if root.exists():  # incomplete: move it aside, then remove it
        old = root.with_name(f"{root.name}.old-{os.getpid()}")
        os.replace(root, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_complete(root, counts):
            raise
    return root


# -- the dataset plugin ---------------------------------------------------------------------------
class QuickstartLayout:
    """The quickstart folder: ``records(root, split=...)`` with split train, val, test or test_jpeg
    (by default the part of the role: ``--train``/``--val``/``--data`` on one quickstart root)."""

    name = "quickstart"
    roles = ("test", "train", "val")

    def matches(self, root: Path) -> bool:
        return read_manifest(Path(root)) is not None

    def claims(self, root: Path) -> list[Path]:
        return [Path(root)]  # its train/ and val/ are not test splits of the generic layout

    def records(self, root: Path, split: str | None = None, role: str = "test", **options: Any) -> list[Record]:
        split = split or role
        if split not in SPLITS:
            raise DataError(f"quickstart: unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        base = Path(root) / split
        if not base.is_dir():
            raise DataError(f"{root}: no {split}/ folder; run sidbench.data.quickstart.ensure_quickstart()")
        out = []
        for gen_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            generator = gen_dir.name.split("_q")[0]
            for label, label_dir in sorted(LABEL_DIRS.items()):
                folder = gen_dir / label_dir
                files = sorted(folder.iterdir()) if folder.is_dir() else []
                for path in files:
                    if path.is_file() and not path.name.startswith("."):
                        out.append(Record(str(path), label, gen_dir.name, group_of(generator),
                                          generator if label == FAKE else ""))
        if not out:
            raise DataError(f"{root}: the {split}/ folder holds no images")
        return out
