"""SAFE: the diagonal (HH) band of a one-level wavelet transform into a truncated ResNet-50.

Li et al., "Improving Synthetic Image Detection Towards Generalization: An Image Transformation Perspective",
KDD 2025 (Ouxiang-Li/SAFE, Apache-2.0). Read from its ``models/resnet.py``: ``_preprocess_dwt`` takes the HH
band of pytorch_wavelets' ``DWTForward(J=1, wave='bior1.3', mode='symmetric')`` and resizes it back to the
input size (torchvision ``Resize`` on a tensor: bilinear, antialiased); then ``conv1`` (3x3/2), BN, ReLU,
max-pool, ResNet-50's layer1 and layer2, global average pool and ``fc1 = Linear(512, 2)`` (fake = index 1,
its ``evaluate`` reads ``softmax(output)[:, 1]``). Test protocol of ``scripts/eval.sh`` (``--transform_mode
crop --input_size 256``): torchvision ``CenterCrop(256)`` (zero padding for smaller sides, offsets by
Python's ``round``), ``ToTensor`` and no normalisation. The released ``checkpoint/checkpoint-best.pth`` is a
training dump whose ``model`` entry is the state dict (no ``module.`` prefix); its ``args`` entry is an
``argparse.Namespace``, the one non-tensor global allowed while loading it with ``weights_only=True``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image

from sidbench.api import (DetectorSpec, LossMeter, LrAt, NetworkDetector, OfficialWeights, PixelInput, accuracy,
                          hookimpl, note, train_epochs)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Li et al., Improving Synthetic Image Detection Towards Generalization: An Image Transformation "
         "Perspective, KDD 2025 (arXiv 2408.06741)")
LICENSE = "Apache-2.0 (Ouxiang-Li/SAFE)"
REPOSITORY = "https://github.com/Ouxiang-Li/SAFE"
COMMIT = "722620a6a6c1acae5bfbc580c9b0a295f64b7a87"
# bior1.3 analysis high-pass filter (pywt.Wavelet('bior1.3').dec_hi), the one tap set the HH band needs
BIOR13_DEC_HI = (0.0, 0.0, -0.7071067811865476, 0.7071067811865476, 0.0, 0.0)
FAKE_INDEX = 1


class SAFE(NetworkDetector):
    """SAFE's network on 256 px crops in [0, 1], one logit per image: ``z[fake] - z[real]`` of ``fc1``."""

    def build_network(self) -> "torch.nn.Module":
        return build_network()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        z = forward(self.net, features["pixels"])
        return z[:, FAKE_INDEX] - z[:, 1 - FAKE_INDEX]

    def load(self, path: str) -> "SAFE":
        """The released dump also holds ``args`` (an ``argparse.Namespace``): allowed as the one safe global
        of the ``weights_only`` unpickler, so the file loads as published and nothing else is unpickled."""
        import argparse

        import torch

        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        if allow is None:  # older torch refuses the dump with the conversion command
            return super().load(path)
        with allow([argparse.Namespace]):
            return super().load(path)

    # -- training -----------------------------------------------------------------------------------
    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """The published recipe (``scripts/train.sh``): from scratch, AdamW (lr = blr x batch / 256, weight
        decay on weights only), one warm-up epoch then a half-cosine per step, label-smoothed cross-entropy,
        SAFE's crop/flip/rotate/jitter/mask view; the best validation epoch is kept (``checkpoint-best``)."""
        import torch

        o = self.options
        data = data.with_classes(o["classes"], log)
        self.net = build_network().to(data.device)
        opt = torch.optim.AdamW(_param_groups(self.net, float(o["weight_decay"])), lr=float(o["lr"]))
        view = SafeAugment(int(o["crop_size"]))
        schedule = LrAt(opt, _cosine(float(o["lr"]), float(o["min_lr"]), float(o["warmup_epochs"]), int(o["epochs"])))

        def run_epoch(epoch: int) -> tuple[float, int]:
            batches = list(data.batches("train", batch_size=int(o["batch_size"]), augment=view, epoch=epoch,
                                        protocol="native"))
            meter, seen = LossMeter(), 0
            for step, (inputs, labels) in enumerate(batches):
                schedule.before_step(epoch, step, len(batches))
                x, y = inputs["pixels"].to(data.device), labels.to(data.device).long()
                out = torch.nn.functional.cross_entropy(forward(self.net, x), y, label_smoothing=float(o["smoothing"]))
                opt.zero_grad()
                out.backward()
                opt.step()
                meter.add(len(y), loss=out)  # read once per epoch: no host sync per step
                seen += len(y)
            return meter.totals().get("loss", 0.0) / max(seen, 1), seen

        summary = train_epochs(data, self.name, epochs=int(o["epochs"]), run_epoch=run_epoch, schedule=schedule,
                               objects={"net": self.net, "optimizer": opt}, net=self.net, keep="best", log=log,
                               validate=lambda: accuracy(*data.scores(self, "val")))
        self.eval()
        return summary


