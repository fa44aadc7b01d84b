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
    from .cache import CacheLookup, FeatureCache


@dataclass
class ExtractOptions:
    batch_size: int = 64
    workers: int | None = None  # None: default_workers(device)
    progress: bool = True
    desc: str = "features"
    cache: "FeatureCache | None" = None  # serve/store features on disk (None: always run the backbone)


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
    view_id: str | None = None,
    options: ExtractOptions | None = None,
) -> Iterator[tuple[list[int], dict[str, "torch.Tensor"], list[tuple[int, str]]]]:
    """Yield (record indices, features, skipped (index, reason)) batch by batch, not necessarily in order.

    Features have shape [b, ...] or, for multi-crop protocols, [b, n_crops, ...]. With
    ``options.cache`` the images whose features are cached skip decoding and the backbone; a
    ``transform`` is cached only when ``view_id`` names it. The backbone always sees batches of
    exactly ``batch_size`` images (the last one zero-padded), so an image's features do not depend
    on which images share its batch: a resumed or partly cached run scores bit-identically.
    """
    from tqdm.auto import tqdm

    opts = options or ExtractOptions()
    names = tuple(names)
    lookup = _cache_lookup(backbone, names, protocol, perturbation, transform, view_id, opts)
    dataset = ImageDataset(records, make_preprocess(protocol, backbone.info), perturbation, transform, lookup)
    workers = default_workers(backbone.device) if opts.workers is None else opts.workers
    loader = make_loader(dataset, opts.batch_size, workers, backbone.device)
    pending = _Pending(backbone, names, n_views(protocol), opts.batch_size, lookup)
    with tqdm(total=len(records), desc=opts.desc, unit="img", disable=not opts.progress, leave=False) as bar:
        for batch in loader:
            if batch.cached or batch.skipped:
                if lookup is not None:
                    lookup.cache.hits += len(batch.cached)
                yield list(batch.cached), _stack_cached(batch.cached, names), batch.skipped
            pending.add(batch)
            while pending.full():
                yield pending.run()
            bar.update(len(batch.index) + len(batch.cached) + len(batch.skipped))
        while pending.size:
            yield pending.run()


def backbone_identity(backbone: "Backbone", protocol: str, batch_size: int) -> tuple[str, str, str]:
    """(identity, numerics, protocol) of a backbone pass: what, besides the image, fixes its features."""
    info = backbone.info
    precision = "bf16" if backbone.autocast else "fp32"
    compiled = "compiled" if getattr(backbone, "compiled", False) else "eager"
    kind = str(backbone.device).split(":")[0]
    numerics = f"{kind}-{precision}-{compiled}-b{batch_size}"
    if kind == "cpu":  # CPU kernels split reductions by thread count, which changes the low bits
        import torch

        numerics += f"-t{torch.get_num_threads()}"
    return backbone.identity, numerics, f"{protocol}|{info.image_size}|{tuple(info.mean)}|{tuple(info.std)}"


def _cache_lookup(backbone, names, protocol, perturbation, transform, view_id, opts) -> "CacheLookup | None":
    if opts.cache is None or (transform is not None and not view_id):
        return None
    from .cache import CacheContext, CacheLookup

    ident, numerics, proto = backbone_identity(backbone, protocol, opts.batch_size)
    context = CacheContext(ident, numerics, proto, perturbation.name, view_id or "")
    return CacheLookup(opts.cache, context, names)


def _stack_cached(cached: dict[int, dict[str, "torch.Tensor"]], names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
    import torch

    if not cached:
        return {}
    return {n: torch.stack([c[n] for c in cached.values()]) for n in names}


class _Pending:
    """Decoded images waiting for the backbone; run in fixed-size, zero-padded batches."""

    def __init__(self, backbone: "Backbone", names: tuple[str, ...], views: int, batch_size: int,
                 lookup: "CacheLookup | None"):
        self.backbone, self.names, self.views, self.batch_size, self.lookup = backbone, names, views, batch_size, lookup
        self.index: list[int] = []
        self.pixels: list["torch.Tensor"] = []
        self.keys: dict[int, dict[str, str]] = {}

    @property
    def size(self) -> int:
        return len(self.index)

    def add(self, batch) -> None:
        if batch.pixels is not None:
            self.index += batch.index
            self.pixels += list(batch.pixels.unbind(0))
            self.keys.update(batch.keys)

    def full(self) -> bool:
        return self.size >= self.batch_size

    def run(self) -> tuple[list[int], dict[str, "torch.Tensor"], list]:
        import torch

        n = min(self.size, self.batch_size)
        index, chunk = self.index[:n], self.pixels[:n]
        self.index, self.pixels = self.index[n:], self.pixels[n:]
        pixels = torch.stack(chunk + [torch.zeros_like(chunk[0])] * (self.batch_size - n))
        if self.views > 1:
            pixels = pixels.flatten(0, 1)
        feats = self.backbone.features(pixels, self.names)
        feats = {k: v[: n * self.views] for k, v in feats.items()}
        if self.views > 1:
            feats = {k: v.unflatten(0, (-1, self.views)) for k, v in feats.items()}
        self._store(index, feats)
        return index, feats, []

    def _store(self, index: list[int], feats: dict[str, "torch.Tensor"]) -> None:
        if self.lookup is None:
            return
        ident = self.lookup.context.backbone
        items = [(keys[name], name, ident, feats[name][j].cpu())
                 for j, i in enumerate(index) if (keys := self.keys.pop(i, None)) for name in self.names]
        self.lookup.cache.put_many(items)


def extract(
    backbone: "Backbone",
    records: Sequence[Record],
    names: Sequence[str],
    **kwargs,
) -> FeatureSet:
    """All features of ``records`` in memory (for fitting heads and grids)."""
    import torch

    parts: dict[str, list] = {n: [] for n in names}
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    for index, feats, skip in iter_features(backbone, records, names, **kwargs):
        for n in names:
            if index:
                parts[n].append(feats[n].cpu())
        kept += index
        skipped += skip
    order = sorted(range(len(kept)), key=kept.__getitem__)  # record order, however batches arrived
    feats = {n: torch.cat(v)[order] if v else torch.empty(0) for n, v in parts.items()}
    return FeatureSet(feats, [records[kept[j]] for j in order], [(records[i], r) for i, r in sorted(skipped)])
