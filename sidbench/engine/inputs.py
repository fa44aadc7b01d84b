"""Running a source (a backbone, or a pixel detector's network) over records: read, perturb,
preprocess, batch, run once per image, cache. One pass per batch serves every requested output.

The source always sees batches of exactly its batch size (the last one zero-padded), so an image's
outputs do not depend on which images share its batch: a resumed or partly cached run scores
bit-identically. Native-resolution protocols batch images of equal size together, at most
``max_batch_pixels`` pixels per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple, Sequence

from ..api.fitting import FeatureSet
from ..api.records import Record
from ..data.perturb import NONE, Perturbation
from ..data.preprocess import make_preprocess, n_views, protocol_key, variable_size
from .decode import DeviceDecoder, ShipJpeg, decode_variant, device_protocol
from .loader import DecodedImages, ImageDataset, default_workers, make_loader
from .workers import WorkerPool

if TYPE_CHECKING:
    import torch

    from .cache import CacheLookup, FeatureCache
    from .loader import FileInfo
    from .sources import Source


@dataclass
class ExtractOptions:
    batch_size: int = 64
    workers: int | None = None  # None: default_workers(device)
    progress: bool = True
    desc: str = "features"
    cache: "FeatureCache | None" = None  # serve/store outputs on disk (None: always run the source)
    decoded: DecodedImages | None = None  # a run's memo of decoded images (used when loading in-process)
    pool: WorkerPool | None = None  # a run's persistent loader workers (None: each pass forks its own)
    decode: str = "cpu"  # "device": JPEGs decoded by torchvision on the source's device (sidbench.engine.decode)

    def loading(self, device: str) -> tuple[int, DecodedImages | None]:
        """(DataLoader workers on ``device``, the memo of decoded images when they load in this process)."""
        workers = default_workers(device) if self.workers is None else self.workers
        return workers, self.decoded if workers == 0 else None


Outputs = dict[str, "torch.Tensor"]


def iter_outputs(
    source: "Source",
    records: Sequence[Record],
    names: Sequence[str],
    *,
    protocol: str = "center_crop",
    perturbation: Perturbation = NONE,
    transform: Callable | None = None,
    view_id: str | None = None,
    options: ExtractOptions | None = None,
    files: "dict[int, FileInfo] | None" = None,
) -> Iterator[tuple[list[int], Outputs, list[tuple[int, str]]]]:
    """Yield (record indices, outputs, skipped (index, reason)) batch by batch, not necessarily in order.

    Outputs have shape [b, ...] or, for multi-crop protocols, [b, n_crops, ...]. With ``options.cache``
    the images whose outputs are cached skip decoding and the source; a ``transform`` (an augmented
    view) is cached only when ``view_id`` names it. ``files``, when given, receives the content hash and
    file state of every image read (index -> FileInfo) before its outputs are yielded.
    """
    from tqdm.auto import tqdm

    from .sources import as_source

    source = as_source(source)
    opts = options or ExtractOptions()
    names = tuple(names)
    preprocess = make_preprocess(protocol, source.info, uint8=True)
    decoder = device_decoder(opts, preprocess, perturbation, transform, source.device, records)
    lookup = cache_lookup(source, names, protocol, perturbation, transform, view_id, opts,
                          decode_variant(opts.decode, source.device) if decoder is not None else "")
    workers, decoded = opts.loading(source.device)
    dataset = ImageDataset(records, preprocess, perturbation, transform, lookup, digest=files is not None,
                           decoded=decoded, ship=ShipJpeg(preprocess) if decoder is not None else None)
    loader = make_loader(dataset, opts.batch_size, workers, source.device, pool=opts.pool)
    pending = _Pending(source, names, n_views(protocol, source.info), opts.batch_size, lookup,
                       variable_size(protocol, source.info))
    if lookup is not None:
        lookup.cache.flush()  # no writer thread mid-transaction while the loader forks its workers
    try:
        with tqdm(total=len(records), desc=opts.desc, unit="img", disable=not opts.progress, leave=False) as bar:
            for batch in isolated_iter(loader):
                if decoder is not None:
                    batch = decoder(batch)
                if files is not None:
                    files.update(batch.files)
                if lookup is not None:
                    lookup.cache.absorb(batch.faults)
                    lookup.cache.hits += len(batch.cached)
                if batch.cached or batch.skipped:
                    yield list(batch.cached), _stack_cached(batch.cached, names), batch.skipped
                pending.add(batch)
                while (shape := pending.ready()) is not None:
                    yield from pending.submit(shape)
                bar.update(len(batch.index) + len(batch.cached) + len(batch.skipped))
            while (shape := pending.next_shape()) is not None:
                yield from pending.submit(shape)
            yield from pending.submit(None)
    finally:
        if lookup is not None:
            lookup.cache.flush()  # the flush point: every entry of this pass committed before the caller goes on


def isolated_iter(loader) -> Iterator:
    """Iterate a DataLoader without touching the global torch RNG (it draws a base seed when it starts):
    a detector's dropout or shuffling never depends on how many loaders ran before it."""
    import torch

    with torch.random.fork_rng(devices=[]):
        it = iter(loader)
    yield from it


