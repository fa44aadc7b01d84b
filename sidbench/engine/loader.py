"""Batched, parallel image loading that skips unreadable files and reports them.

The persistent worker processes that serve every pass of a run live in :mod:`sidbench.engine.workers`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

from ..api.records import Record
from ..data.images import FileState, UnreadableImage, content_sha256, read_file, read_image
from ..data.perturb import NONE, Perturbation

if TYPE_CHECKING:
    import torch

    from .workers import WorkerPool
    from PIL import Image

    from .cache import CacheLookup


@dataclass
class Batch:
    """Indices (into the record list) of the images that loaded, their pixels, and the ones skipped."""

    index: list[int]
    pixels: "torch.Tensor | list[torch.Tensor] | None"  # [b, 3, S, S], [b, 10, 3, S, S], or a list (sizes differ)
    skipped: list[tuple[int, str]]
    cached: dict[int, dict[str, "torch.Tensor"]] = field(default_factory=dict)  # served by the feature cache
    keys: dict[int, dict[str, str]] = field(default_factory=dict)  # cache keys of the computed ones
    faults: list[tuple[str, str]] = field(default_factory=list)  # cache faults met by the workers
    files: dict[int, "FileInfo"] = field(default_factory=dict)  # content hash and state of each image read
    encoded: dict[int, bytes] = field(default_factory=dict)  # JPEG files' bytes, to decode on the device

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader's pinning thread (GPU runs) so host-to-device copies can be non-blocking."""
        if isinstance(self.pixels, list):
            self.pixels = [p.pin_memory() for p in self.pixels]
        elif self.pixels is not None:
            self.pixels = self.pixels.pin_memory()
        return self


@dataclass(frozen=True)
class FileInfo:
    """The SHA-256 of the bytes an image was scored from, and the file's state when they were read."""

    sha256: str
    state: FileState


DECODED_BYTES = 512 << 20  # decoded images a CPU run keeps in memory (about 2,700 of 256x256), then no more


class DecodedImages:
    """Decoded images kept in memory up to ``max_bytes`` (by path and draft size), with the content hash and
    state of the file they came from: a CPU run reads and decodes each file once for all its protocols,
    perturbations and training epochs. Only for in-process loading (``workers=0``): a DataLoader worker's
    copy would be lost with it. Pillow operations return new images, so a kept one is never changed."""

    def __init__(self, max_bytes: int | None = None):
        self.max_bytes, self.nbytes = DECODED_BYTES if max_bytes is None else max_bytes, 0
        self.images: dict[tuple[str, int | None], tuple["Image.Image", "FileInfo"]] = {}

    def get(self, path: str, draft: int | None) -> "tuple[Image.Image, FileInfo] | None":
        return self.images.get((path, draft))

    def keep(self, path: str, draft: int | None, img: "Image.Image", info: "FileInfo") -> None:
        size = img.width * img.height * len(img.getbands())
        if (path, draft) not in self.images and self.nbytes + size <= self.max_bytes:
            self.images[(path, draft)] = (img, info)
            self.nbytes += size