def _param_groups(net: "torch.nn.Module", weight_decay: float) -> list[dict[str, Any]]:
    """SAFE's ``optim_factory``: no weight decay on biases and other 1-D parameters (BatchNorm)."""
    decay = [p for n, p in net.named_parameters() if p.ndim > 1 and not n.endswith(".bias")]
    rest = [p for n, p in net.named_parameters() if not (p.ndim > 1 and not n.endswith(".bias"))]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _cosine(lr: float, min_lr: float, warmup: float, epochs: int) -> Callable[[float], float]:
    """SAFE's ``adjust_learning_rate`` at a fractional epoch: linear warm-up, then half-cosine to ``min_lr``."""
    def at(epoch: float) -> float:
        if epoch < warmup:
            return lr * epoch / warmup
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / max(epochs - warmup, 1e-9)))
    return at


@dataclass(frozen=True)
class SafeAugment:
    """SAFE's training view (``data/datasets.py``, mode ``crop``): random ``crop`` crop (zero-padded when smaller),
    flip (p 0.5), rotation by U(-180, 180) degrees (nearest, corners zero), brightness/contrast/saturation
    jitter 0.5 in random order, then with p 0.5 a random share U(0, 0.75) of 16 px patches set to zero."""

    crop: int = 256
    patch: int = 16
    name: str = "safe-train"

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        import torchvision.transforms.functional as TF

        img = img.convert("RGB")
        w, h = img.size
        c = self.crop
        top, left = int(rng.integers(0, max(h - c, 0) + 1)), int(rng.integers(0, max(w - c, 0) + 1))
        img = img.crop((left, top, left + c, top + c))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img = img.rotate(float(rng.uniform(-180.0, 180.0)), resample=Image.Resampling.NEAREST)
        jitter = {0: TF.adjust_brightness, 1: TF.adjust_contrast, 2: TF.adjust_saturation}
        for i in rng.permutation(3):
            img = jitter[int(i)](img, float(rng.uniform(0.5, 1.5)))
        if rng.random() < 0.5:
            img = self._mask(img, float(rng.uniform(0.0, 0.75)), rng)
        return img

    def _mask(self, img: Image.Image, ratio: float, rng: np.random.Generator) -> Image.Image:
        a = np.array(img)
        rows, cols = a.shape[0] // self.patch, a.shape[1] // self.patch
        n = min(int(a.shape[0] * a.shape[1] * ratio / self.patch ** 2), rows * cols)
        for k in rng.choice(rows * cols, size=n, replace=False):
            r, q = divmod(int(k), cols)
            a[r * self.patch:(r + 1) * self.patch, q * self.patch:(q + 1) * self.patch] = 0
        return Image.fromarray(a)


def build_network() -> "torch.nn.Module":
    """conv1 (3x3/2) / bn1 / layer1 / layer2 / fc1 (512 -> 2) with SAFE's key names and initialisation."""
    from torch import nn

    from sidbench.nets.resnet import bottleneck_stage, kaiming_init

    net = nn.Module()
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    net.bn1 = nn.BatchNorm2d(64)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    net.layer1 = bottleneck_stage(64, 64, 3)
    net.layer2 = bottleneck_stage(256, 128, 4, stride=2)
    net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    net.fc1 = nn.Linear(512, 2)
    return kaiming_init(net)


