"""UnivFD: a linear probe on the raw (not normalised) projected CLIP image embedding.

Ojha et al., "Towards Universal Fake Image Detectors that Generalize Across Generative Models",
CVPR 2023 (WisconsinAIVision/UniversalFakeDetect, MIT). The official ``fc_weights.pth``
(state dict of Linear(768, 1), saved on cuda:0) loads as-is: ``--detectors univfd@fc_weights.pth``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (Detector, DetectorSpec, OfficialWeights, Plateau, WeightsError, bce_epoch, hookimpl, note,
                          train_epochs)
from sidbench.data.augment import BlurJpegCrop

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

UNIVFD_PAPER = ("Ojha et al., Towards Universal Fake Image Detectors that Generalize Across Generative Models, "
                "CVPR 2023")


def univfd_augment(crop: int = 224) -> BlurJpegCrop:
    """The published training augmentation: resize shorter side to 256/224 of the crop, p=0.5 blur
    sigma ~ U[0, 3], p=0.5 JPEG quality ~ U{30..100}, random crop, horizontal flip."""
    return BlurJpegCrop("univfd-train", crop, resize=round(crop * 256 / 224), blur_prob=0.5, jpeg_prob=0.5)


class UnivFD(Detector):
    """Linear(E, 1) on raw ``image_embed``; P(fake) = sigmoid(logit)."""

    def __init__(self, spec: DetectorSpec, backbone: Any, **options: Any):
        super().__init__(spec, backbone, **options)
        import torch

        self.fc = torch.nn.Linear(backbone.embed_dim, 1)

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"fc": self.fc}

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """The official ``fc_weights.pth`` (``weight``, ``bias``) or a full model dump (``fc.weight``, ...)."""
        for prefix in ("", "fc.", "model.fc.", "module.fc."):
            if f"{prefix}weight" in state and f"{prefix}bias" in state:
                return {"fc.weight": state[f"{prefix}weight"], "fc.bias": state[f"{prefix}bias"]}
        raise WeightsError(f"not a UnivFD head: expected keys 'weight' and 'bias', found {sorted(state)[:6]}")

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        x = features["image_embed"].to(self.fc.weight.dtype)
        return self.fc(x).squeeze(-1)

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """The published recipe: AdamW, BCE, one augmented view per epoch; lr / 10 after ``patience`` epochs
        without a validation gain (restarted with delta 0.002) until below ``min_lr``; the best validation epoch
        is kept."""
        import torch

        o = self.options
        torch.nn.init.normal_(self.fc.weight, 0.0, 0.02)
        opt = torch.optim.AdamW(self.fc.parameters(), lr=o["lr"], betas=(0.9, 0.999), weight_decay=o["weight_decay"])
        val = data.features("val", ("image_embed",)) if data.has_val else None
        if val is None:
            log(f"no validation split: no early stopping, training all {o['max_epochs']} epochs")
        aug, gen = univfd_augment(self.backbone_info.image_size), torch.Generator().manual_seed(data.seed)

        def run_epoch(epoch: int) -> tuple[float, int]:
            view = {"augment": aug, "view": epoch} if o["augment"] else {}
            return self._epoch(data.features("train", ("image_embed",), **view), opt, gen)

        summary = train_epochs(data, self.name, epochs=int(o["max_epochs"]), run_epoch=run_epoch,
                               objects={"fc": self.fc, "optimizer": opt, "order": gen}, net=self.fc, keep="best",
                               validate=lambda: self._accuracy(val), schedule=Plateau(opt, o["patience"], min_lr=o["min_lr"]),
                               log=log)
        self.eval()
        return summary

    def _epoch(self, train, opt, gen) -> tuple[float, int]:
        """One epoch of BCE over shuffled mini-batches of the features (``bce_epoch``: no host sync per step)."""
        import torch

        x, y = train.features["image_embed"].to(self.device), train.labels.to(self.device)
        order = torch.randperm(len(y), generator=gen).split(self.options["batch_size"])
        return bce_epoch(self.score, (({"image_embed": x[i]}, y[i]) for i in (idx.to(self.device) for idx in order)),
                         opt, self.device)

    def _accuracy(self, fs) -> float:
        import torch

        self.fc.eval()
        with torch.no_grad():
            pred = self.score({"image_embed": fs.features["image_embed"].to(self.device)}) > 0
        return float((pred.cpu().float() == fs.labels).float().mean())


# The released head (pretrained_weights/fc_weights.pth at this commit; SHA-256 checked against a copy of it)
UFD_COMMIT = "76a0e3e60a8a06458707a625d269ba815a2e5919"
OFFICIAL_HEAD = OfficialWeights(
    url=f"https://raw.githubusercontent.com/WisconsinAIVision/UniversalFakeDetect/{UFD_COMMIT}/pretrained_weights/fc_weights.pth",
    filename="fc_weights.pth", sha256="477100745713bcc957beb2b40859536859b6483fd6301b3b9293151b194c7847",
    git_blob="2a8efc8e238bf5a491e4fd5999655ed5eb3bbb72", repository="https://github.com/WisconsinAIVision/UniversalFakeDetect",
    note=f"pretrained_weights/fc_weights.pth of WisconsinAIVision/UniversalFakeDetect at {UFD_COMMIT[:7]}")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [
        DetectorSpec(
            name="univfd.progan",
            factory=UnivFD,
            features=("image_embed",),
            preprocess="center_crop",
            needs_fit=True,
            default=True,
            description="UnivFD linear probe on the raw CLIP image embedding; official head: univfd@official",
            options={"max_epochs": 100, "lr": 1e-4, "weight_decay": 0.0, "batch_size": 256, "patience": 5,
                     "min_lr": 1e-6, "augment": True},
            # 400 images on a random clip-tiny: 2 steps per epoch, so a larger step and no per-epoch pixel pass
            quickstart_options={"lr": 5e-2, "max_epochs": 100, "augment": False},
            training_data=("progan",),
            official_weights=OFFICIAL_HEAD,
            paper=UNIVFD_PAPER,
            license="MIT (UniversalFakeDetect)",
        )
    ]
