"""What a fit sees: the :class:`FitData` a detector's ``fit(data, log)`` receives, the in-memory
:class:`FeatureSet` it serves, seeded augmentations, and few-shot sampling.

The engine (``sidbench.engine.fitting``) implements :class:`FitData`; detectors only use the methods
documented here.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

from .log import note
from .records import Record

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from .backbone import Backbone
    from .detector import Detector


@runtime_checkable
class Augment(Protocol):
    """A seeded pixel augmentation: an object with a ``name`` (it identifies the augmentation in logs and cache
    keys: give different settings different names) that is called as ``augment(img, rng) -> img`` on a PIL
    image, drawing all its randomness from the NumPy generator ``rng``. Subclass it, or write any object with
    those two members; ``sidbench.data.augment.BlurJpegCrop`` is the CNNDetection family's transform."""

    name: str

    def __call__(self, img: "Image.Image", rng: "np.random.Generator") -> "Image.Image": ...


def check_augment(augment: Any, where: str) -> None:
    """Refuse anything but None or an :class:`Augment` in one line, where it is given (a string such as
    ``"flip"`` would otherwise skip every image or fail deep in a loader)."""
    if augment is None:
        return
    if isinstance(augment, Augment) and isinstance(getattr(augment, "name", None), str) and callable(augment):
        return
    from .errors import SidbenchError

    raise SidbenchError(
        f"{where}: augment={augment!r} is not an augmentation; give None or a sidbench.api.Augment (an object with a "
        "`name` and `__call__(img, rng) -> img`), e.g. sidbench.data.augment.BlurJpegCrop(name='flip', crop=224)")


@dataclass
class FeatureSet:
    """Features of a list of records, in memory (CPU), with the records that loaded and those skipped.

    ``features[name]`` has one row per loaded record ([N, ...], or [N, crops, ...] for multi-crop protocols).
    """

    features: dict[str, "torch.Tensor"]
    records: list[Record]
    skipped: list[tuple[Record, str]] = field(default_factory=list)

    @property
    def labels(self) -> "torch.Tensor":
        """[N] float labels (1 = fake)."""
        import torch

        return torch.tensor([r.label for r in self.records], dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.records)

    def select(self, keep: Callable[[Record], bool]) -> "FeatureSet":
        """The rows whose record satisfies ``keep`` (order kept)."""
        import torch

        idx = [i for i, r in enumerate(self.records) if keep(r)]
        index = torch.tensor(idx, dtype=torch.long)
        feats = {k: v.index_select(0, index) if v.numel() else v for k, v in self.features.items()}
        return FeatureSet(feats, [self.records[i] for i in idx], [s for s in self.skipped if keep(s[0])])

    def only(self, names: Sequence[str]) -> "FeatureSet":
        """The same rows with just the named features."""
        return FeatureSet({n: self.features[n] for n in names}, self.records, self.skipped)