def symmetric_pad(x: "torch.Tensor", p: int) -> "torch.Tensor":
    """Pad the last two dimensions by ``p`` with the edge-repeating mirror (PyWavelets' ``symmetric``)."""
    import torch

    for dim in (-1, -2):
        n = x.shape[dim]
        idx = torch.arange(-p, n + p, device=x.device) % (2 * n)
        idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
        x = x.index_select(dim, idx)
    return x


def dwt_hh(x: "torch.Tensor") -> "torch.Tensor":
    """The HH (diagonal detail) band of a one-level bior1.3 DWT, symmetric extension, per channel: PyWavelets'
    ``dwt2(x, 'bior1.3', mode='symmetric')[1][2]``, size ``floor((n + 5) / 2)`` per side."""
    import torch
    import torch.nn.functional as F

    hi = torch.tensor(BIOR13_DEC_HI, dtype=x.dtype, device=x.device).flip(0)
    taps, c = hi.numel(), x.shape[1]
    kernel = torch.outer(hi, hi).expand(c, 1, taps, taps)
    return F.conv2d(symmetric_pad(x, taps - 1)[..., 1:, 1:], kernel, stride=2, groups=c)


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """``fc1`` outputs [B, 2] of SAFE's ``ResNet.forward``: HH band resized back to the input size, then the net."""
    import torch.nn.functional as F

    x = F.interpolate(dwt_hh(x), size=x.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer2(net.layer1(x))
    return net.fc1(net.avgpool(x).flatten(1))


OPTIONS = {"epochs": 20, "lr": 1e-2 * 128 / 256, "min_lr": 1e-6, "warmup_epochs": 1, "weight_decay": 0.01,
           "smoothing": 0.1, "batch_size": 32, "crop_size": 256, "image_size": 256,
           "classes": ["car", "cat", "chair", "horse"]}
# lr: blr 1e-2 x (32 per GPU x 4 GPUs) / 256, as scripts/train.sh runs it; classes: the README's train_ForenSynths
OPTION_TYPES = {"classes": (str, list)}


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="safe.progan4",
        factory=SAFE,
        preprocess="center_crop",
        pixels=PixelInput(image_size=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        needs_fit=True,
        default=True,
        quickstart=False,  # a ResNet trunk on 256 px crops: minutes per epoch on 2 cores
        description="SAFE (bior1.3 HH band, truncated ResNet-50) on ProGAN car/cat/chair/horse; eval.sh protocol "
                    "(centre crop 256, no resize, no normalisation); official: safe@checkpoint-best.pth",
        options=OPTIONS,
        option_types=OPTION_TYPES,
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=f"{REPOSITORY}/raw/{COMMIT}/checkpoint/checkpoint-best.pth", filename="checkpoint-best.pth",
            git_blob="21e7aceb520a44ffcdf09234aae8f02b5986f80a", repository=REPOSITORY, revision=COMMIT,
            note="committed in the repository (checkpoint/checkpoint-best.pth); no SHA-256 published"),
        published={
            "26 generators (GANs and diffusion), mean acc vs. the previous best": "+4.5 points (abstract, arXiv v1)",
            "GPT-ImgEval GenEval / ReasoningEdit, acc": "98.92 / 96.32 (README, 2025/04)",
            "parameters": "1.44 M (the network here has 1,438,274); anchors, not reproduced here",
        },
        notes="Read from models/resnet.py (network, _preprocess_dwt), data/datasets.py (the 'crop' transforms), "
              "main_finetune.py and utils.py (optimiser, schedule, label smoothing, checkpoint layout), "
              "scripts/eval.sh and scripts/train.sh (sizes, lr). The bior1.3 HH band is computed in torch "
              "(symmetric extension, stride-2 filter bank), equal to PyWavelets' dwt2 and so to pytorch_wavelets' "
              "DWTForward, which SAFE calls; the resize back is bilinear with antialiasing, as torchvision's "
              "Resize on a tensor. The checkpoint loads with weights_only=True, argparse.Namespace (its 'args' "
              "entry) the only global allowed. Training keeps the recipe (AdamW, warm-up + cosine per step, "
              "label smoothing 0.1, crop/flip/rotate/jitter/mask view) without AMP, EMA or distributed sampling.",
    )]
