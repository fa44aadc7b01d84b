"""Fitting through the engine: :class:`EngineFitData` serves a fit's features and pixel batches.

Every fit (``sidbench run``, ``sidbench train``, the ablation studies) goes through here:

- one extraction per (record set, augmented view, protocol) serves every detector fitted together:
  the memo is shared by all the FitData objects derived from one (subsets, class selections), each
  extraction asks for the union of the features those detectors declared, and a request for a subset
  of already-extracted records is a row selection (an image's seeded view is the same in any subset);
- augmented views are seeded per image, view and seed (:func:`view_rng`), so the same seed gives the
  same pixels wherever and whenever they are produced, and they are cached under that identity;
- :func:`fit_detector` seeds the global RNGs, so the same seed gives the same model everywhere.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..api.backbone import network_input
from ..api.errors import DataError, SidbenchError
from ..api.fitting import Augment, EpochState, FeatureSet, FitData, check_augment
from ..api.records import Record
from ..data.perturb import NONE, Perturbation
from .inputs import ExtractOptions, extract, isolated_iter
from .loader import DecodedImages

if TYPE_CHECKING:
    import torch

    from ..api.detector import Detector
    from ..api.specs import PixelInput
    from .cache import FeatureCache
    from .sources import BackboneSource

KEEP_BYTES = 2 << 30  # augmented views stay in memory up to this size, so later fits reuse them


def view_rng(key: str, augment: str, view: int, seed: int) -> np.random.Generator:
    """The random stream of one augmented view of one image: same seed, same view, same pixels."""
    digest = hashlib.sha256(f"{seed}|{augment}|{view}|{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class ViewTransform:
    """One seeded augmented view of each image, as an ImageDataset transform (picklable for workers)."""

    def __init__(self, augment: Augment, view: int, seed: int):
        self.augment, self.view, self.seed = augment, view, seed

    def __call__(self, img: Any, rec: Record, i: int) -> Any:
        return self.augment(img, view_rng(rec.key, self.augment.name, self.view, self.seed))


class _Memo:
    """Extracted feature sets shared by a FitData and everything derived from it."""

    def __init__(self, keep_bytes: int):
        self.keep_bytes = keep_bytes
        self.sets: dict[tuple, FeatureSet] = {}  # (records digest, augment, view, protocol) -> features
        self.served = 0  # training examples handed to the detector being fitted (features rows, batch images)
        self.records: dict[str, frozenset[str]] = {}  # records digest -> their paths

    def nbytes(self) -> int:
        return sum(v.element_size() * v.numel() for fs in self.sets.values() for v in fs.features.values())

    def superset(self, paths: frozenset[str], view: tuple) -> FeatureSet | None:
        """An extraction of the same view whose records include ``paths``."""
        for (digest, *rest), fs in self.sets.items():
            if tuple(rest) == view and paths <= self.records[digest]:
                return fs
        return None


def _digest(records: Sequence[Record]) -> str:
    return hashlib.sha256("\n".join(f"{r.path}|{r.split}" for r in records).encode()).hexdigest()[:16]


class EngineFitData(FitData):
    """The engine's :class:`~sidbench.api.FitData`: training/validation records of one fit and their
    features (through a backbone source) or pixels (for a pixel detector, whose ``pixels`` input says
    how to preprocess)."""

    def __init__(self, train: Sequence[Record], val: Sequence[Record] | None = None, *, protocol: str = "center_crop",
                 seed: int = 0, options: ExtractOptions | None = None, backbone: "BackboneSource | None" = None,
                 pixels: "PixelInput | None" = None, device: str | None = None,
                 names: Sequence[str] | Mapping[str, Sequence[str]] = (),
                 perturbation: Perturbation = NONE, share_subsets: bool = False, keep_bytes: int = KEEP_BYTES,
                 on_extract: Callable[[dict[str, Any]], None] | None = None, val_cache: "FeatureCache | None" = None,
                 _memo: _Memo | None = None):
        if not train:
            raise DataError("no training images: give --train PATH with 0_real/ and 1_fake/ folders")
        if backbone is None and pixels is None:
            raise SidbenchError("FitData needs a backbone source (feature detectors) or a pixel input (pixel detectors)")
        if backbone is not None:
            from .sources import as_source

            backbone = as_source(backbone)  # type: ignore[assignment]
        self.splits = {"train": list(train), "val": list(val or [])}
        self.protocol, self.seed = protocol, seed
        self.options = options or ExtractOptions()
        self._backbone, self.pixels = backbone, pixels
        self._device = str(device or (backbone.device if backbone is not None else "cpu"))
        self.names = names if isinstance(names, Mapping) else tuple(names)  # extracted along with any request
        self.perturbation = perturbation
        self.share_subsets, self.on_extract = share_subsets, on_extract
        self.val_cache = val_cache  # without options.cache: where the validation features go for later scoring
        self._memo = _memo or _Memo(keep_bytes)
        if self.options.decoded is None:  # pixel fits decode each image once, not once per epoch
            self.options = dataclasses.replace(self.options, decoded=DecodedImages())
        self._parent: EngineFitData | None = None
        self.skipped: list[tuple[Record, str]] = []
        self.show_progress = self.options.progress

    # -- what a detector reads ---------------------------------------------------------------
    @property
    def has_val(self) -> bool:
        return bool(self.splits["val"])

    @property
    def device(self) -> str:
        return self._device

    @property
    def backbone(self) -> "BackboneSource":
        if self._backbone is None:
            raise SidbenchError("this fit has no backbone: a pixel detector reads data.batches(...), not features")
        return self._backbone

    def records(self, split: str = "train") -> list[Record]:
        if split not in self.splits:
            raise SidbenchError(f"FitData has no split {split!r}; use 'train' or 'val'")
        return self.splits[split]

    def features(self, split: str = "train", names: Sequence[str] = ("image_embed",), *,
                 augment: Augment | None = None, view: int = 0, protocol: str | None = None) -> FeatureSet:
        check_augment(augment, f"data.features({split!r})")
        fs = self._features(split, tuple(names), augment, view, protocol)
        if split == "train":
            self._memo.served += len(fs)
        return fs

    @property
    def served(self) -> int:
        """Training examples served (feature rows and batch images) since :meth:`reset_served`."""
        return self._memo.served

    def reset_served(self) -> None:
        self._memo.served = 0

    def _features(self, split: str, names: tuple[str, ...], augment: Augment | None, view: int,
                  protocol: str | None) -> FeatureSet:
        records = self.records(split)
        if self.share_subsets and self._parent is not None and split == "train":
            full = self._parent._features(split, names, augment, view, protocol)
            paths = {r.path for r in records}
            return full.select(lambda r: r.path in paths)
        view_key = (getattr(augment, "name", None), view if augment else 0, protocol or self.protocol)
        paths = frozenset(r.path for r in records)
        digest = _digest(records)
        fs = self._memo.sets.get((digest, *view_key))
        if fs is None:
            found = self._memo.superset(paths, view_key)
            if found is not None and all(n in found.features for n in names):
                return found.select(lambda r: r.path in paths).only(names)
        missing = tuple(n for n in dict.fromkeys((*self._along(view_key[2]), *names)) if fs is None or n not in fs.features)
        if missing:
            new = self._extract(split, records, missing, augment, view, view_key[2])
            fs = new if fs is None else FeatureSet({**fs.features, **new.features}, fs.records, fs.skipped)
            self._memo.sets[(digest, *view_key)] = fs
            self._memo.records[digest] = paths
        return fs.only(names)

    def _along(self, protocol: str) -> tuple[str, ...]:
        """The features extracted with any request under ``protocol``: the union that the detectors fitted
        together read (per protocol when ``names`` maps protocols to features), so each view passes once."""
        return tuple(self.names.get(protocol, ())) if isinstance(self.names, Mapping) else self.names

    def _extract(self, split: str, records: list[Record], names: tuple[str, ...], augment: Augment | None,
                 view: int, protocol: str) -> FeatureSet:
        transform, extra = None, {}
        if augment is not None:
            transform = ViewTransform(augment, view, self.seed)
            extra = {"view_id": f"{augment.name}|{view}|{self.seed}"}  # the feature cache's key for this view
        desc = f"{split} features" + (f" ({augment.name} view {view})" if augment else "")
        if self.on_extract is not None:
            self.on_extract({"what": desc, "perturbation": self.perturbation.name, "protocol": protocol,
                             "images": len(records), "features": list(names)})
        opts = dataclasses.replace(self.options, desc=desc)
        if split == "val" and opts.cache is None and self.val_cache is not None:
            opts = dataclasses.replace(opts, cache=self.val_cache)
        return extract(self.backbone, records, names, protocol=protocol, perturbation=self.perturbation,
                       transform=transform, options=opts, **extra)

    def batches(self, split: str = "train", names: Sequence[str] = ("pixels",), *, batch_size: int,
                augment: Augment | None = None, epoch: int = 0, shuffle: bool = True, protocol: str | None = None,
                generator: "torch.Generator | None" = None
                ) -> Iterator[tuple[dict[str, "torch.Tensor"], "torch.Tensor"]]:
        """Batches of (inputs, labels): ``{"pixels": x}``, or named backbone features computed from the pixels
        of each batch (no cache: e.g. RINE's pixel path). Unreadable images are dropped (``skipped``)."""
        import torch

        from ..data.preprocess import make_preprocess
        from .loader import ImageDataset, make_loader

        check_augment(augment, f"data.batches({split!r})")
        records, protocol = self.records(split), protocol or self.protocol
        info = self.pixels if self.pixels is not None else self.backbone.info
        transform = ViewTransform(augment, epoch, self.seed) if augment is not None else None
        workers, decoded = self.options.loading(self.device)
        dataset = ImageDataset(records, make_preprocess(protocol, info, uint8=True), self.perturbation, transform,
                               decoded=decoded)
        if shuffle:
            gen = generator or torch.Generator().manual_seed(int(view_rng("order", "shuffle", epoch, self.seed).integers(2**62)))
            order = torch.randperm(len(records), generator=gen).tolist()
        else:
            order = list(range(len(records)))
        yielded, skipped = 0, []
        loader = isolated_iter(make_loader(dataset, batch_size, workers, self.device, order=order, pool=self.options.pool))
        for batch in self._batch_bar(loader, -(-len(records) // batch_size), f"{split} epoch {epoch + 1}"):
            self.skipped += [(records[i], reason) for i, reason in batch.skipped]
            skipped += batch.skipped
            if batch.pixels is None:
                continue
            yielded += 1
            if isinstance(batch.pixels, list):
                raise SidbenchError(f"training batches need images of one size: protocol {protocol!r} keeps each image's "
                                    "own size; use an augmentation or protocol that crops")
            labels = torch.tensor([records[i].label for i in batch.index], dtype=torch.float32)
            if split == "train":
                self._memo.served += len(labels)
            if tuple(names) == ("pixels",):
                yield {"pixels": network_input(batch.pixels, info.mean, info.std, "cpu")}, labels
            else:
                feats = self.backbone.features(batch.pixels, names)
                yield {n: feats[n].cpu().clone() for n in names}, labels
        if records and not yielded:
            why = f" (the first: {records[skipped[0][0]].path}: {skipped[0][1]})" if skipped else ""
            raise DataError(f"data.batches({split!r}) gave no batch: none of its {len(records)} image(s) could be "
                            f"read{why}")

    def _batch_bar(self, batches: Iterator[Any], total: int, desc: str) -> Iterator[Any]:
        if not self.show_progress:
            return batches
        from tqdm.auto import tqdm

        return tqdm(batches, total=total, desc=desc, unit="batch", leave=False)

    def scores(self, detector: "Detector", split: str = "val", *,
               augment: Augment | None = None) -> tuple[np.ndarray, np.ndarray]:
        from .scoring import score_features, source_outputs

        check_augment(augment, f"data.scores({split!r})")
        protocol = detector.preprocess if detector.input == "features" else self.protocol
        # as the reference trainers validate (model.eval(): BatchNorm on its running statistics, which stay put);
        # each module's mode is put back as it was (a frozen part left in eval mode stays there)
        modes = [(m, m.training) for top in detector.modules().values() for m in top.modules()]
        detector.eval()
        try:
            if detector.input == "pixels":  # the network runs here, in the extraction
                from .sources import LOGIT, PixelSource

                opts = dataclasses.replace(self.options, cache=None, desc=f"{split} scores")  # the weights change
                transform = ViewTransform(augment, 0, self.seed) if augment is not None else None
                fs = extract(PixelSource(detector, self.device), self.records(split), (LOGIT,), protocol=protocol,
                             perturbation=self.perturbation, transform=transform, options=opts)
            else:
                fs = self.features(split, source_outputs(detector), augment=augment, protocol=protocol)
            logits = score_features(detector, fs, protocol)
        finally:
            for m, training in modes:
                m.training = training
        return logits, fs.labels.numpy()

    # -- derived data ------------------------------------------------------------------------
    def _derived(self, train: Sequence[Record], val: Sequence[Record]) -> "EngineFitData":
        child = EngineFitData(train, val, protocol=self.protocol, seed=self.seed, options=self.options,
                              backbone=self._backbone, pixels=self.pixels, device=self._device, names=self.names,
                              perturbation=self.perturbation, share_subsets=self.share_subsets,
                              on_extract=self.on_extract, val_cache=self.val_cache, _memo=self._memo)
        child._parent = self._parent or self
        child.epoch_state = self.epoch_state
        return child

    def with_protocol(self, protocol: str) -> "EngineFitData":
        """The same data (and memo) with another default protocol (each detector fits under its own)."""
        if protocol == self.protocol:
            return self
        child = self._derived(self.records("train"), self.records("val"))
        child.protocol, child._parent = protocol, self._parent
        return child

    def subset(self, train: Sequence[Record]) -> "EngineFitData":
        known = {r.path for r in self.records("train")}
        if len(train) == len(known) and {r.path for r in train} == known:
            return self  # the whole split (in any order): the same data, features and memo
        if any(r.path not in known for r in train):
            raise SidbenchError("FitData.subset: the subset holds images that are not in the training split")
        return self._derived(train, self.records("val"))

    def restrict(self, train: Sequence[Record], val: Sequence[Record]) -> "EngineFitData":
        if list(train) == self.records("train") and list(val) == self.records("val"):
            return self
        child = self._derived(train, val)
        child._parent = None  # another record set: extracted on its own (or selected from a superset)
        return child

    def forget_views(self) -> None:
        if self._memo.nbytes() > self._memo.keep_bytes:
            self._memo.sets = {k: v for k, v in self._memo.sets.items() if k[1] is None}


def torch_seed(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_detector(det: "Detector", data: FitData, seed: int, log: Callable[[str], None],
                 state: EpochState | None = None) -> tuple[dict[str, Any], float]:
    """Fit ``det`` on ``data``'s device from the seeded random state; (summary, seconds). Every fit
    (``sidbench run``, ``sidbench train``, the ablation studies) goes through here, so the same seed
    gives the same model wherever it is fitted. With ``state``, a detector's epoch loop saves its state after
    each epoch there and resumes from it (:class:`~sidbench.api.EpochState`); it is removed once the fit ends."""
    torch_seed(seed)
    counted = isinstance(data, EngineFitData)
    if counted:
        data.reset_served()
    t = time.time()
    data.epoch_state = state or EpochState()
    try:
        summary = det.to(data.device).fit(data, log=log) or {}
        resumed = data.epoch_state.resumed_epochs  # a fit resumed after its last epoch may read nothing more
    finally:
        data.epoch_state = EpochState()
    if counted and data.served == 0 and not resumed:
        n = len(data.records("train"))
        raise SidbenchError(f"fitting detector {det.name!r} saw no training example ({n} listed): its fit() read no "
                            "data.features(...) row and no data.batches(...) batch, so it would save an unfitted "
                            "detector; check that fit() reads the training split")
    det.fitted = True
    det.fit_summary = dict(summary) if isinstance(summary, dict) else {"summary": summary}
    return summary, time.time() - t


def fit_key(det: "Detector", records: Sequence[Record], seed: int, identity: str = "") -> str:
    """What a saved epoch state must match to be resumed: the detector and its options, the training images,
    the seed and the run's identity."""
    import json

    options = json.dumps(getattr(det, "options", {}), sort_keys=True, default=str)
    return hashlib.sha256(f"{det.name}|{options}|{_digest(records)}|{seed}|{identity}".encode()).hexdigest()[:32]
