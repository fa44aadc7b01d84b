"""What a fittable detector sees: training/validation records and the features of any view of them."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import numpy as np

from .features import ExtractOptions, FeatureSet, extract
from .data.records import Record

if TYPE_CHECKING:
    from PIL import Image

    from .backbones.base import Backbone


class Augment(Protocol):
    """A seeded pixel augmentation; ``name`` identifies it in logs and cache keys."""

    name: str

    def __call__(self, img: "Image.Image", rng: np.random.Generator) -> "Image.Image": ...


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


class FitData:
    """Serves features of the training and validation records, extracting each view once.

    ``features("train", names)`` gives the evaluation view (the detector's protocol);
    ``features("train", names, augment=aug, view=epoch)`` one seeded augmented view per image.
    """

    def __init__(self, backbone: "Backbone", train: Sequence[Record], val: Sequence[Record] | None = None, *,
                 protocol: str = "center_crop", seed: int = 0, options: ExtractOptions | None = None,
                 feature_source: Callable[..., FeatureSet] | None = None):
        if not train:
            from .errors import DataError

            raise DataError("no training images: give --train PATH with 0_real/ and 1_fake/ folders")
        self.backbone, self.seed, self.protocol = backbone, seed, protocol
        self.splits = {"train": list(train), "val": list(val or [])}
        self.options = options or ExtractOptions()
        self._source = feature_source or extract
        self._memo: dict[tuple, FeatureSet] = {}
        self.log_lines: list[str] = []

    @property
    def has_val(self) -> bool:
        return bool(self.splits["val"])

    def records(self, split: str = "train") -> list[Record]:
        return self.splits[split]

    def features(self, split: str = "train", names: Sequence[str] = ("image_embed",), *,
                 augment: Augment | None = None, view: int = 0, protocol: str | None = None) -> FeatureSet:
        protocol = protocol or self.protocol
        key = (split, tuple(names), getattr(augment, "name", None), view if augment else 0, protocol)
        if key not in self._memo:
            transform, extra = None, {}
            if augment is not None:
                transform = ViewTransform(augment, view, self.seed)
                extra = {"view_id": f"{augment.name}|{view}|{self.seed}"}  # the feature cache's key for this view
            desc = f"{split} features" + (f" ({augment.name} view {view})" if augment else "")
            opts = dataclasses.replace(self.options, desc=desc)
            self._memo[key] = self._source(self.backbone, self.records(split), tuple(names), protocol=protocol,
                                           transform=transform, options=opts, **extra)
        return self._memo[key]

    def forget_views(self) -> None:
        """Drop memoised augmented views (they are used once per epoch)."""
        self._memo = {k: v for k, v in self._memo.items() if k[2] is None}

    def subset(self, train: Sequence[Record]) -> "FitData":
        """The same backbone, validation split and feature source, training on ``train`` only (few-shot fits)."""
        sub = FitData(self.backbone, train, self.splits["val"], protocol=self.protocol, seed=self.seed,
                      options=self.options, feature_source=self._source)
        sub._memo = {k: v for k, v in self._memo.items() if k[0] == "val"}
        return sub


def few_shot(records: Sequence[Record], shots: int | None, seed: int,
             label: Callable[[Record], Any] = lambda r: r.label) -> list[Record]:
    """At most ``shots`` records per class (seeded, independent of input order); all of them when ``shots`` is None."""
    if shots is None:
        return list(records)
    if int(shots) < 1:
        from .errors import SidbenchError

        raise SidbenchError(f"shots={shots}: give at least 1 image per class")
    by_class: dict[Any, list[Record]] = {}
    for r in sorted(records, key=lambda r: (r.key, r.path)):
        by_class.setdefault(label(r), []).append(r)
    keep = set()
    for cls in sorted(by_class, key=str):
        group = by_class[cls]
        rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha256(str(cls).encode()).digest()[:4], "little")])
        keep.update(group[i].path for i in rng.permutation(len(group))[: int(shots)])
    return [r for r in records if r.path in keep]


def torch_seed(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit_detector(det: Any, data: FitData, seed: int, log: Callable[[str], None]) -> tuple[dict[str, Any], float]:
    """Fit ``det`` on ``data``'s device from the seeded random state; (summary, seconds). Every fit
    (``sidbench run``, ``sidbench train``, the ablation studies) goes through here, so the same seed
    gives the same model wherever it is fitted."""
    import time

    torch_seed(seed)
    t = time.time()
    summary = det.to(data.backbone.device).fit(data, log=log) or {}
    det.fitted = True
    return summary, time.time() - t