def device_decoder(opts: ExtractOptions, preprocess: Callable, perturbation: Perturbation, transform: Callable | None,
                   device: str, records: Sequence[Record]) -> "DeviceDecoder | None":
    """The decoder of a pass whose JPEGs are decoded on the device, or None (Pillow in the loader): only plain
    passes (no perturbation, no augmentation) of a protocol that runs on tensors (sidbench.engine.decode)."""
    if opts.decode != "device" or perturbation.steps or transform is not None or not device_protocol(preprocess):
        return None
    return DeviceDecoder(preprocess, device, records)  # type: ignore[arg-type]


def cache_lookup(source: "Source", names: tuple[str, ...], protocol: str, perturbation: Perturbation,
                 transform: Callable | None, view_id: str | None, opts: ExtractOptions,
                 variant: str = "") -> "CacheLookup | None":
    """The pass's cache look-up; ``variant`` (e.g. ``jpeg@cuda``) marks pixels decoded another way."""
    if opts.cache is None or (transform is not None and not view_id) or not opts.cache.usable():
        return None
    from .cache import CacheContext, CacheLookup

    key = protocol_key(protocol, source.info) + (f"|{variant}" if variant else "")
    context = CacheContext(source.identity, source.numerics(opts.batch_size), key, perturbation.name, view_id or "")
    return CacheLookup(opts.cache, context, names)


def _stack_cached(cached: dict[int, Outputs], names: tuple[str, ...]) -> Outputs:
    import torch

    if not cached:
        return {}
    return {n: torch.stack([c[n] for c in cached.values()]) for n in names}


def pad_rows(x: "torch.Tensor", n: int) -> "torch.Tensor":
    """``x`` [b, ...] with zero rows appended up to ``n`` (the fixed batch size every network sees)."""
    import torch

    if x.shape[0] >= n:
        return x
    return torch.cat([x, x.new_zeros((n - x.shape[0], *x.shape[1:]))])


