"""FitData for a grid of fits: one extraction per split and view, shared by every variant of a study."""
from __future__ import annotations

from typing import Any, Sequence

from ..data.records import Record
from ..features import FeatureSet
from ..training import FitData

KEEP_BYTES = 2 << 30  # augmented views stay in memory up to this size, so later variants reuse them


class StudyFitData(FitData):
    """Every request asks for all the ``names`` the study needs (one pass serves every variant),
    augmented views are kept while they fit in ``keep_bytes``, and K-shot subsets are row selections
    of this object's features (an image's seeded view is the same in any subset)."""

    def __init__(self, *args: Any, names: Sequence[str] = (), keep_bytes: int = KEEP_BYTES, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.names, self.keep_bytes = tuple(names), keep_bytes

    def features(self, split: str = "train", names: Sequence[str] = ("image_embed",), **kwargs: Any) -> FeatureSet:
        return super().features(split, tuple(dict.fromkeys((*self.names, *names))), **kwargs)

    def forget_views(self) -> None:
        if memo_bytes(self._memo) > self.keep_bytes:
            super().forget_views()

    def subset(self, train: Sequence[Record]) -> "FitData":
        return RowSubset(self, train)


class RowSubset(StudyFitData):
    """A training subset of a :class:`StudyFitData`, served from its parent's extractions."""

    def __init__(self, parent: StudyFitData, train: Sequence[Record]):
        super().__init__(parent.backbone, train, parent.records("val"), protocol=parent.protocol, seed=parent.seed,
                         options=parent.options, feature_source=parent._source, names=parent.names,
                         keep_bytes=parent.keep_bytes)
        self.parent = parent
        missing = {r.path for r in train} - {r.path for r in parent.records("train")}
        if missing:
            raise ValueError(f"subset holds {len(missing)} image(s) that are not in the parent's training split")

    def features(self, split: str = "train", names: Sequence[str] = ("image_embed",), **kwargs: Any) -> FeatureSet:
        kwargs.setdefault("protocol", self.protocol)
        full = self.parent.features(split, names, **kwargs)
        return select(full, {r.path for r in self.records("train")}) if split == "train" else full

    def forget_views(self) -> None:
        self.parent.forget_views()

    def subset(self, train: Sequence[Record]) -> "FitData":
        return RowSubset(self.parent, train)


def select(fs: FeatureSet, paths: set[str]) -> FeatureSet:
    """The rows of ``fs`` whose image path is in ``paths`` (order kept)."""
    import torch

    idx = [i for i, r in enumerate(fs.records) if r.path in paths]
    index = torch.tensor(idx, dtype=torch.long)
    feats = {k: v.index_select(0, index) if v.numel() else v for k, v in fs.features.items()}
    return FeatureSet(feats, [fs.records[i] for i in idx], [s for s in fs.skipped if s[0].path in paths])


def memo_bytes(memo: dict) -> int:
    return sum(v.element_size() * v.numel() for fs in memo.values() for v in fs.features.values())