class ImageDataset:
    """Map-style dataset: read, perturb, preprocess; an unreadable image becomes a skip, not an error.

    Each file is read once (one descriptor: bytes and state together); with ``digest`` (scoring, which
    records the content hash) or a cache lookup the bytes are hashed here, in the worker."""

    def __init__(self, records: Sequence[Record], preprocess: Callable, perturbation: Perturbation = NONE,
                 transform: Callable | None = None, lookup: "CacheLookup | None" = None, digest: bool = False,
                 decoded: DecodedImages | None = None, ship: Callable[[bytes | None, str], bool] | None = None):
        self.records, self.preprocess, self.perturbation = records, preprocess, perturbation
        self.ship = ship  # which files go undecoded to the main process (decoded there on the device)
        self.decoded = decoded if ship is None else None  # in-process memo of decoded images (and their hashes)
        self.transform = transform  # e.g. a training augmentation: (img, record, index) -> img
        self.lookup = lookup  # feature cache: hit -> features without decoding; miss -> pixels + keys
        self.digest = digest

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> "Item":
        return self.load(i, self.records[i])

    def settings(self) -> "ImageDataset":
        """This dataset without its records and in-process memo: what a pooled worker needs besides each
        batch's records (pickled once per pass)."""
        import copy

        slim = copy.copy(self)
        slim.records, slim.decoded = (), None
        return slim

    def load(self, i: int, rec: Record) -> "Item":
        """The image's pixels, or its cached features, or why it was skipped. The file is read once (bytes
        and state through one descriptor); the cache is consulted outside the decoding ``try``: it reports
        its own faults (returned with the item) and never skips an image."""
        keys, faults, data = None, [], None
        draft = getattr(self.preprocess, "draft", None)
        wants_input = getattr(self.preprocess, "wants_input", False)  # a detector's own protocol (ImageInput)
        memo = self.decoded if not getattr(self.preprocess, "reads_file", False) else None
        img, info = (memo.get(rec.path, draft) if memo is not None else None) or (None, None)
        if img is None:
            try:
                data, state = read_file(rec.path)
            except UnreadableImage as exc:
                return Item(i, None, exc.reason, None, None, faults, None)
            if self.lookup is not None or self.digest or self.decoded is not None:
                info = FileInfo(content_sha256(data), state)
        if self.lookup is not None:
            keys = self.lookup.keys(info.sha256, rec)
            hit = self.lookup.fetch(keys)
            faults = self.lookup.cache.take_unsent()
            if hit is not None:
                return Item(i, None, None, hit, None, faults, info)
        if self.ship is not None and self.ship(data, rec.path):  # as bytes: pickled through the queue, no shared
            return Item(i, None, None, None, keys, faults, info, data)  # memory segment (and descriptor) per file
        try:
            if img is None:
                img = read_image(rec.path, draft=draft, data=data)
                if memo is not None:
                    memo.keep(rec.path, draft, img, info)
            original = img
            img = self.perturbation.apply(img, rec.key)
            if self.transform is not None:
                img = self.transform(img, rec, i)
            if wants_input:
                from ..api.specs import ImageInput

                img = ImageInput(img, data if img is original else None, rec.path)
            return Item(i, self.preprocess(img), None, None, keys, faults, info)
        except UnreadableImage as exc:
            return Item(i, None, exc.reason, None, None, faults, None)
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end the run
            return Item(i, None, f"failed to process ({type(exc).__name__}: {exc})", None, None, faults, None)


class Item(NamedTuple):
    """What the dataset returns for one record: exactly one of pixels, skip reason, cached features is set."""

    index: int
    pixels: "torch.Tensor | None"
    skip: str | None
    cached: "dict[str, torch.Tensor] | None"
    keys: dict[str, str] | None  # cache keys of an image to compute (stored once its outputs exist)
    faults: list[tuple[str, str]]  # cache faults a worker met, reported once by the main process
    info: "FileInfo | None"  # content hash and file state, when asked for (scoring) or cached
    encoded: bytes | None = None  # the file's bytes, to decode in the main process (on the device)


def collate(items: list[Item]) -> Batch:
    ok = [(it.index, it.pixels) for it in items if it.pixels is not None]
    skipped = [(it.index, it.skip) for it in items if it.skip is not None]
    cached = {it.index: it.cached for it in items if it.cached is not None}
    keys = {it.index: it.keys for it in items if (it.pixels is not None or it.encoded is not None) and it.keys}
    files = {it.index: it.info for it in items if it.info is not None}
    encoded = {it.index: it.encoded for it in items if it.encoded is not None}
    return Batch([i for i, _ in ok], stack_pixels([x for _, x in ok]), skipped, cached, keys,
                 [f for it in items for f in it.faults], files, encoded)


def stack_pixels(tensors: list["torch.Tensor"]) -> "torch.Tensor | list[torch.Tensor] | None":
    """A batch's pixels: one stacked tensor when every image has the same shape, else the list (None: none)."""
    import torch

    if not tensors:
        return None
    return torch.stack(tensors) if len({tuple(x.shape) for x in tensors}) == 1 else tensors


def cpu_count() -> int:
    """The CPUs this process may run on (the affinity mask in a container, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workers(device: str) -> int:
    """CPU runs decode in the main process (2-core machines); GPU runs use up to 16 workers."""
    if not str(device).startswith("cuda"):
        return 0
    return max(1, min(16, cpu_count() - 1))


def make_loader(dataset: ImageDataset, batch_size: int, workers: int, device: str, order: "Sequence[int] | None" = None,
                pool: "WorkerPool | None" = None):
    """Batches of ``dataset`` in record order, or in ``order`` (a permutation, for shuffled training batches).
    ``workers`` is capped at the CPU count: more processes only cost memory. With a ``pool`` (and workers),
    the pass runs on the pool's persistent workers when it can (see :meth:`WorkerPool.loader`)."""
    from torch.utils.data import DataLoader

    workers = min(workers, cpu_count())
    if pool is not None and workers > 0:
        pooled = pool.loader(dataset, batch_size, workers, device, order)
        if pooled is not None:
            return pooled
    batches = None
    if order is not None:
        order = list(order)
        batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    return DataLoader(
        dataset,
        batch_size=1 if batches is not None else batch_size,
        batch_sampler=batches,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=str(device).startswith("cuda"),
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