class _Pending:
    """Decoded images waiting for the source, bucketed by tensor shape; run in fixed-size, zero-padded batches.

    A bucket holds blocks (record indices, pixels [k, ...]) as the loader delivered them: a loader batch that
    is exactly one source batch goes to the device as is (pinned on GPU, no copy on the main thread); blocks
    are cut or concatenated only when cache hits, skips or mixed sizes misalign them.
    """

    def __init__(self, source: "Source", names: tuple[str, ...], views: int, batch_size: int,
                 lookup: "CacheLookup | None", variable: bool):
        self.source, self.names, self.views, self.lookup = source, names, views, lookup
        self.batch_size, self.variable = batch_size, variable
        self.buckets: dict[tuple, list[tuple[list[int], "torch.Tensor"]]] = {}
        self.keys: dict[int, dict[str, str]] = {}
        self.inflight: "_Launched | None" = None  # launched, not yet finished (one at most)

    def add(self, batch) -> None:
        if batch.pixels is None:
            return
        if isinstance(batch.pixels, list):  # images of several sizes: one block each
            blocks = [([i], x.unsqueeze(0)) for i, x in zip(batch.index, batch.pixels)]
        else:
            blocks = [(list(batch.index), batch.pixels)]
        for index, x in blocks:
            self.buckets.setdefault(tuple(x.shape[1:]), []).append((index, x))
        self.keys.update(batch.keys)

    def count(self, shape: tuple) -> int:
        return sum(len(index) for index, _ in self.buckets[shape])

    def size_for(self, shape: tuple) -> int:
        """The batch size of a shape: fixed, or bounded by the source's pixel budget for native resolution."""
        if not self.variable or not self.source.max_batch_pixels:
            return self.batch_size
        pixels = shape[-1] * shape[-2] * self.views
        return max(1, min(self.batch_size, self.source.max_batch_pixels // pixels))

    def ready(self) -> tuple | None:
        """A shape whose bucket is full; for native resolution also the largest bucket once pending
        images exceed the pixel budget (memory stays bounded however many sizes there are)."""
        for shape in self.buckets:
            if self.count(shape) >= self.size_for(shape):
                return shape
        if self.variable and self.source.max_batch_pixels and self.buckets:
            total = sum(self.count(s) * s[-1] * s[-2] for s in self.buckets)
            if total > self.source.max_batch_pixels:
                return max(self.buckets, key=lambda s: self.count(s) * s[-1] * s[-2])
        return None

    def next_shape(self) -> tuple | None:
        return next(iter(self.buckets), None)

    def take(self, shape: tuple, n: int) -> tuple[list[int], "torch.Tensor"]:
        """The first ``n`` pending images of ``shape`` (fewer at the end), zero-padded to ``n`` rows."""
        import torch

        blocks, index, parts = self.buckets[shape], [], []
        while blocks and len(index) < n:
            ix, x = blocks[0]
            need = n - len(index)
            if len(ix) <= need:
                blocks.pop(0)
            else:
                blocks[0] = (ix[need:], x[need:])
                ix, x = ix[:need], x[:need]
            index += ix
            parts.append(x)
        if not blocks:
            del self.buckets[shape]
        if len({p.device for p in parts}) > 1:  # device-decoded JPEGs beside images decoded in the loader
            parts = [p.to(self.source.device) for p in parts]
        return index, pad_rows(parts[0] if len(parts) == 1 else torch.cat(parts), n)

    def launch(self, shape: tuple) -> "_Launched":
        """Start the source on the next batch of ``shape``: on CUDA this only queues the upload, the kernels
        and the download of the outputs (padding dropped) behind them. Images of a shape that does not fit
        in the device's memory even alone are skipped with that reason."""
        from .sources import DeviceMemoryError

        index, pixels = self.take(shape, self.size_for(shape))
        if self.views > 1:
            pixels = pixels.flatten(0, 1)
        halvings = self.source.oom_halvings[0]
        try:
            out = self.source.outputs(pixels, self.names)
        except DeviceMemoryError as exc:  # every image here has this shape: none fits
            return _Launched([], {}, HostCopy(), [(i, str(exc)) for i in index], False)
        halved = self.source.oom_halvings[0] != halvings
        return _Launched(index, *HostCopy.start(out, len(index) * self.views), [], halved)

    def finish(self, launched: "_Launched") -> tuple[list[int], Outputs, list]:
        """Wait for a launched batch's download (not for batches launched after it): its outputs on the CPU,
        queued for the cache unless the batch had to be halved (its numerics are not the full batch's)."""
        index, out, copy, skipped, halved = launched
        copy.wait()
        if self.views > 1:
            out = {k: v.unflatten(0, (-1, self.views)) for k, v in out.items()}
        if not halved:
            self._store(index, out)
        return index, out, skipped

    def submit(self, shape: tuple | None) -> list[tuple[list[int], Outputs, list]]:
        """Launch a batch (None: none), then finish the one before it: the device computes batch k+1 while
        the caller scores and writes batch k, instead of idling between batches."""
        launched = self.launch(shape) if shape is not None else None
        done, self.inflight = self.inflight, launched
        return [self.finish(done)] if done is not None else []

    def _store(self, index: list[int], out: Outputs) -> None:
        """Queue this batch's outputs for the cache's background writer, in the source's precision where exact."""
        if self.lookup is None:
            return
        rows = [(j, keys) for j, i in enumerate(index) if (keys := self.keys.pop(i, None))]
        if not rows or not self.lookup.cache.writable:
            return
        whole = len(rows) == len(index)  # the usual case: a slice, not a copy
        pos = [j for j, _ in rows]
        for name in self.names:
            values = out[name][: len(index)] if whole else out[name][pos]
            self.lookup.cache.store([k[name] for _, k in rows], name, self.lookup.context.backbone, values,
                                    storage_dtype(self.source.precision))


class _Launched(NamedTuple):
    index: list[int]
    outputs: Outputs
    copy: "HostCopy"
    skipped: list[tuple[int, str]]
    halved: bool  # out-of-memory halvings ran: outputs at a smaller batch size than the cache key says


class HostCopy:
    """The download of a batch's outputs, queued on the device right behind the kernels that make them:
    non-blocking into pinned host memory, with an event recorded after it. Waiting for that event returns as
    soon as this batch is on the host, while the device already computes the next one (a plain ``.cpu()``
    issued after the next launch would wait for that one too). On the CPU there is nothing to wait for."""

    def __init__(self, event: "torch.cuda.Event | None" = None):
        self.event = event

    @staticmethod
    def start(out: Outputs, rows: int) -> tuple[Outputs, "HostCopy"]:
        """(host tensors of the first ``rows`` rows of each output, valid once ``wait`` returns; the copy)."""
        import torch

        first = next(iter(out.values()), None)
        if first is None or first.device.type != "cuda":
            return {k: v[:rows] for k, v in out.items()}, HostCopy()
        host = {}
        for k, v in out.items():
            host[k] = torch.empty((rows, *v.shape[1:]), dtype=v.dtype, pin_memory=True)
            host[k].copy_(v[:rows], non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, HostCopy(event)

    def wait(self) -> None:
        if self.event is not None:
            self.event.synchronize()


def storage_dtype(precision: str) -> "torch.dtype | None":
    """The dtype a source running in ``precision`` computes its outputs in (None: fp32, stored as is)."""
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)


def extract(source: "Source", records: Sequence[Record], names: Sequence[str], **kwargs) -> FeatureSet:
    """All outputs of ``records`` in memory, in record order (for fitting heads and grids)."""
    import torch

    parts: dict[str, list] = {n: [] for n in names}
    kept: list[int] = []
    skipped: list[tuple[int, str]] = []
    for index, feats, skip in iter_outputs(source, records, names, **kwargs):
        for n in names:
            if index:
                parts[n].append(feats[n].cpu())
        kept += index
        skipped += skip
    order = sorted(range(len(kept)), key=kept.__getitem__)  # record order, however batches arrived
    feats = {n: torch.cat(v)[order] if v else torch.empty(0) for n, v in parts.items()}
    return FeatureSet(feats, [records[kept[j]] for j in order], [(records[i], r) for i, r in sorted(skipped)])
