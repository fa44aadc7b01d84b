"""Running a backbone over records: one pass per batch serves every requested feature."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .data.loader import ImageDataset, default_workers, make_loader
from .data.perturb import NONE, Perturbation
from .data.preprocess import make_preprocess, n_views
from .data.records import Record

if TYPE_CHECKING:
    import torch

    from .backbones.base import Backbone


@dataclass
class ExtractOptions:
    batch_size: int = 64
    workers: int | None = None  # None: default_workers(device)
    progress: bool = True
    desc: str = "features"


@dataclass
class FeatureSet:
    """Features of a list of records, in memory (CPU, fp32), with the records that loaded."""

    features: dict[str, "torch.Tensor"]
    records: list[Record]
    skipped: list[tuple[Record, str]] = field(default_factory=list)

    @property
    def labels(self) -> "torch.Tensor":
        import torch

        return torch.tensor([r.label for r in self.records], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.records)


def iter_features(
    backbone: "Backbone",
    records: Sequence[Record],
    names: Sequence[str],
    *,
    protocol: str = "center_crop",
    perturbation: Perturbation = NONE,
    transform: Callable | None = None,
    options: ExtractOptions | None = None,
) -> Iterator[tuple[list[int], dict[str, "torch.Tensor"], list[tuple[int, str]]]]:
    """Yield (record indices, features, skipped (index, reason)) batch by batch.

    Features have shape [b, ...] or, for multi-crop protocols, [b, n_crops, ...].
    """
    from tqdm.auto import tqdm

    opts = options or ExtractOptions()
    dataset = ImageDataset(records, make_preprocess(protocol, backbone.info), perturbation, transform)
    workers = default_workers(backbone.device) if opts.workers is None else opts.workers
    loader = make_loader(dataset, opts.batch_size, workers, backbone.device)
    views = n_views(protocol)
    with tqdm(total=len(records), desc=opts.desc, unit="img", disable=not opts.progress, leave=False) as bar:
        for batch in loader:
            feats: dict[str, "torch.Tensor"] = {}
            if batch.pixels is not None:
                pixels = batch.pixels
                if views > 1:
                    pixels = pixels.flatten(0, 1)
                feats = backbone.features(pixels, names)
                if views > 1:
                    feats = {k: v.unflatten(0, (-1, views)) for k, v in feats.items()}
            bar.update(len(batch.index) + len(batch.skipped))
            yield batch.index, feats, batch.skipped


def extract(
    backbone: "Backbone",
    records: Sequence[Record],
    names: Sequence[str],
    **kwargs,
) -> FeatureSet:
    """All features of ``records`` in memory (for fitting heads and grids)."""
    import torch

    parts: dict[str, list] = {n: [] for n in names}
    kept: list[Record] = []
    skipped: list[tuple[Record, str]] = []
    for index, feats, skip in iter_features(backbone, records, names, **kwargs):
        for n in names:
            if index:
                parts[n].append(feats[n].cpu())
        kept += [records[i] for i in index]
        skipped += [(records[i], r) for i, r in skip]
    feats = {n: torch.cat(v) if v else torch.empty(0) for n, v in parts.items()}
    return FeatureSet(feats, kept, skipped)
