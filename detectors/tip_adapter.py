"""CLIP zero-shot, Tip-Adapter and Tip-Adapter-F: a text classifier from real/fake prompts plus a
few-shot cache of training images.

Zhang et al., "Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification", ECCV 2022
(gaopengcuhk/Tip-Adapter). With f the L2-normalised ``image_embed``, W_c the text classifier,
F the cache keys and L the one-hot cache values:

    logits = 100 f W_c^T + alpha exp(-beta (1 - f F^T)) L,   score = logit_fake - logit_real.

``clip_zeroshot`` is the zero-shot term alone (alpha = 0). Tip-Adapter-F learns F. The arithmetic (text
classifier, logits, grid search) is in ``sidbench.nets.tip_adapter``, the augmentation in ``sidbench.data.augment``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sidbench.api import Detector, DetectorSpec, LossMeter, PerStep, hookimpl, note, train_epochs
from sidbench.data.augment import TipAugment
from sidbench.nets.tip_adapter import (ZERO_SHOT_SCALE, binary_score, cache_logits, search_grid,  # noqa: F401
                                       search_hp, text_classifier, tip_logits, zero_shot_logits)

if TYPE_CHECKING:
    import torch

    from sidbench.api import Backbone, FeatureSet, FitData

TIP_PAPER = "Zhang et al., Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification, ECCV 2022"
# Class order everywhere: index 0 = real, 1 = fake. Each list is averaged (after normalising).
DEFAULT_PROMPTS: dict[str, tuple[str, ...]] = {
    "real": ("a real photo.", "a photo of a real image.", "a real photograph taken with a camera."),
    "fake": ("a fake photo.", "a photo of a fake image.", "a generated image.", "an AI-generated image."),
}


class ClipZeroShot(Detector):
    """Zero-shot CLIP with real/fake prompts; needs no training data."""

    def __init__(self, spec: DetectorSpec, backbone: Any, **options: Any):
        super().__init__(spec, backbone, **options)
        import torch

        self._text = torch.nn.Module()
        self._text.register_buffer("weights", torch.zeros(2, backbone.embed_dim))
        self.bound = False

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"text": self._text}

    def prompts(self) -> dict[str, Any]:
        return {"real": self.options["prompts_real"], "fake": self.options["prompts_fake"]}

    def bind(self, backbone: "Backbone") -> None:
        self._text.weights = text_classifier(backbone, self.prompts()).to(self.device)
        self.bound = True

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        import torch.nn.functional as F

        if not self.bound:
            from sidbench.api import SidbenchError

            raise SidbenchError(f"{self.name}: call bind(backbone) first, the text classifier comes from the backbone")
        f = F.normalize(features["image_embed"].float(), dim=-1)
        return binary_score(zero_shot_logits(f, self._text.weights))


# -- Tip-Adapter -------------------------------------------------------------------------
class TipAdapter(ClipZeroShot):
    """Training-free: a cache of K shots per class next to the zero-shot text classifier."""

    def __init__(self, spec: DetectorSpec, backbone: Any, **options: Any):
        super().__init__(spec, backbone, **options)
        self.alpha, self.beta = float(self.options["init_alpha"]), float(self.options["init_beta"])
        self._cache = self._empty_cache(0)

    def _empty_cache(self, n: int) -> "torch.nn.Module":
        import torch

        cache = torch.nn.Module()
        cache.register_buffer("keys", torch.zeros(n, self.backbone_info.embed_dim))
        cache.register_buffer("values", torch.zeros(n, 2))
        return cache

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"text": self._text, "cache": self._cache}

    def affinity(self, f: "torch.Tensor") -> "torch.Tensor":
        """f F^T [B, NK]."""
        return f @ self._cache.keys.t()

    def logits(self, f: "torch.Tensor", alpha: float | None = None, beta: float | None = None) -> "torch.Tensor":
        """Tip-Adapter logits [B, 2] of normalised features (the chosen alpha, beta unless given)."""
        alpha = self.alpha if alpha is None else alpha
        beta = self.beta if beta is None else beta
        return tip_logits(f, self._text.weights, self.affinity(f), self._cache.values, alpha, beta)

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        import torch.nn.functional as F

        self._require_bound()
        return binary_score(self.logits(F.normalize(features["image_embed"].float(), dim=-1)))

    def _require_bound(self) -> None:
        if not self.bound:
            from sidbench.api import SidbenchError

            raise SidbenchError(f"{self.name}: call bind(backbone) first, the text classifier comes from the backbone")

    # -- fitting ---------------------------------------------------------------------
    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """Build the cache from K shots per class, then search alpha, beta on the validation split."""
        self.bind(data.backbone)
        shots = self.build_cache(data, log)
        acc = self.search(data, log)
        return {"cache": int(self._cache.keys.shape[0]), "shots": shots, "alpha": self.alpha, "beta": self.beta,
                "val_acc": acc}

    def shot_data(self, data: "FitData") -> "FitData":
        """The K-shot training subset (seeded), served with the same feature source."""
        from sidbench.api import few_shot

        train = few_shot(data.records("train"), self.options["shots"], data.seed)
        return data.subset(train)

    def build_cache(self, data: "FitData", log: Callable[[str], None]) -> int:
        """Keys: image_embed averaged over the augmented views, then L2-normalised; values: one-hot labels."""
        import torch
        import torch.nn.functional as F

        shots, views = self.shot_data(data), int(self.options["augment_views"])
        aug = TipAugment(self.backbone_info.image_size)
        sets = [shots.features("train", ("image_embed",), augment=aug, view=v) for v in range(views)] or \
            [shots.features("train", ("image_embed",))]
        _same_records(sets)
        keys = F.normalize(torch.stack([s.features["image_embed"].float() for s in sets]).mean(0), dim=-1)
        labels = sets[0].labels.long()
        if labels.unique().numel() < 2:
            from sidbench.api import DataError

            raise DataError(f"{self.name}: the cache needs real and fake training images, found one class only")
        self._cache = self._empty_cache(0)
        self._cache.keys, self._cache.values = keys.to(self.device), F.one_hot(labels, 2).float().to(self.device)
        self._shot_data = shots
        per_class = [int((labels == c).sum()) for c in (0, 1)]
        log(f"cache of {len(labels)} images ({per_class[0]} real, {per_class[1]} fake), {views} augmented views")
        return max(per_class)

    def search(self, data: "FitData", log: Callable[[str], None]) -> float | None:
        """Grid-search alpha, beta on the validation split; without one keep the initial values."""
        if not self.options["search"]:
            return None
        if not data.has_val:
            log(f"no validation split: alpha={self.alpha:g}, beta={self.beta:g} kept (no search)")
            return None
        f, y = self._val(data)
        with _no_grad():
            self.alpha, self.beta, acc = search_hp(f, y, self._text.weights, self.affinity(f), self._cache.values,
                                                   self.options["search_scale"], self.options["search_step"])
        log(f"alpha={self.alpha:.4g}, beta={self.beta:.4g}: validation accuracy {acc:.4f}")
        return acc

    @property
    def cache_size(self) -> int:
        """N*K: the number of cached training images."""
        return int(self._cache.keys.shape[0])

    def beta_grid(self) -> list[float]:
        """The betas of this detector's search grid."""
        return search_grid(self.options["search_scale"], self.options["search_step"])[0]

    def validation_features(self, data: "FitData") -> tuple["torch.Tensor", "torch.Tensor"]:
        """(L2-normalised validation ``image_embed`` on the detector's device, labels)."""
        return self._val(data)

    def _val(self, data: "FitData") -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch.nn.functional as F

        fs = data.features("val", ("image_embed",))
        return F.normalize(fs.features["image_embed"].float(), dim=-1).to(self.device), fs.labels.to(self.device)

    # -- state -------------------------------------------------------------------------
    def extra_metadata(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "beta": self.beta, "cache_size": int(self._cache.keys.shape[0])}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        """alpha, beta and the cache size (checked against the cached keys in the file before allocating)."""
        self.alpha = float(extra.get("alpha", self.alpha))
        self.beta = float(extra.get("beta", self.beta))
        if not (math.isfinite(self.alpha) and math.isfinite(self.beta)):
            from sidbench.api import WeightsError

            raise WeightsError(f"{self.name}: checkpoint alpha={self.alpha}, beta={self.beta} are not finite numbers")
        self._cache = self._empty_cache(self.metadata_size(extra, "cache_size", "cache.keys"))