class EpochState:
    """Where a fit that trains for epochs keeps its state after each epoch, so an interrupted fit resumes at
    its last finished epoch and ends with the same model as an uninterrupted one.

    ``resume(objects)`` restores every object (anything with ``state_dict``/``load_state_dict``: the network,
    the optimiser, a scheduler) and torch's random state, and returns (the next epoch, the extras saved with
    it); ``save(epochs_done, objects, extras)`` writes them atomically. ``extras`` holds plain values and
    tensors (``torch.load(weights_only=True)`` reads it back). Without a path (``EpochState()``) nothing is
    kept. ``key`` names the fit (detector, options, data, seed): a state saved under another key is ignored.
    """

    def __init__(self, path: "os.PathLike[str] | str | None" = None, key: str = ""):
        from pathlib import Path

        self.path, self.key = (Path(path) if path is not None else None), key
        self.resumed_epochs = 0  # epochs an interrupted fit had done when resume() restored its state

    def resume(self, objects: dict[str, Any], log: Callable[[str], None] = note) -> tuple[int, dict[str, Any]]:
        import torch

        if self.path is None or not self.path.is_file():
            return 0, {}
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file is not worth failing over: start over
            log(f"ignoring the unreadable saved fit state {self.path} ({type(exc).__name__}); starting over")
            return 0, {}
        if not isinstance(state, dict) or state.get("key") != self.key or set(state["objects"]) != set(objects):
            return 0, {}
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
        torch.set_rng_state(state["torch_rng"])
        log(f"resuming after epoch {state['epoch']} (the interrupted fit's state, {self.path})")
        self.resumed_epochs = int(state["epoch"])
        return self.resumed_epochs, dict(state["extras"])

    def save(self, epochs_done: int, objects: dict[str, Any], extras: dict[str, Any] | None = None) -> None:
        import io

        import torch

        from .paths import write_atomic_bytes

        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"key": self.key, "epoch": epochs_done, "torch_rng": torch.get_rng_state(),
                 "objects": {n: o.state_dict() for n, o in objects.items()}, "extras": dict(extras or {})}
        buf = io.BytesIO()
        torch.save(state, buf)
        write_atomic_bytes(self.path, buf.getvalue())  # as save_tensors writes a checkpoint

    def clear(self) -> None:
        """Remove the saved state (the fit finished and its checkpoint is written)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


class FitData:
    """Training and validation data of one fit, served by the engine.

    - :meth:`features` gives backbone features of a split (the detector's protocol, or one seeded
      augmented view per image with ``augment``/``view``); each split and view is extracted once for
      every detector fitted together, and comes from the feature cache when it can.
    - :meth:`batches` gives shuffled batches of pixels (pixel detectors) or of features computed
      on the fly, each image under its seeded augmented view for that epoch.
    - :meth:`scores` gives a detector's logits on a split through the engine's scoring path
      (multi-crop averaging, batching), for model selection.
    """

    seed: int
    protocol: str
    epoch_state: EpochState = EpochState()  # where an epoch loop keeps its state (set by the engine per fit)
    show_progress: bool = False

    def progress(self, items: Iterable[Any], total: int | None = None, desc: str = "") -> Iterable[Any]:
        """``items`` with a progress bar and ETA when progress is shown (a terminal, no ``--no-progress``)."""
        if not self.show_progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, total=total, desc=desc, unit="epoch", leave=False)

    @property
    def has_val(self) -> bool:
        """Whether a validation split was given."""
        raise NotImplementedError

    @property
    def device(self) -> str:
        raise NotImplementedError

    @property
    def backbone(self) -> "Backbone":
        """The live backbone (text embeddings for prompts, pixel-path training); built on first use."""
        raise NotImplementedError

    def records(self, split: str = "train") -> list[Record]:
        raise NotImplementedError

    def features(self, split: str = "train", names: Sequence[str] = ("image_embed",), *,
                 augment: Augment | None = None, view: int = 0, protocol: str | None = None) -> FeatureSet:
        raise NotImplementedError

    def batches(self, split: str = "train", names: Sequence[str] = ("pixels",), *, batch_size: int,
                augment: Augment | None = None, epoch: int = 0, shuffle: bool = True, protocol: str | None = None,
                generator: "torch.Generator | None" = None) -> Iterator[tuple[dict[str, "torch.Tensor"], "torch.Tensor"]]:
        raise NotImplementedError

    def scores(self, detector: "Detector", split: str = "val", *,
               augment: Augment | None = None) -> tuple["np.ndarray", "np.ndarray"]:
        """(logits, labels) of ``detector`` on ``split`` (numpy, record order of the images that loaded);
        with ``augment``, on one seeded view of each image (e.g. CNNDetection's validation blur/JPEG)."""
        raise NotImplementedError

    def subset(self, train: Sequence[Record]) -> "FitData":
        """The same data with the training split restricted to ``train`` (few-shot fits, class selection);
        the same object when ``train`` holds the whole training split (in any order)."""
        raise NotImplementedError

    def restrict(self, train: Sequence[Record], val: Sequence[Record]) -> "FitData":
        """The same data with both splits restricted."""
        raise NotImplementedError

    def with_classes(self, classes: Any, log: Callable[[str], None] = note) -> "FitData":
        """Both splits restricted to the named training classes (:func:`pick_classes`: ``"all"`` keeps all)."""
        return self.restrict(*(pick_classes(self.records(s), classes, s, log) for s in ("train", "val")))

    def forget_views(self) -> None:
        """Release memoised augmented views (a detector calls it after each epoch)."""


def few_shot(records: Sequence[Record], shots: int | None, seed: int,
             label: Callable[[Record], Any] = lambda r: r.label) -> list[Record]:
    """At most ``shots`` records per class (seeded, independent of input order); all of them when ``shots`` is None."""
    import numpy as np

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


def pick_classes(records: Sequence[Record], classes: Any, split: str, log: Callable[[str], None]) -> list[Record]:
    """The records of the named training classes (record split = class folder, as in a ProGAN layout),
    or all of them when ``classes`` is None/"all" or no folder of that name exists (the log says which)."""
    if not records or classes in (None, "all") or not classes:
        return list(records)
    wanted = [classes] if isinstance(classes, str) else list(classes)
    keep = [r for r in records if r.split in wanted]
    found = sorted({r.split for r in records})
    if not keep:
        log(f"{split}: no class folders named {','.join(wanted)} (found {','.join(found[:8])}); using all {len(records)} images")
        return list(records)
    missing = [c for c in wanted if c not in found]
    log(f"{split}: classes {','.join(c for c in wanted if c in found)} ({len(keep)} of {len(records)} images)"
        + (f"; missing {','.join(missing)}" if missing else ""))
    return keep


def accuracy(logits: "np.ndarray", labels: "np.ndarray") -> float:
    """Accuracy at P(fake) > 0.5, i.e. logit > 0 (the reference scripts' ``sigmoid(x) > 0.5``)."""
    return float(((logits > 0) == (labels > 0.5)).mean()) if len(labels) else float("nan")