class TipAdapterF(TipAdapter):
    """Tip-Adapter-F: the cache keys become a learnable Linear(E, N*K, no bias); all else stays fixed."""

    def __init__(self, spec: DetectorSpec, backbone: Any, **options: Any):
        super().__init__(spec, backbone, **options)
        self._adapter = self._new_adapter(0)

    def _new_adapter(self, n: int) -> "torch.nn.Module":
        import warnings

        import torch

        with warnings.catch_warnings():  # the unfitted adapter has zero rows; its init is a no-op
            warnings.simplefilter("ignore", UserWarning)
            return torch.nn.Linear(self.backbone_info.embed_dim, n, bias=False)

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {**super().modules(), "adapter": self._adapter}

    def affinity(self, f: "torch.Tensor") -> "torch.Tensor":
        return self._adapter(f)

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """Cache as Tip-Adapter, fine-tune the keys (epoch picked on validation), then re-search alpha, beta."""
        import torch

        self.bind(data.backbone)
        shots = self.build_cache(data, log)
        self._adapter = self._new_adapter(self._cache.keys.shape[0]).to(self.device)
        with torch.no_grad():
            self._adapter.weight.copy_(self._cache.keys)
        epoch = self.train_keys(data, log)
        acc = self.search(data, log)
        return {"cache": int(self._cache.keys.shape[0]), "shots": shots, "epoch": epoch, "alpha": self.alpha,
                "beta": self.beta, "val_acc": acc}

    def train_keys(self, data: "FitData", log: Callable[[str], None]) -> int:
        """AdamW + per-iteration cosine schedule, cross-entropy on the Tip-Adapter logits; returns the epoch kept
        (the best on validation, else the last)."""
        import torch

        o, epochs = self.options, int(self.options["epochs"])
        opt = torch.optim.AdamW(self._adapter.parameters(), lr=o["lr"], eps=1e-4)
        steps = epochs * math.ceil(len(self._shot_data.records("train")) / o["batch_size"])
        cosine = PerStep(torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1)))
        aug = TipAugment(self.backbone_info.image_size) if o["train_augment"] else None
        gen = torch.Generator().manual_seed(data.seed)
        val = self._val(data) if data.has_val else None

        def run_epoch(epoch: int) -> tuple[float, int]:
            fs = self._shot_data.features("train", ("image_embed",), augment=aug, view=epoch)
            return self._epoch(fs, opt, cosine, gen)

        summary = train_epochs(data, self.name, epochs=epochs, run_epoch=run_epoch, schedule=cosine, keep="best",
                               objects={"adapter": self._adapter, "optimizer": opt, "order": gen}, net=self._adapter,
                               validate=lambda: self._accuracy(*val), log=log)
        self._adapter.eval()
        return int(summary.get("kept_epoch", summary.get("epochs", 0)))

    def _epoch(self, fs: "FeatureSet", opt, cosine: PerStep, gen) -> tuple[float, int]:
        import torch
        import torch.nn.functional as F

        f = F.normalize(fs.features["image_embed"].float(), dim=-1).to(self.device)
        y = fs.labels.long().to(self.device)
        meter = LossMeter()
        for idx in torch.randperm(len(y), generator=gen).split(self.options["batch_size"]):
            idx = idx.to(self.device)
            loss = F.cross_entropy(self.logits(f[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            cosine.after_step()
            meter.add(len(idx), loss=loss)  # read once per epoch: no host sync per step
        return meter.totals().get("loss", 0.0) / max(len(y), 1), len(y)

    def _accuracy(self, f: "torch.Tensor", y: "torch.Tensor") -> float:
        self._adapter.eval()
        with _no_grad():
            return float((self.logits(f).argmax(-1) == y.long()).float().mean())

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        super().load_extra_metadata(extra)
        self._adapter = self._new_adapter(self.metadata_size(extra, "cache_size", "adapter.weight"))


def _same_records(sets: Sequence["FeatureSet"]) -> None:
    """Augmented views of one image list must line up (an unreadable image is skipped in every view)."""
    first = [r.path for r in sets[0].records]
    for s in sets[1:]:
        if [r.path for r in s.records] != first:
            from sidbench.api import DataError

            raise DataError("augmented views of the cache images do not line up: an image failed in one view only")


def _no_grad():
    import torch

    return torch.no_grad()


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    prompts = {"prompts_real": list(DEFAULT_PROMPTS["real"]), "prompts_fake": list(DEFAULT_PROMPTS["fake"])}
    tip = {**prompts, "shots": 16, "augment_views": 10, "init_alpha": 1.0, "init_beta": 1.0,
           "search": True, "search_scale": [7.0, 3.0], "search_step": [200, 20]}
    # clip-tiny is random: its text tower carries no meaning and its normalised embeddings lie close together,
    # so the quickstart lets the cache term dominate (wide alpha/beta grid, every training image in the cache)
    # and skips the resizing augmentation, which would erase the quickstart's pixel-level traces
    quick = {"search_scale": [200.0, 100.0], "augment_views": 0, "shots": 200, "init_alpha": 10.0, "init_beta": 100.0}
    common = dict(features=("image_embed",), preprocess="resize_center_crop", training_data=(), paper=TIP_PAPER,
                  license="MIT (Tip-Adapter), MIT (CLIP)")
    return [
        DetectorSpec(
            name="clip_zeroshot",
            factory=ClipZeroShot,
            description="zero-shot CLIP with real/fake prompts (Tip-Adapter with alpha = 0); no training",
            options=prompts,
            **common,
        ),
        DetectorSpec(
            name="tip_adapter",
            factory=TipAdapter,
            needs_fit=True,
            description="Tip-Adapter: zero-shot CLIP + a K-shot cache; alpha, beta searched on validation",
            options=tip,
            quickstart_options=quick,
            **common,
        ),
        DetectorSpec(
            name="tip_adapter_f",
            factory=TipAdapterF,
            needs_fit=True,
            description="Tip-Adapter-F: Tip-Adapter with learnable cache keys (epoch picked on validation)",
            options={**tip, "epochs": 20, "lr": 1e-3, "batch_size": 256, "train_augment": True},
            quickstart_options={**quick, "epochs": 5, "train_augment": False},
            **common,
        ),
    ]
